"""A RangeSource through botocore: any client, moto's in-process mock included.

The direct transport (direct.py) is the fast path; this one serves where it cannot (a proxy,
`read_transport: sdk`, a client that never touches the network).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from s3torrent.model import ObjectInfo, ObjectRef
from s3torrent.s3.errors import translate_read_error, transport_error

if TYPE_CHECKING:
    from s3torrent.s3.objects import S3Objects


class SdkRanges:
    """A RangeSource through botocore: any client, moto's in-process mock included."""

    def __init__(self, objects: S3Objects, info: ObjectInfo) -> None:
        self._objects = objects
        self._info = info

    def open_range(self, start: int, end: int) -> _SdkBody:
        return _SdkBody(self._objects.get_range(self._info, start, end)["Body"], self._info.ref)


class _SdkBody:
    __slots__ = ("_body", "_ref")

    def __init__(self, body: Any, ref: ObjectRef) -> None:
        self._body = body
        self._ref = ref

    def readinto(self, buffer: memoryview) -> int:
        try:
            count: int = self._body.readinto(buffer)
        except (ClientError, BotoCoreError) as error:
            raise translate_read_error(error, bucket=self._ref.bucket, key=self._ref.key) from error
        except OSError as error:
            raise transport_error(f"GetObject {self._ref.uri}", error) from error
        return count

    def close(self) -> None:
        self._body.close()
