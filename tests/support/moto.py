"""What the unit tests' in-process moto S3 holds (the `s3` fixture in tests/unit/conftest.py)."""

BUCKET = "bkt"
