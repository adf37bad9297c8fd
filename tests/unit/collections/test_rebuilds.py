"""Rebuilds read only what changed: collections' hash records in the progress table (moto).

Each rebuild's torrent is compared with a from-scratch build of the same listing (a service
without records), byte for byte, and its `bytes_read` with what changed.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import boto3
import pytest

from s3torrent import table_blobs
from s3torrent.collections import CollectionRef
from s3torrent.collections.record_store import RECORD_PREFIX, TableHashRecords
from s3torrent.collections.records import (
    HashRecord,
    MemberHashes,
    decode_record,
    encode_record,
)
from s3torrent.model import Outcome
from s3torrent.s3.objects import S3Objects
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent import MetaVersion, PieceHashes
from s3torrent_local.stack import create_progress_table
from tests.support.moto import BUCKET
from tests.unit.collections.test_collection_service import SMALL_READS

PIECE = 16 * 1024
TABLE = "progress"
REF = CollectionRef(BUCKET, "sets/two hundred/")


@pytest.fixture
def dynamodb(s3: Any) -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_progress_table(client, TABLE)
    return client


def service(s3: Any, dynamodb: Any | None, **values: Any) -> TorrentService:
    settings = Settings.from_mapping(
        {"buckets": [{"name": BUCKET}], "endpoint_url": "http://s3.test", **values}
    )
    records = TableHashRecords(dynamodb, TABLE) if dynamodb is not None else None
    return TorrentService(settings, S3Objects(s3, reader=SMALL_READS), None, records)


def put(s3: Any, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        s3.put_object(Bucket=BUCKET, Key=REF.prefix + path, Body=data)


def from_scratch(s3: Any, version: str) -> bytes:
    result = service(s3, None, piece_length=PIECE).make_collection(
        REF, overrides={"meta_version": version}, force=True, write=False
    )
    assert result.torrent_bytes is not None
    return result.torrent_bytes


@pytest.mark.parametrize("version", ["hybrid", "2"])
def test_a_one_file_change_in_200_files_reads_that_file(
    s3: Any, dynamodb: Any, version: str
) -> None:
    rng = random.Random(200)
    files = {f"d{i % 7}/f{i:03}.bin": rng.randbytes(rng.randrange(0, 40_000)) for i in range(200)}
    put(s3, files)
    kept = service(s3, dynamodb, piece_length=PIECE)
    overrides = {"meta_version": version}
    first = kept.make_collection(REF, overrides=overrides)
    assert first.outcome is Outcome.CREATED
    assert first.counters.bytes_read == sum(len(data) for data in files.values())

    changed = rng.randbytes(33_333)
    put(s3, {"d3/f010.bin": changed})  # overwritten, another size
    second = kept.make_collection(REF, overrides=overrides)
    assert second.outcome is Outcome.CREATED
    assert second.counters.bytes_read == len(changed)  # each file starts on a piece boundary
    assert second.record is not None and second.record.bytes_read == len(changed)
    assert second.torrent_bytes == from_scratch(s3, version)

    added = rng.randbytes(5_000)
    put(s3, {"new/one.bin": added, "d0/f000.bin": b""})  # one new, one emptied
    s3.delete_object(Bucket=BUCKET, Key=REF.prefix + "d1/f001.bin")
    third = kept.make_collection(REF, overrides=overrides)
    assert third.counters.bytes_read == len(added)
    assert third.torrent_bytes == from_scratch(s3, version)


def test_v1_append_reads_the_new_file_and_one_boundary_piece(s3: Any, dynamodb: Any) -> None:
    rng = random.Random(1)
    files = {f"f{i:03}.bin": rng.randbytes(rng.randrange(1, 40_000)) for i in range(50)}
    put(s3, files)
    kept = service(s3, dynamodb, piece_length=PIECE)
    first = kept.make_collection(REF)  # collections are v1 by default
    total = sum(len(data) for data in files.values())
    assert first.counters.bytes_read == total

    added = rng.randbytes(70_000)
    put(s3, {"z-last.bin": added})  # sorts last: the stream grows at its end
    second = kept.make_collection(REF)
    boundary = total % PIECE  # the stored last piece was short: read again with the new bytes
    assert second.counters.bytes_read == len(added) + boundary
    assert second.counters.bytes_read < len(added) + PIECE
    assert second.torrent_bytes == from_scratch(s3, "1")

    put(s3, {"f025.bin": b"changed in the middle"})
    third = kept.make_collection(REF)
    before = sum(len(files[f"f{i:03}.bin"]) for i in range(25))
    assert (
        third.counters.bytes_read
        == total
        + len(added)
        - len(files["f025.bin"])
        + len(b"changed in the middle")
        - (before // PIECE) * PIECE
    )
    assert third.torrent_bytes == from_scratch(s3, "1")


def test_a_record_of_another_piece_length_is_not_used(s3: Any, dynamodb: Any) -> None:
    files = {"a.bin": b"a" * 50_000, "b.bin": b"b" * 20_000}
    put(s3, files)
    service(s3, dynamodb, piece_length=PIECE).make_collection(REF, overrides={"meta_version": "2"})
    other = service(s3, dynamodb, piece_length=2 * PIECE)
    result = other.make_collection(REF, overrides={"meta_version": "2"}, force=True)
    assert result.counters.bytes_read == 70_000
    again = other.make_collection(REF, overrides={"meta_version": "2"}, force=True)
    assert again.counters.bytes_read == 0  # every member's record holds: nothing read


def test_a_big_record_is_chunked_and_the_old_chunks_go(
    s3: Any, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_blobs, "CHUNK_BYTES", 1000)
    store = TableHashRecords(dynamodb, TABLE)
    record = _hybrid_record(files=40, pieces=8, seed=1)
    store.save(REF, record)
    assert store.load(REF) == record
    store.save(REF, _hybrid_record(files=10, pieces=8, seed=2))
    assert store.load(REF) == _hybrid_record(files=10, pieces=8, seed=2)
    ids = [item["backfill_id"]["S"] for item in dynamodb.scan(TableName=TABLE)["Items"]]
    chunks = [item for item in ids if item.startswith(RECORD_PREFIX) and "#" in item]
    generations = {item.split("#")[1].split("/")[0] for item in chunks}
    assert len(generations) == 1  # the first generation's chunks were deleted
    # A chunk gone (a concurrent build replaced the record): no record, everything is read.
    dynamodb.delete_item(TableName=TABLE, Key={"backfill_id": {"S": chunks[0]}})
    assert store.load(REF) is None


def test_records_round_trip_and_garbage_is_no_record() -> None:
    record = _hybrid_record(files=3, pieces=3, seed=3)
    assert decode_record(encode_record(record)) == record
    assert decode_record(b"not zlib") is None
    assert decode_record(zlib.compress(b"d6:formati99ee")) is None


def test_record_sizes() -> None:
    """What a record weighs in the table (docs/collections.md quotes these numbers)."""
    # 10,000 files of one piece each (hybrid): keys compress; hashes and ETags do not
    # (about 111 bytes a file: 1.1 MB, three chunk items).
    small = len(encode_record(_hybrid_record(files=10_000, pieces=1, seed=4)))
    assert 1_000_000 < small < 1_200_000
    # One file of 2,048 pieces (1 GiB at 512 KiB): 32 + 20 bytes a piece.
    big = len(encode_record(_hybrid_record(files=1, pieces=2048, seed=5)))
    assert 2048 * 52 < big < 2048 * 52 + 500


def _hybrid_record(files: int, pieces: int, seed: int) -> HashRecord:
    rng = random.Random(seed)
    members = []
    for index in range(files):
        size = pieces * PIECE - 100
        hashes = PieceHashes(
            size,
            PIECE,
            MetaVersion.HYBRID,
            rng.randbytes(20 * pieces),
            rng.randbytes(32),
            rng.randbytes(32 * pieces) if pieces > 1 else None,
            rng.randbytes(20),
        )
        key = f"datasets/set1/folder {index % 50}/file-{index:06}.bin"
        members.append(MemberHashes(key, f'"{rng.randbytes(16).hex()}"', size, hashes))
    return HashRecord(PIECE, MetaVersion.HYBRID, members=tuple(members))
