"""The CDK side of s3torrent (no Lambda runtime code here).

config (deploy settings from context) → stack (one S3TorrentStack) → torrent_service (the
reusable S3TorrentService construct) composed of functions (per-function defaults), access
(S3/KMS grants), api (API Gateway), monitoring (alarms, dashboard); nag keeps cdk-nag
acknowledgements narrow and next to what needs them.
"""
