"""What-ifs for the lead: the same reader and hasher with another fetch under them.

Not the production path (that is s3torrent.s3.S3Objects, which the bench measures by
default). Each swaps only the `fetch` below `read_in_order`, to show what a layer costs:
- `--what-if urllib3`: a bare urllib3 GET with the same Range and If-Match headers, i.e.
  production minus botocore's per-request machinery. A real adapter would presign once per
  object (SigV4 query auth leaves Range/If-Match unsigned) and map S3 XML errors itself;
  against nginx no signature is needed.
- `--what-if pread`: `os.pread` of the same ranges from the page cache, i.e. production
  minus HTTP altogether (one copy into a fresh buffer per part, as a socket read does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import urllib3

from s3torrent.errors import ObjectChanged, TransientS3Error
from s3torrent.model import ObjectInfo, ObjectRef, TransferCounters
from s3torrent.ranged_reader import ReaderConfig, read_in_order


class RawRangeObjects:
    def __init__(self, endpoint: str, *, reader: ReaderConfig) -> None:
        url = urlsplit(endpoint)
        self._pool = urllib3.HTTPConnectionPool(
            url.hostname or "127.0.0.1", url.port or 80, maxsize=reader.window + 2
        )
        self.reader = reader

    def head_object(self, ref: ObjectRef) -> ObjectInfo:
        response = self._pool.request("HEAD", self._path(ref))
        return ObjectInfo(
            ref=ref,
            size=int(response.headers["Content-Length"]),
            etag=response.headers["ETag"],
            version_id=None,
            last_modified=None,
        )

    def iter_bytes(self, info: ObjectInfo, counters: TransferCounters) -> Iterator[memoryview]:
        path = self._path(info.ref)

        def fetch(start: int, end: int) -> bytes:
            response = self._pool.request(
                "GET",
                path,
                headers={"Range": f"bytes={start}-{end}", "If-Match": info.etag},
                preload_content=False,
            )
            try:
                if response.status == 412:
                    raise ObjectChanged(f"{info.ref.uri} changed")
                if response.status != 206:
                    raise TransientS3Error(f"GET {path}: HTTP {response.status}")
                data: bytes = response.read()
            finally:
                response.release_conn()
            return data

        return read_in_order(fetch, info.size, self.reader, counters, is_retryable=lambda e: False)

    @staticmethod
    def _path(ref: ObjectRef) -> str:
        return f"/{ref.bucket}/{quote(ref.key)}"


class PreadObjects:
    def __init__(self, folder: Path, *, reader: ReaderConfig) -> None:
        self._folder = folder
        self.reader = reader

    def head_object(self, ref: ObjectRef) -> ObjectInfo:
        size = (self._folder / ref.bucket / ref.key).stat().st_size
        return ObjectInfo(ref=ref, size=size, etag='"pread"', version_id=None, last_modified=None)

    def iter_bytes(self, info: ObjectInfo, counters: TransferCounters) -> Iterator[memoryview]:
        fd = os.open(self._folder / info.ref.bucket / info.ref.key, os.O_RDONLY)

        def fetch(start: int, end: int) -> bytes:
            return os.pread(fd, end - start + 1, start)

        try:
            yield from read_in_order(
                fetch, info.size, self.reader, counters, is_retryable=lambda e: False
            )
        finally:
            os.close(fd)
