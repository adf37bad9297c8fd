"""Objects clients could not load get no torrent, said before a byte is read (docs/engine.md).

The sizes are a function of the object's length, so HeadObject is answered with a size S3
could store (up to 50 TB) without storing it: the service must decide from the size alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from s3torrent.errors import InvalidInput
from s3torrent.model import ObjectRef, Outcome, SkipReason
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent.limits import MAX_FILE_SIZE
from s3torrent.wiring import build_objects
from tests.support.moto import BUCKET


def service_claiming(s3: Any, size: int) -> tuple[TorrentService, list[str]]:
    """A service whose HeadObject says the object has `size` bytes; records every read."""
    s3.put_object(Bucket=BUCKET, Key="huge.bin", Body=b"x")
    # No size limit of our own in the way: the clients' limit is the one under test.
    settings = Settings.from_mapping(
        {"buckets": [{"name": BUCKET}], "torrent_source": "compute", "max_object_bytes": 2**50}
    )
    objects = build_objects(settings)
    reads: list[str] = []
    head = objects.head_object

    def head_claiming(ref: ObjectRef) -> Any:
        return replace(head(ref), size=size)

    def no_reads(*_: Any, **__: Any) -> Any:
        reads.append("range")
        raise AssertionError("no byte may be read")

    objects.head_object = head_claiming  # type: ignore[method-assign]
    objects.range_source = no_reads  # type: ignore[method-assign]
    return TorrentService(settings, objects), reads


@pytest.mark.parametrize("size", [MAX_FILE_SIZE + 1, 16 * 2**40, 50 * 10**12])
def test_a_file_clients_cannot_load_is_skipped_before_reading(s3: Any, size: int) -> None:
    service, reads = service_claiming(s3, size)
    result = service.make_torrent(ObjectRef(BUCKET, "huge.bin"))
    assert result.outcome is Outcome.SKIPPED
    assert result.skip_reason is SkipReason.TOO_LARGE_FOR_CLIENTS
    assert reads == []
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="huge.bin.torrent")["KeyCount"] == 0


def test_the_largest_loadable_file_is_not_refused(s3: Any) -> None:
    # It gets as far as reading (which this service refuses): the size itself was accepted.
    service, reads = service_claiming(s3, MAX_FILE_SIZE)
    with pytest.raises(AssertionError, match="no byte may be read"):
        service.make_torrent(ObjectRef(BUCKET, "huge.bin"))
    assert reads == ["range"]


@pytest.mark.parametrize("piece_length", [2**28, 2**30])
def test_a_piece_length_clients_refuse_is_refused_in_settings(piece_length: int) -> None:
    with pytest.raises(InvalidInput, match="at most 134217728"):
        Settings.from_mapping({"piece_length": piece_length})
