"""The HTTP API behind API Gateway (REST, IAM auth): S3-compatible `?torrent` and a JSON API.

Routes, one Powertools router each (the README has the full table of statuses and bodies):
    GET  /{bucket}/{key+}?torrent     s3_compatible: the torrent, or an S3-style XML error
    POST /torrents                    torrents: make one now (201/200) or queue it (202)
    GET  /torrents/{bucket}/{key+}    torrents: status, hashes and magnet link of a torrent
    POST /backfills                   backfills: start a backfill (202)
    GET  /backfills/{id}              backfills: its progress
    GET  /feeds/{bucket}[/{prefix+}]  feeds: RSS 2.0 (or JSON) of a folder's newest torrents
    GET  /browse/{bucket}[/{prefix+}] browse: an HTML page of a folder and its torrents
    GET  /openapi.json                openapi: the OpenAPI document
Errors are mapped in one place (`errors`): JSON `{"error": {"code", "message"}}`, XML
`<Error>` on the S3-compatible route.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from s3torrent.handlers.api import (
    backfills,
    browse,
    errors,
    feeds,
    openapi,
    s3_compatible,
    torrents,
)
from s3torrent.handlers.api.resolver import ApiResolver
from s3torrent.handlers.runtime import Runtime
from s3torrent.observability import logger, metrics, tracer
from s3torrent.settings import Settings

runtime = Runtime(Settings.from_env(os.environ))

# The resolver reads `runtime` through this lambda on every request, so replacing the
# module attribute (tests, the local stack) reaches every router.
app = ApiResolver(runtime=lambda: runtime)
# In this order: dynamic routes match in registration order, the S3 catch-all last.
app.include_router(torrents.router)
app.include_router(backfills.router)
app.include_router(feeds.router)
app.include_router(browse.router)
app.include_router(openapi.router)
app.include_router(s3_compatible.router)
app.include_router(errors.router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
