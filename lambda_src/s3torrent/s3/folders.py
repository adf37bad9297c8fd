"""One folder of a bucket, as a delimiter listing shows it: sub-folders and objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3torrent.model import ListedObject
from s3torrent.s3.errors import translate_error


@dataclass(frozen=True)
class FolderPage:
    """A page of `ListObjectsV2` with `Delimiter="/"`, in S3's (UTF-8 binary) order."""

    folders: tuple[str, ...]  # common prefixes, each ending in "/"
    objects: tuple[ListedObject, ...]
    next_token: str | None


def list_folder(
    client: Any, bucket: str, prefix: str, token: str | None = None, *, max_keys: int = 1000
) -> FolderPage:
    """One page of the folder `prefix` (keys come back decoded: botocore asks for url
    encoding)."""
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Prefix": prefix,
        "Delimiter": "/",
        "MaxKeys": max_keys,
    }
    if token:
        params["ContinuationToken"] = token
    try:
        response = client.list_objects_v2(**params)
    except (ClientError, BotoCoreError) as error:
        raise translate_error(
            error, bucket=bucket, key=prefix, operation="ListObjectsV2"
        ) from error
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
    folders = tuple(p["Prefix"] for p in response.get("CommonPrefixes", ()))
    next_token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
    return FolderPage(folders=folders, objects=objects, next_token=next_token)
