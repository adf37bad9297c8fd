"""A stand-in for the context object Lambda passes every invocation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"

Handler = Callable[[dict[str, Any], Any], Any]  # a Lambda entry point: (event, context)


@dataclass
class FakeLambdaContext:
    """What Powertools and the handlers read from a Lambda context, with a time budget."""

    function_name: str
    timeout_seconds: float
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id[:8]}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left of this invocation's budget (never negative)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))
