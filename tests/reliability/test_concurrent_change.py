"""An object overwritten or deleted while it is hashed never yields a torrent that lies.

The proxy's body hook PUTs a new version (or DELETEs the object) straight to moto once N
bytes of the object's GETs have gone to the service. Whatever the moment, the outcome is
CHANGED (nothing written), or a torrent whose info hash is that of the bytes of the very
ETag it records; never the new ETag with the old bytes, nor the reverse. The next call
makes the right torrent.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from s3torrent.errors import ObjectChanged, ObjectNotFound
from s3torrent.model import ObjectRef, Outcome
from s3torrent.settings import Settings
from s3torrent.torrent import read_torrent
from s3torrent.wiring import build_service
from tests.support.faults.helpers import fresh_bucket, reference_hashes, source_writes, torrent_keys
from tests.support.faults.proxy import BodyHook, FaultProxy, RequestInfo

pytestmark = pytest.mark.integration

PART = 64 * 1024
KEY = "data/changing.bin"
_rng = random.Random(99)
OLD = _rng.randbytes(2 * 1024 * 1024 + 11)  # 33 ranges of 64 KiB
NEW_SAME_SIZE = _rng.randbytes(len(OLD))
NEW_OTHER_SIZE = _rng.randbytes(len(OLD) // 3)


# Both ways ranges are read: straight over HTTP on a presigned URL (the default) and through
# botocore (`read_transport: sdk`).
TRANSPORTS = pytest.mark.parametrize("transport", ["direct", "sdk"])


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A bucket of its own per test and parameter (the shared fixture's names, cut at 55
    characters, can lose the parameters)."""
    return fresh_bucket(s3_client, "change")


def service_for(proxy: FaultProxy, bucket: str, transport: str) -> Any:
    settings = Settings.from_mapping(
        {
            "buckets": [{"name": bucket}],
            "endpoint_url": proxy.url,
            "read_part_bytes": PART,
            "read_window": 2,
            "read_transport": transport,
        }
    )
    return build_service(settings)


def assert_no_lie(s3_client: Any, bucket: str, versions: dict[str, bytes]) -> None:
    """The stored torrent, if any, describes exactly the bytes of the ETag it records."""
    try:
        stored = s3_client.get_object(Bucket=bucket, Key=KEY + ".torrent")
    except s3_client.exceptions.NoSuchKey:
        return
    claimed = stored["Metadata"]["source-etag"]
    torrent = read_torrent(stored["Body"].read())
    assert claimed in versions, f"torrent claims an ETag no version had: {claimed}"
    assert (torrent.info_hash_v1, torrent.info_hash_v2) == reference_hashes(versions[claimed], KEY)


@TRANSPORTS
@pytest.mark.parametrize("versioned", [False, True], ids=["plain", "versioned"])
@pytest.mark.parametrize(
    ("after", "new"),
    [
        (64 * 1024, NEW_SAME_SIZE),  # early: most ranges are still to be read
        (1024 * 1024, NEW_OTHER_SIZE),  # midway, and the size changes too
        (len(OLD), NEW_SAME_SIZE),  # every byte read: only the check before writing can see it
    ],
    ids=["early", "midway-resized", "after-last-byte"],
)
def test_overwritten_mid_hash(
    fault_proxy: FaultProxy,
    s3_client: Any,
    bucket: str,
    after: int,
    new: bytes,
    versioned: bool,
    transport: str,
) -> None:
    if versioned:
        s3_client.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )
    old_etag = s3_client.put_object(Bucket=bucket, Key=KEY, Body=OLD)["ETag"]
    versions = {old_etag: OLD}

    def overwrite(_: RequestInfo) -> None:
        versions[s3_client.put_object(Bucket=bucket, Key=KEY, Body=new)["ETag"]] = new

    fault_proxy.policy.hooks.append(BodyHook(overwrite, after_bytes=after, key=KEY))
    service = service_for(fault_proxy, bucket, transport)
    result = service.make_torrent(ObjectRef(bucket, KEY))

    # The client may hold every byte before the proxy's overwrite has returned: wait for it.
    assert fault_proxy.policy.hooks[0].done.wait(10), "the overwrite never happened"
    assert len(versions) == 2
    new_etag = next(e for e in versions if e != old_etag)
    assert result.outcome in (Outcome.CHANGED, Outcome.CREATED), result
    if result.outcome is Outcome.CREATED:
        # Only acceptable if it describes, and says it describes, one real version.
        assert result.record is not None
        assert (result.record.info_hash_v1, result.record.info_hash_v2) == reference_hashes(
            versions[result.record.source_etag], KEY
        )
    assert_no_lie(s3_client, bucket, versions)

    # The next event (the overwrite's own ObjectCreated) makes the right torrent, or finds
    # it made already (the service re-checks after writing and remakes at once).
    again = service.make_torrent(ObjectRef(bucket, KEY))
    assert again.outcome in (Outcome.CREATED, Outcome.FRESH), again
    assert again.record is not None and again.record.source_etag == new_etag
    assert (again.record.info_hash_v1, again.record.info_hash_v2) == reference_hashes(new, KEY)
    assert_no_lie(s3_client, bucket, versions)
    assert source_writes(fault_proxy.policy.log) == []  # the service never touched the object
    # Reads of the first attempt were pinned: every range asked for the old ETag.
    first = [e.info for e in fault_proxy.policy.log if e.info.range and e.info.key == KEY]
    assert first and first[0].headers.get("if-match") == old_etag
    assert first[0].is_presigned is (transport == "direct")
    kind = "versioned" if versioned else "plain"
    print(f"\nCHANGE after {after} B ({kind}, {transport}): {result.outcome}")


@TRANSPORTS
@pytest.mark.parametrize("after", [64 * 1024, len(OLD)], ids=["early", "after-last-byte"])
def test_deleted_mid_hash_leaves_no_torrent(
    fault_proxy: FaultProxy, s3_client: Any, bucket: str, after: int, transport: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=OLD)

    def delete(_: RequestInfo) -> None:
        s3_client.delete_object(Bucket=bucket, Key=KEY)

    fault_proxy.policy.hooks.append(BodyHook(delete, after_bytes=after, key=KEY))
    service = service_for(fault_proxy, bucket, transport)
    try:
        result = service.make_torrent(ObjectRef(bucket, KEY))
    except (ObjectNotFound, ObjectChanged):
        pass  # a clear error is as good as CHANGED here
    else:
        assert result.outcome is Outcome.CHANGED, result
    assert fault_proxy.policy.hooks[0].done.wait(10)
    if after < len(OLD):
        # Deleted while ranges were still to be read: nothing was written at all.
        assert torrent_keys(s3_client, bucket) == []
    # The deletion's own ObjectRemoved event settles it either way (after the last byte, the
    # delete may land after every check the service made: its event then removes it).
    outcome = service.remove_torrent(ObjectRef(bucket, KEY)).outcome
    assert outcome in (Outcome.ABSENT, Outcome.DELETED)
    assert torrent_keys(s3_client, bucket) == []
