"""The S3 adapter: S3 in domain terms (botocore for control calls and signing; direct.py
for fast ranged reads; s3_errors.py for what failures mean).

Every call goes through `_call`, and every botocore failure through `translate_error`, so
the rest of s3torrent sees domain errors (errors.py) and plain values (model.py) only.
Reads of a source are ranged GETs pinned to the ETag seen by HeadObject (`If-Match`, and
the version when there is one), read in parallel by `reader.read_parts`; every call
passes `RequestPayer` and `ExpectedBucketOwner` through when the ref carries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3torrent.errors import (
    BucketNotFound,
    EndpointError,
    NativeTorrentUnavailable,
    ObjectChanged,
    ObjectNotFound,
    UnsupportedObject,
)
from s3torrent.model import (
    ListedObject,
    ListPage,
    ObjectInfo,
    ObjectRef,
    SkipReason,
    TorrentRecord,
)
from s3torrent.s3.direct import DirectRanges, HttpConnections
from s3torrent.s3.errors import (
    is_retryable,
    translate_error,
    translate_read_error,
)
from s3torrent.s3.reader import RangeSource, ReaderConfig
from s3torrent.s3.records import (
    TORRENT_CONTENT_TYPE,
    CollectionRecord,
    collection_record_from_response,
    content_disposition,
    record_from_response,
    torrent_metadata,
    written_record,
)
from s3torrent.s3.sdk_ranges import SdkRanges
from s3torrent.torrent.metainfo import Torrent

__all__ = ["S3Objects", "is_retryable", "translate_error"]

# A native torrent of even a 5 TB object is a few MB; a store that answers `?torrent` with
# the object itself (moto does) must not make us download the object to find out.
MAX_NATIVE_TORRENT_BYTES = 64 * 1024 * 1024
_NATIVE_PROBE_BYTES = 64 * 1024

# What a store that does not serve GetObjectTorrent answers (radosgw: 400 InvalidArgument
# for multipart objects; others 501 / 405 / 400).
_NO_NATIVE = frozenset(
    {
        "NotImplemented",
        "501",
        "MethodNotAllowed",
        "405",
        "InvalidArgument",
        "InvalidRequest",
        "400",
        "UnsupportedOperation",
    }
)


def _restored(restore: str | None) -> bool:
    # x-amz-restore: ongoing-request="false", expiry-date="..." once the copy is readable.
    return bool(restore) and 'ongoing-request="false"' in str(restore)


class S3Objects:
    """S3 operations s3torrent needs, in domain terms.

    `client` serves the control calls (with botocore's own retries); `data_client`, when
    given, serves (or signs) the ranged GETs and should have botocore retries off, because
    `read_parts` retries each range itself (two layers would multiply attempts).
    `connections`, when given, carries the ranged GETs straight over HTTP (direct.py).
    """

    def __init__(
        self,
        client: Any,
        *,
        reader: ReaderConfig | None = None,
        data_client: Any | None = None,
        connections: HttpConnections | None = None,
    ) -> None:
        self.client = client
        self.data_client = data_client if data_client is not None else client
        self.reader = reader or ReaderConfig()
        self.connections = connections

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _params(ref: ObjectRef, key: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key if key is None else key}
        if ref.request_payer:
            params["RequestPayer"] = "requester"
        if ref.expected_bucket_owner:
            params["ExpectedBucketOwner"] = ref.expected_bucket_owner
        return params

    def _call(self, client: Any, operation: str, bucket: str, key: str, **params: Any) -> Any:
        try:
            return getattr(client, operation)(**params)
        except (ClientError, BotoCoreError) as error:
            raise translate_error(
                error, bucket=bucket, key=key, operation=_OPERATION_NAMES.get(operation, "")
            ) from error

    # -- the source object --------------------------------------------------------------

    def head_object(self, ref: ObjectRef) -> ObjectInfo:
        """HeadObject: what the object is now (or the version the ref names)."""
        params = self._params(ref)
        if ref.version_id:
            params["VersionId"] = ref.version_id
        try:
            response = self.client.head_object(**params)
        except ClientError as error:
            domain = translate_error(error, bucket=ref.bucket, key=ref.key, operation="HeadObject")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (400, 404) and not isinstance(domain, EndpointError):
                # HEAD answers carry no error document: a 1-byte GET says what it was
                # (NoSuchKey or NoSuchBucket; for 400, S3's answer to an SSE-C object).
                raise self._explain_bad_head(ref, error) from error
            raise domain from error
        except BotoCoreError as error:
            raise translate_error(
                error, bucket=ref.bucket, key=ref.key, operation="HeadObject"
            ) from error
        etag = response.get("ETag")
        if not etag:
            raise EndpointError(
                f"HeadObject {ref.uri}: the answer has no ETag: the endpoint is not S3"
            )
        return ObjectInfo(
            ref=ref,
            size=int(response.get("ContentLength", 0)),
            etag=etag,
            version_id=response.get("VersionId") or ref.version_id,
            last_modified=response.get("LastModified"),
            storage_class=response.get("StorageClass"),
            archive_status=response.get("ArchiveStatus"),
            restored=_restored(response.get("Restore")),
            sse_customer=bool(response.get("SSECustomerAlgorithm")),
            content_type=response.get("ContentType"),
        )

    def _explain_bad_head(self, ref: ObjectRef, error: ClientError) -> BaseException:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        params = self._params(ref)
        if ref.version_id:
            params["VersionId"] = ref.version_id
        try:
            self.client.get_object(Range="bytes=0-0", **params)["Body"].close()
        except ClientError as probe:
            code = probe.response.get("Error", {}).get("Code")
            if status == 400 and code in ("InvalidRequest", "400"):
                return UnsupportedObject(ref.bucket, ref.key, SkipReason.SSE_C)
            if code in ("NoSuchKey", "NoSuchVersion", "NoSuchBucket"):
                return translate_error(
                    probe, bucket=ref.bucket, key=ref.key, operation="HeadObject"
                )
        except BotoCoreError:
            pass  # the HEAD's own answer says enough
        return translate_error(error, bucket=ref.bucket, key=ref.key, operation="HeadObject")

    def get_range(self, info: ObjectInfo, start: int, end: int) -> Any:
        """GetObject of bytes start..end (inclusive) of exactly the object `info` describes.

        Returns the botocore answer; its Body is the caller's to read and close.
        """
        ref = info.ref
        params = self._object_params(info)
        params["Range"] = f"bytes={start}-{end}"
        try:
            response = self.data_client.get_object(**params)
        except (ClientError, BotoCoreError) as error:
            raise translate_read_error(error, bucket=ref.bucket, key=ref.key) from error
        length = int(response.get("ContentLength") or 0)
        if length > end - start + 1:
            # A short answer is retried by the reader; a long one will never get better.
            response["Body"].close()
            raise EndpointError(
                f"GetObject {ref.uri}: the endpoint ignored the Range header"
                f" ({length} bytes for bytes={start}-{end})"
            )
        return response

    def read_range(self, info: ObjectInfo, start: int, end: int) -> bytes:
        """Bytes start..end (inclusive) of exactly the object `info` describes."""
        body = self.get_range(info, start, end)["Body"]
        try:
            data: bytes = body.read()
        except (ClientError, BotoCoreError) as error:
            raise translate_read_error(error, bucket=info.ref.bucket, key=info.ref.key) from error
        finally:
            body.close()
        return data

    def range_source(self, info: ObjectInfo) -> RangeSource:
        """Ranged reads of exactly the object `info` describes, for `read_parts`.

        Straight over HTTP on a presigned URL when this adapter was given `connections`,
        else through botocore (see direct.py for why and when).
        """
        if self.connections is None:
            return SdkRanges(self, info)
        params = self._object_params(info)
        signed = {"If-Match": info.etag}
        if "RequestPayer" in params:
            signed["x-amz-request-payer"] = params["RequestPayer"]
        if "ExpectedBucketOwner" in params:
            signed["x-amz-expected-bucket-owner"] = params["ExpectedBucketOwner"]

        def presign(expires_in: int) -> str:
            url: str = self.data_client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
            return url

        return DirectRanges(
            presign, signed, self.connections, bucket=info.ref.bucket, key=info.ref.key
        )

    def _object_params(self, info: ObjectInfo) -> dict[str, Any]:
        params = self._params(info.ref)
        params["IfMatch"] = info.etag
        if info.version_id:
            params["VersionId"] = info.version_id
        return params

    def get_object_torrent(self, ref: ObjectRef) -> bytes:
        """GetObjectTorrent (`GET /key?torrent`); NativeTorrentUnavailable when not served."""
        params = self._params(ref)
        try:
            response = self.client.get_object_torrent(**params)
            body = response["Body"]
            try:
                head = body.read(1)
                if head != b"d":
                    raise NativeTorrentUnavailable(
                        f"GetObjectTorrent {ref.uri}: the store answered with something"
                        " that is not a torrent"
                    )
                chunks = [head]
                total = 1
                while chunk := body.read(_NATIVE_PROBE_BYTES):
                    total += len(chunk)
                    if total > MAX_NATIVE_TORRENT_BYTES:
                        raise NativeTorrentUnavailable(
                            f"GetObjectTorrent {ref.uri}: the answer is over"
                            f" {MAX_NATIVE_TORRENT_BYTES} bytes: not a torrent"
                        )
                    chunks.append(chunk)
            finally:
                body.close()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code") or "")
            domain = translate_error(
                error, bucket=ref.bucket, key=ref.key, operation="GetObjectTorrent"
            )
            if code in _NO_NATIVE and not isinstance(domain, EndpointError):
                domain = NativeTorrentUnavailable(
                    f"GetObjectTorrent {ref.uri}: the store does not serve a torrent ({code})"
                )
            raise domain from error
        except BotoCoreError as error:
            raise translate_error(
                error, bucket=ref.bucket, key=ref.key, operation="GetObjectTorrent"
            ) from error
        return b"".join(chunks)

    # -- the `<key>.torrent` next to it ---------------------------------------------------

    def head_torrent(self, ref: ObjectRef) -> TorrentRecord | None:
        """What the stored `<key>.torrent` was built from; None if absent or not ours."""
        found = self._head_torrent(ref)
        return found[0] if found else None

    def _head_torrent(self, ref: ObjectRef) -> tuple[TorrentRecord, str] | None:
        try:
            response = self._call(
                self.client, "head_object", ref.bucket, ref.torrent_key, **self._torrent_params(ref)
            )
        except BucketNotFound:
            raise
        except ObjectNotFound:
            return None
        record = record_from_response(ref, response)
        return (record, str(response.get("ETag", ""))) if record else None

    def get_torrent(self, ref: ObjectRef) -> tuple[bytes, TorrentRecord] | None:
        """The stored `<key>.torrent` and its record; None if absent or not ours."""
        stored = self._read_torrent_object(ref)
        if stored is None:
            return None
        data, response = stored
        record = record_from_response(ref, response)
        return (data, record) if record else None

    def put_torrent(
        self, ref: ObjectRef, info: ObjectInfo, torrent: Torrent, *, source: str = "computed"
    ) -> TorrentRecord:
        """Write `<key>.torrent` with its content type, disposition and provenance metadata."""
        metadata = torrent_metadata(info, torrent, source)
        params = self._params(ref, ref.torrent_key)
        self._call(
            self.client,
            "put_object",
            ref.bucket,
            ref.torrent_key,
            Body=torrent.data,
            ContentType=TORRENT_CONTENT_TYPE,
            ContentDisposition=content_disposition(ref.key),
            Metadata=metadata,
            **params,
        )
        return written_record(ref, info, torrent, source)

    def delete_torrent(self, ref: ObjectRef) -> bool:
        """Delete `<key>.torrent` only if its metadata says s3torrent wrote it.

        The delete is conditional on the ETag just seen, so a torrent rewritten in between
        (the source came back) is left alone where the store honours If-Match on DELETE.
        """
        found = self._head_torrent(ref)
        if found is None:
            return False
        _, etag = found
        params = self._params(ref, ref.torrent_key)
        if etag:
            params["IfMatch"] = etag
        try:
            self._call(self.client, "delete_object", ref.bucket, ref.torrent_key, **params)
        except (ObjectChanged, ObjectNotFound):
            return False
        return True

    # -- a collection's `<PREFIX>.torrent` (collections/) ---------------------------------

    def get_collection_torrent(self, ref: ObjectRef) -> tuple[bytes, CollectionRecord] | None:
        """The stored collection torrent at `ref.torrent_key` and its record; None if absent
        or not a collection torrent s3torrent wrote."""
        stored = self._read_torrent_object(ref)
        if stored is None:
            return None
        data, response = stored
        record = collection_record_from_response(ref.bucket, ref.torrent_key, response)
        return (data, record) if record else None

    def put_collection_torrent(
        self, ref: ObjectRef, data: bytes, record: CollectionRecord
    ) -> CollectionRecord:
        """Write a collection torrent at `ref.torrent_key` with its provenance metadata."""
        response = self._call(
            self.client,
            "put_object",
            ref.bucket,
            ref.torrent_key,
            Body=data,
            ContentType=TORRENT_CONTENT_TYPE,
            ContentDisposition=content_disposition(ref.key),
            Metadata=record.metadata(),
            **self._params(ref, ref.torrent_key),
        )
        etag = str(response.get("ETag") or "") or None
        return replace(record, etag=etag)

    def delete_collection_torrent(self, ref: ObjectRef, etag: str | None) -> bool:
        """Delete the collection torrent just written, only while it is that one (If-Match)."""
        params = self._params(ref, ref.torrent_key)
        if etag:
            params["IfMatch"] = etag
        try:
            self._call(self.client, "delete_object", ref.bucket, ref.torrent_key, **params)
        except (ObjectChanged, ObjectNotFound):
            return False
        return True

    def list_page(
        self,
        bucket: str,
        prefix: str,
        token: str | None,
        *,
        start_after: str | None = None,
        max_keys: int = 1000,
        request_payer: bool = False,
        expected_bucket_owner: str | None = None,
    ) -> ListPage:
        """One ListObjectsV2 page (keys come back decoded: botocore asks for url encoding)."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if token:
            params["ContinuationToken"] = token
        elif start_after:
            params["StartAfter"] = start_after
        if request_payer:
            params["RequestPayer"] = "requester"
        if expected_bucket_owner:
            params["ExpectedBucketOwner"] = expected_bucket_owner
        response = self._call(self.client, "list_objects_v2", bucket, prefix, **params)
        if "KeyCount" not in response and "Contents" not in response and "Name" not in response:
            raise EndpointError(
                f"ListObjectsV2 s3://{bucket}/{prefix}: the answer is not an S3 listing"
            )
        objects = tuple(
            ListedObject(
                key=item["Key"],
                size=int(item.get("Size", 0)),
                etag=str(item.get("ETag", "")),
                last_modified=item["LastModified"],
                storage_class=item.get("StorageClass"),
            )
            for item in response.get("Contents", ())
        )
        next_token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
        return ListPage(objects=objects, next_token=next_token)

    def presign_torrent_get(self, ref: ObjectRef, expires: int = 300) -> str:
        """A presigned GET of the stored `<key>.torrent`, valid `expires` seconds."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params=self._params(ref, ref.torrent_key), ExpiresIn=expires
        )
        return url

    # -- internals ------------------------------------------------------------------------

    def _read_torrent_object(self, ref: ObjectRef) -> tuple[bytes, Mapping[str, Any]] | None:
        """The bytes and GetObject answer of `ref.torrent_key`; None when it does not exist."""
        try:
            response = self._call(
                self.client, "get_object", ref.bucket, ref.torrent_key, **self._torrent_params(ref)
            )
        except BucketNotFound:
            raise
        except ObjectNotFound:
            return None
        body = response["Body"]
        try:
            data: bytes = body.read()
        except BotoCoreError as error:
            raise translate_error(
                error, bucket=ref.bucket, key=ref.torrent_key, operation="GetObject"
            ) from error
        finally:
            body.close()
        return data, response

    def _torrent_params(self, ref: ObjectRef) -> dict[str, Any]:
        return self._params(ref, ref.torrent_key)


_OPERATION_NAMES = {
    "head_object": "HeadObject",
    "get_object": "GetObject",
    "put_object": "PutObject",
    "delete_object": "DeleteObject",
    "list_objects_v2": "ListObjectsV2",
    "get_object_torrent": "GetObjectTorrent",
}
