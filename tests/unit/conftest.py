"""Unit tests run on moto's in-process mock, which intercepts botocore only.

The direct range transport (s3/direct.py) sends its GETs with http.client, which the mock
never sees, so unit tests read ranges through botocore (`SdkRanges`), exactly as
`read_transport: sdk` does. The direct path is tested over real HTTP in tests/integration,
tests/reliability and tests/e2e.
"""

from __future__ import annotations

import pytest

from s3torrent import wiring


@pytest.fixture(autouse=True)
def _ranges_through_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "direct_connections", lambda settings, data_client: None)
