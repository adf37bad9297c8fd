"""Loopback ports for the servers the tests start (a module of its own: conftests shadow)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
