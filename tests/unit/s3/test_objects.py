"""The S3 adapter: one translation of botocore failures, and what it sends and reads (moto)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from s3torrent import errors
from s3torrent.model import ObjectInfo, ObjectRef, SkipReason, TransferCounters
from s3torrent.s3.objects import S3Objects, is_retryable, translate_error
from s3torrent.s3.reader import ReaderConfig, read_parts
from s3torrent.s3.records import content_disposition
from tests.support.moto import BUCKET


def client_error(
    code: str, status: int, *, headers: dict[str, str] | None = None, op: str = "GetObject"
) -> ClientError:
    if headers is None:
        headers = {"x-amz-request-id": "R", "content-type": "application/xml"}
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers},
    }
    return ClientError(response, op)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, errors.ObjectNotFound),
        ("404", 404, errors.ObjectNotFound),
        ("NoSuchVersion", 404, errors.ObjectNotFound),
        ("NoSuchBucket", 404, errors.BucketNotFound),
        ("AccessDenied", 403, errors.AccessDenied),
        ("403", 403, errors.AccessDenied),
        ("InvalidAccessKeyId", 403, errors.AccessDenied),
        ("PreconditionFailed", 412, errors.ObjectChanged),
        ("412", 412, errors.ObjectChanged),
        ("SlowDown", 503, errors.TransientS3Error),
        ("InternalError", 500, errors.TransientS3Error),
        ("RequestTimeout", 400, errors.TransientS3Error),
        ("ThrottlingException", 400, errors.TransientS3Error),
        ("503", 503, errors.TransientS3Error),
        ("InvalidObjectState", 403, errors.UnsupportedObject),
        ("InvalidArgument", 400, errors.InvalidInput),
        ("PermanentRedirect", 301, errors.EndpointError),
    ],
)
def test_client_errors_map_to_domain_errors(code: str, status: int, expected: type) -> None:
    error = translate_error(client_error(code, status), bucket=BUCKET, key="k")
    assert type(error) is expected
    assert f"s3://{BUCKET}/k" in str(error) or isinstance(error, errors.UnsupportedObject)


def test_archived_get_becomes_the_archived_skip_reason() -> None:
    error = translate_error(client_error("InvalidObjectState", 403), bucket=BUCKET, key="k")
    assert isinstance(error, errors.UnsupportedObject)
    assert error.reason == SkipReason.ARCHIVED


def test_only_transient_errors_are_retryable() -> None:
    slow = translate_error(client_error("SlowDown", 503), bucket=BUCKET)
    changed = translate_error(client_error("PreconditionFailed", 412), bucket=BUCKET)
    assert is_retryable(slow) and not is_retryable(changed)
    assert not is_retryable(ValueError("x"))


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/html;charset=utf-8", "server": "SimpleHTTP/0.6"},
        {"server": "nginx"},
    ],
)
def test_an_answer_that_is_not_from_s3_is_an_endpoint_error(headers: dict[str, str]) -> None:
    error = translate_error(
        client_error("404", 404, headers=headers, op="HeadObject"), bucket=BUCKET, key="k"
    )
    assert isinstance(error, errors.EndpointError)
    assert "does not answer like S3" in str(error)


def test_a_5xx_page_from_a_proxy_is_retried_not_an_endpoint_error() -> None:
    for status in (500, 502, 503, 504):
        error = translate_error(
            client_error(str(status), status, headers={"content-type": "text/html"}),
            bucket=BUCKET,
            key="k",
        )
        assert isinstance(error, errors.TransientS3Error), status
        assert "does not answer like S3" in str(error)


def test_a_bare_404_from_an_s3_compatible_store_is_not_found() -> None:
    # moto's HEAD 404 is text/html but carries x-amzn-requestid; radosgw's is XML.
    for headers in (
        {"content-type": "text/html", "x-amzn-requestid": "1"},
        {"content-type": "application/xml"},
    ):
        error = translate_error(client_error("404", 404, headers=headers), bucket=BUCKET)
        assert isinstance(error, errors.ObjectNotFound)


def test_connection_level_failures() -> None:
    refused = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert isinstance(translate_error(refused, bucket=BUCKET), errors.TransientS3Error)
    timeout = ReadTimeoutError(endpoint_url="http://x")
    assert isinstance(translate_error(timeout, bucket=BUCKET), errors.TransientS3Error)
    parse = ResponseParserError("bad xml")
    assert isinstance(translate_error(parse, bucket=BUCKET), errors.EndpointError)
    assert isinstance(translate_error(NoCredentialsError(), bucket=BUCKET), errors.AccessDenied)
    bug = KeyError("a bug")
    assert translate_error(bug, bucket=BUCKET) is bug  # unexpected errors stay themselves


def testcontent_disposition_is_ascii_with_an_rfc6266_name_for_the_rest() -> None:
    assert content_disposition("a/b c.bin") == 'attachment; filename="b c.bin.torrent"'
    assert content_disposition('q"\\.bin') == (
        "attachment; filename=\"q__.bin.torrent\"; filename*=UTF-8''q%22%5C.bin.torrent"
    )
    assert content_disposition("dir/é.bin") == (
        "attachment; filename=\"_.bin.torrent\"; filename*=UTF-8''%C3%A9.bin.torrent"
    )


# --- against moto in-process --------------------------------------------------------------


class _Collect:
    def __init__(self, out: bytearray, start: int) -> None:
        self.out = out
        self.pos = start

    def write(self, chunk: memoryview) -> None:
        self.out[self.pos : self.pos + len(chunk)] = chunk
        self.pos += len(chunk)


def read_all(objects: S3Objects, info: ObjectInfo, counters: TransferCounters) -> bytes:
    """Every byte of the object through the adapter's range source and the real reader."""
    out = bytearray(info.size)
    read_parts(
        objects.range_source(info),
        info.size,
        lambda start, stop: _Collect(out, start),
        objects.reader,
        counters,
        is_retryable=is_retryable,
    )
    return bytes(out)


