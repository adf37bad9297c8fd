"""S3 and KMS grants, statement by statement, on the configured bucket scopes only.

The rule the whole design leans on: the service never writes, moves or deletes a source object.
IAM makes that impossible, not just unlikely: PutObject and DeleteObject are granted on
`arn:aws:s3:::BUCKET/PREFIX*.torrent` and nothing else. Reads are bounded by bucket and prefix.
Each wildcard is acknowledged to cdk-nag here, next to the statement, with why it is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from infra import nag
from infra.functions import TorrentFunction

TORRENT_SUFFIX = ".torrent"


@dataclass(frozen=True)
class BucketAccess:
    """One bucket and the prefixes of it the service may touch ("" = the whole bucket)."""

    bucket: s3.IBucket
    prefixes: tuple[str, ...]
    label: str  # how reasons name it: the bucket name, or "the bucket this stack created"

    def objects(self, suffix: str = "") -> list[str]:
        """Object ARNs `bucket/prefix*suffix`, one per prefix."""
        return [self.bucket.arn_for_objects(f"{prefix}*{suffix}") for prefix in self.prefixes]

    def where(self) -> str:
        """Human words for the scope, used in acknowledgement reasons."""
        return ", ".join(f"s3://{self.label}/{prefix}" for prefix in self.prefixes)


class S3Grants:
    """Builds the S3/KMS statements each function role gets; one method per kind of access."""

    def __init__(
        self, scopes: Sequence[BucketAccess], *, kms_key_arns: Sequence[str], native_torrents: bool
    ) -> None:
        self.scopes = tuple(scopes)
        self.kms_key_arns = tuple(kms_key_arns)
        self.native_torrents = native_torrents

    def read_sources(self, fn: TorrentFunction) -> None:
        """GetObject (+Version, +GetObjectTorrent when the native path is on) inside the scopes."""
        actions = ["s3:GetObject", "s3:GetObjectVersion"]
        if self.native_torrents:
            actions += ["s3:GetObjectTorrent", "s3:GetObjectVersionTorrent"]
        for index, scope in enumerate(self.scopes):
            nag.grant(
                fn,
                fn.role,
                iam.PolicyStatement(
                    sid=f"ReadSources{index}", actions=actions, resources=scope.objects()
                ),
                reason=(
                    f"Read-only object access inside the configured scope {scope.where()}: the "
                    "service hashes whatever object a user uploads there, so the keys are not "
                    "known at deploy time; the wildcard is bounded by the bucket and prefix the "
                    "operator configured, and the actions are GetObject/GetObjectVersion (and "
                    "GetObjectTorrent only when torrent_source is native or auto)."
                ),
            )

    def write_torrents(self, fn: TorrentFunction, *, delete: bool) -> None:
        """PutObject (and DeleteObject if `delete`) on keys ending in `.torrent` — nothing else."""
        actions = ["s3:PutObject", "s3:DeleteObject"] if delete else ["s3:PutObject"]
        for index, scope in enumerate(self.scopes):
            nag.grant(
                fn,
                fn.role,
                iam.PolicyStatement(
                    sid=f"WriteTorrents{index}",
                    actions=actions,
                    resources=scope.objects(TORRENT_SUFFIX),
                ),
                reason=(
                    f"Write{' and delete' if delete else ''} only keys ending in .torrent inside "
                    f"{scope.where()}: the service stores <key>.torrent next to each object. The "
                    "resource pattern makes overwriting or deleting a source object impossible, "
                    "whatever the code does."
                ),
            )

    def list_for_not_found(self, fn: TorrentFunction) -> None:
        """ListBucket on the configured buckets so S3 answers 404, not 403, for a missing key.

        S3 only says NoSuchKey to a caller allowed to list the bucket; without it a deleted
        source looks like AccessDenied, and the worker could not tell "gone" (delete the
        torrent) from "forbidden". The code never calls ListObjects from this role. No s3:prefix
        condition: the implicit list check S3 makes for a GET/HEAD carries no prefix, so a
        prefix-scoped grant would turn every missing key back into 403 (docs/deploy.md).
        """
        if not self.scopes:
            return
        nag.grant(
            fn,
            fn.role,
            iam.PolicyStatement(
                sid="ListForNotFound",
                actions=["s3:ListBucket"],
                resources=[scope.bucket.bucket_arn for scope in self.scopes],
            ),
        )

    def list_prefixes(self, fn: TorrentFunction) -> None:
        """ListBucket restricted by `s3:prefix` to the configured prefixes (the backfill walk)."""
        self._list(fn, sid="ListScope")

    def _list(self, fn: TorrentFunction, *, sid: str) -> None:
        for index, scope in enumerate(self.scopes):
            conditions = None
            if "" not in scope.prefixes:  # a whole-bucket scope lists the whole bucket
                conditions = {"StringLike": {"s3:prefix": [f"{p}*" for p in scope.prefixes]}}
            nag.grant(
                fn,
                fn.role,
                iam.PolicyStatement(
                    sid=f"{sid}{index}",
                    actions=["s3:ListBucket"],
                    resources=[scope.bucket.bucket_arn],
                    conditions=conditions,
                ),
            )

    def kms(self, fn: TorrentFunction) -> None:
        """Decrypt (read SSE-KMS objects) and GenerateDataKey (write torrents under the bucket's
        default SSE-KMS key) with the named keys only, and only through S3."""
        if not self.kms_key_arns:
            return
        actions = ["kms:Decrypt", "kms:GenerateDataKey"]
        nag.grant(
            fn,
            fn.role,
            iam.PolicyStatement(
                sid="UseBucketKmsKeysViaS3",
                actions=actions,
                resources=list(self.kms_key_arns),
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{cdk.Aws.REGION}.amazonaws.com"}
                },
            ),
        )
