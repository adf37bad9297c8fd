"""The local stack behind `s3torrent serve` / `make run`: the deployed service on one machine.

moto's server stands in for S3, SQS and DynamoDB; the real handlers run in threads fed the
same events Lambda would give them. Nothing here ships to Lambda.
"""