def test_every_range_is_pinned_to_the_etag_and_passes_payer_and_owner(s3: Any) -> None:
    data = os.urandom(200_000)
    s3.put_object(Bucket=BUCKET, Key="k", Body=data)
    sent: list[dict[str, Any]] = []
    s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: sent.append(dict(params))
    )
    objects = S3Objects(s3, reader=ReaderConfig(part_size=65536, window=2))
    ref = ObjectRef(BUCKET, "k", request_payer=True, expected_bucket_owner="123456789012")
    info = objects.head_object(ObjectRef(BUCKET, "k"))
    info = type(info)(**{**info.__dict__, "ref": ref})
    counters = TransferCounters()

    read = read_all(objects, info, counters)

    assert read == data
    assert counters.get_requests == 4 and counters.bytes_read == len(data)
    assert sorted(params["Range"] for params in sent) == [
        "bytes=0-65535",
        "bytes=131072-196607",
        "bytes=196608-199999",
        "bytes=65536-131071",
    ]
    for params in sent:
        assert params["IfMatch"] == info.etag
        assert params["RequestPayer"] == "requester"
        assert params["ExpectedBucketOwner"] == "123456789012"


def test_a_changed_object_stops_the_read(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=os.urandom(100_000))
    objects = S3Objects(s3, reader=ReaderConfig(part_size=65536, window=1))
    info = objects.head_object(ObjectRef(BUCKET, "k"))
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"other")
    with pytest.raises(errors.ObjectChanged):
        read_all(objects, info, TransferCounters())
    s3.delete_object(Bucket=BUCKET, Key="k")
    with pytest.raises(errors.ObjectChanged):  # deleted mid-read: changed, not "not found"
        objects.read_range(info, 0, 10)


def test_head_object_reads_what_the_service_decides_on(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="g", Body=b"abc", StorageClass="GLACIER")
    info = S3Objects(s3).head_object(ObjectRef(BUCKET, "g"))
    assert info.size == 3 and info.storage_class == "GLACIER" and not info.restored
    assert info.etag.startswith('"')
    with pytest.raises(errors.ObjectNotFound):
        S3Objects(s3).head_object(ObjectRef(BUCKET, "missing"))
    with pytest.raises(errors.BucketNotFound):
        S3Objects(s3).get_torrent(ObjectRef("no-such-bucket", "k"))


def test_list_page_pages_in_order(s3: Any) -> None:
    for key in ("b", "a", "a.torrent", "é", "a b"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    objects = S3Objects(s3)
    first = objects.list_page(BUCKET, "", None, max_keys=2)
    assert [item.key for item in first.objects] == ["a", "a b"]
    assert first.next_token
    rest = objects.list_page(BUCKET, "", first.next_token)
    assert [item.key for item in rest.objects] == ["a.torrent", "b", "é"]
    assert rest.next_token is None
    assert rest.objects[0].size == 1 and rest.objects[0].last_modified is not None


def test_presigned_torrent_url_names_the_torrent_key(s3: Any) -> None:
    url = S3Objects(s3).presign_torrent_get(ObjectRef(BUCKET, "a b.bin"), expires=60)
    assert "/a%20b.bin.torrent?" in url
    assert "Signature" in url
