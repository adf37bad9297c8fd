"""qBittorrent (Debian's `qbittorrent-nox`) on loopback with a throwaway profile, driven
through its Web API (https://github.com/qbittorrent/qBittorrent/wiki/WebUI-API-(qBittorrent-4.1))."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.support.ports import free_port

# qBittorrent.conf of the profile: the legal notice accepted (else it waits on stdin) and no
# login from localhost; the rest is set over the Web API.
CONFIG = """[LegalNotice]
Accepted=true

[Preferences]
WebUI\\LocalHostAuth=false
WebUI\\Address=127.0.0.1
"""


class QBittorrent:
    """One `qbittorrent-nox` process and its Web API."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        config = profile / "qBittorrent" / "config"
        config.mkdir(parents=True)
        (config / "qBittorrent.conf").write_text(CONFIG)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (profile / "stdout.log").open("wb")
        self.process = subprocess.Popen(
            ["qbittorrent-nox", f"--profile={profile}", f"--webui-port={self.port}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.version = self.get("/api/v2/app/version").decode()
                break
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"qbittorrent-nox did not start: {self.output()}") from None
                time.sleep(0.2)

    def get(self, endpoint: str, /, **query: str) -> bytes:
        url = self.url + endpoint + ("?" + urlencode(query) if query else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            data: bytes = response.read()
            return data

    def post(self, endpoint: str, /, **form: str) -> bytes:
        request = urllib.request.Request(self.url + endpoint, data=urlencode(form).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            data: bytes = response.read()
            return data

    def json(self, endpoint: str, /, **query: str) -> Any:
        return json.loads(self.get(endpoint, **query))

    def set_preferences(self, **values: Any) -> None:
        self.post("/api/v2/app/setPreferences", json=json.dumps(values))

    def output(self) -> str:
        self.log.flush()
        return (self.profile / "stdout.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()
