"""A socketserver-style server run on a daemon thread, with the stop that never hangs."""

from __future__ import annotations

import threading
from typing import Any, Protocol


class _Serving(Protocol):
    server_address: Any

    def serve_forever(self) -> None: ...
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


class BackgroundServer:
    """Serves `server` on a thread of its own: `start`, `url`, `stop`."""

    def __init__(self, server: _Serving, *, name: str) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits forever on a server never started
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
