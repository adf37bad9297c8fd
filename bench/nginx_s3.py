"""A fast, read-only, path-style S3-compatible endpoint on loopback: nginx serving a folder.

Why nginx and not moto's server: moto reads the whole object on every GET, so ranged GETs
of a 2 GiB object crawl (docs/development.md). nginx serves ranges straight from the page
cache with sendfile, which is what S3 looks like from a Lambda: the bottleneck is the client.

What boto3 needs from it, and nginx gives on static files:
- `HEAD /bucket/key` -> 200 with Content-Length, ETag ("<mtime hex>-<size hex>"), Last-Modified;
- `GET /bucket/key` with `Range: bytes=a-b` -> 206 with exactly those bytes;
- `If-Match: <etag>` -> served when it matches, 412 otherwise (nginx's not_modified filter);
- errors as S3 XML, so botocore reports `NoSuchKey` / `PreconditionFailed` like S3 does.
Only GET/HEAD are served; signatures are ignored (it is a loopback test endpoint).
With `tls=(certificate, key)` it serves HTTPS (TLS 1.2/1.3), as S3 does; then nginx
encrypts in user space instead of using sendfile. `self_signed_certificate` makes a
throwaway pair for 127.0.0.1 that clients trust through AWS_CA_BUNDLE.

nginx runs as a child process (`daemon off`, one config and pid under a temp dir), so it
dies with the benchmark and needs no root and no system config.
"""

from __future__ import annotations

import grp
import http.client
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

_S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>{code}</Code><Message>{message}</Message></Error>"
)

_CONFIG = """\
daemon off;
{user}
master_process on;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server_tokens off;
    # sendfile: page cache -> socket inside the kernel, no user-space copy in nginx.
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=1024{ssl};
{tls}{limit_rate}        root {root};
        location / {{
            limit_except GET {{ deny all; }}
            error_page 404 = @no_such_key;
            error_page 412 = @precondition_failed;
            error_page 403 405 = @access_denied;
        }}
        location @no_such_key {{
            default_type application/xml;
            return 404 '{no_such_key}';
        }}
        location @precondition_failed {{
            default_type application/xml;
            return 412 '{precondition_failed}';
        }}
        location @access_denied {{
            default_type application/xml;
            return 403 '{access_denied}';
        }}
    }}
}}
"""


# TLS 1.2/1.3 with OpenSSL's default ciphers: AES-GCM first, as S3 offers it.
_TLS = """\
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:tls:1m;
"""


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A new certificate and key for 127.0.0.1 (valid a day), written into `folder`.

    The client trusts it through AWS_CA_BUNDLE, which botocore and the direct transport
    both read (wiring.direct_connections).
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = folder / "bench-cert.pem", folder / "bench-key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _worker_user() -> str:
    """The `user` directive: started as root, nginx's workers would run as `nobody` and
    answer 403 for any folder only root may read (a pytest tmp_path, /root/...). They run
    as whoever started the bench instead; as anyone else nginx cannot switch, so no line.
    """
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NginxS3:
    """`with NginxS3(root) as url:` serves `root/<bucket>/<key>` at `url/<bucket>/<key>`."""

    def __init__(
        self,
        root: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        rate_per_connection: int | None = None,
    ) -> None:
        """`tls`: (certificate, key) PEM files to serve HTTPS instead of HTTP.
        `rate_per_connection`: bytes per second each answer is held to (nginx `limit_rate`),
        to look like S3 from afar, where one connection carries ~90 MB/s.
        """
        self.root = Path(root).resolve()
        self.workers = workers
        self.port = port or _free_port()
        self.tls = tls
        self.rate_per_connection = rate_per_connection
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._tmp: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def config_text(self, tmp: Path) -> str:
        return _CONFIG.format(
            workers=self.workers,
            user=_worker_user(),
            tmp=tmp,
            port=self.port,
            ssl=" ssl" if self.tls else "",
            limit_rate=(
                f"        limit_rate {self.rate_per_connection};\n"
                if self.rate_per_connection
                else ""
            ),
            tls=_TLS.format(cert=self.tls[0], key=self.tls[1]) if self.tls else "",
            root=self.root,
            no_such_key=_S3_ERROR.format(
                code="NoSuchKey", message="The specified key does not exist."
            ),
            precondition_failed=_S3_ERROR.format(
                code="PreconditionFailed",
                message="At least one of the pre-conditions you specified did not hold",
            ),
            access_denied=_S3_ERROR.format(code="AccessDenied", message="Access Denied"),
        )

    def start(self) -> str:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._tmp = Path(tempfile.mkdtemp(prefix="s3torrent-nginx-", dir="/tmp"))
        conf = self._tmp / "nginx.conf"
        conf.write_text(self.config_text(self._tmp))
        self._process = subprocess.Popen(
            [nginx, "-p", str(self._tmp), "-c", str(conf), "-e", str(self._tmp / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                log = (self._tmp / "error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx exited ({self._process.returncode}): {err}{log}")
            try:
                conn = (
                    http.client.HTTPSConnection(
                        "127.0.0.1",
                        self.port,
                        timeout=1,
                        context=ssl.create_default_context(cafile=self.tls[0]),
                    )
                    if self.tls
                    else http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                )
                conn.request("HEAD", "/")
                conn.getresponse().read()
                conn.close()
                return self.url
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not answer on {self.url}")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of nginx so far: its master and its workers.

        The bench's sender shares the cores with the client it measures; this is its share
        (from /proc, in clock ticks, so to about 10 ms a process).
        """
        if self._process is None:
            return 0.0
        master = self._process.pid
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone since the listing
                continue
            # The command name (field 2) may hold spaces: fields are counted after its ')'.
            fields = stat[stat.rindex(")") + 2 :].split()
            pid, parent = int(entry.name), int(fields[1])
            if master in (pid, parent):
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGTERM is nginx's fast shutdown; its workers exit with the master.
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
