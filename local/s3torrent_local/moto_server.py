"""moto's S3/SQS/DynamoDB server on loopback, bound in the calling thread (busy ports fail fast)."""

from __future__ import annotations

import socket
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from s3torrent_local import moto_fixes
from s3torrent_local.background import BackgroundServer


class _QuietHandler(MotoRequestHandler):
    """moto's request handler without werkzeug's access log on stderr."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class EmbeddedMoto(BackgroundServer):
    """The embedded S3-compatible endpoint (and SQS, DynamoDB) the local stack talks HTTP to."""

    def __init__(self, host: str, port: int) -> None:
        # moto's ThreadedMotoServer binds inside its thread and waits forever when the port is
        # taken, and werkzeug's own bind exits the process: bind here, so OSError says it.
        moto_fixes.install()
        listener = socket.create_server((host, port))
        try:
            app = DomainDispatcherApplication(create_backend_app)
            server: BaseWSGIServer = make_server(
                host, port, app, threaded=True, request_handler=_QuietHandler, fd=listener.fileno()
            )
        finally:
            listener.close()  # the server holds its own duplicate of the descriptor
        super().__init__(server, name="moto-server")
