"""The API's resolver: `{key+}` path parameters, the body-size limit, the runtime per request."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.utilities.typing import LambdaContext

from s3torrent.handlers.runtime import Runtime

MAX_BODY_BYTES = 64 * 1024
_GREEDY = ("key", "prefix")  # API Gateway's `{key+}` and `{prefix+}`: they span slashes
_RUNTIME = "runtime"


class ApiResolver(APIGatewayRestResolver):
    """REST resolver whose `<key>` and `<prefix>` parameters span slashes, like API Gateway's
    `{key+}`.

    Other parameters match one path segment. Matching runs on the path as API Gateway REST
    hands it over (percent-encoded), so routes unquote what they capture.
    """

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        super().__init__(enable_validation=True)
        self._runtime = runtime

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}/*$") -> re.Pattern[str]:
        def group(match: re.Match[str]) -> str:
            name = match.group(1)
            return f"(?P<{name}>.+)" if name in _GREEDY else f"(?P<{name}>[^/]+)"

        return re.compile(base_regex.format(re.sub(r"<(\w+)>", group, rule)))

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        """Refuse a body over MAX_BODY_BYTES before any route parses it, then route."""
        if _too_large(event):
            return _too_large_response()
        # Asked for per request, not captured at import: tests and the local stack swap the
        # runtime. Powertools shares this context with every included router and clears it
        # once the event is answered.
        self.context[_RUNTIME] = self._runtime()
        return super().resolve(event, context)


def new_router() -> APIGatewayRouter:
    """A router for one resource, typed (Powertools leaves its constructor unannotated)."""
    return APIGatewayRouter()  # type: ignore[no-untyped-call]


def request_runtime(router: APIGatewayRouter) -> Runtime:
    """The runtime serving the request being resolved."""
    return cast(Runtime, router.context[_RUNTIME])


def _too_large(event: Mapping[str, Any]) -> bool:
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))
    return size > MAX_BODY_BYTES


def _too_large_response() -> dict[str, Any]:
    body = {
        "error": {
            "code": "RequestEntityTooLarge",
            "message": f"the body is over {MAX_BODY_BYTES} bytes",
        }
    }
    return {
        "statusCode": 413,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
