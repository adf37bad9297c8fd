"""What every route answers with: JSON bodies, and the media types the API speaks."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response

JSON_TYPE = "application/json"
TORRENT_TYPE = "application/x-bittorrent"
XML_TYPE = "application/xml"


def json_response(status: int, body: Any, **headers: str) -> Response[Any]:
    """`body` as JSON (dates and other non-JSON values as their text)."""
    return Response(
        status, content_type=JSON_TYPE, body=json.dumps(body, default=str), headers=headers
    )
