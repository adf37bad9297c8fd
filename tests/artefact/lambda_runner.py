"""Runs inside the clean Lambda venv: import `_HANDLER`, call it once with a Lambda-shaped
context, as the python runtime's bootstrap does. Standard library only (this file is not
the asset: it is the runtime's part). Event JSON on stdin; the result JSON goes to the file
named by argv[1] (stdout belongs to the function's logs, as in Lambda)."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid


class LambdaContext:
    """The attributes and the one method Lambda's context object has."""

    def __init__(self, timeout_s: int) -> None:
        env = os.environ
        self.function_name = env["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = env["AWS_LAMBDA_FUNCTION_VERSION"]
        self.memory_limit_in_mb = int(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.invoked_function_arn = (
            f"arn:aws:lambda:{env['AWS_REGION']}:123456789012:function:{self.function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = env["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = env["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    event = json.load(sys.stdin)
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), function_name)
    context = LambdaContext(int(os.environ["S3TORRENT_TEST_TIMEOUT_S"]))
    result = handler(event, context)
    package = sys.modules[module_name.split(".")[0]]
    loaded_from = {
        name: getattr(sys.modules.get(name), "__file__", None)
        for name in (module_name.split(".")[0], "aws_lambda_powertools", "boto3", "pydantic")
    }
    assert package.__file__ is not None
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump({"result": result, "loaded_from": loaded_from}, out)


if __name__ == "__main__":
    main()
