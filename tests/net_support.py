"""Network pieces for tests: a throwaway certificate authority and a scripted HTTP(S) server.

The scripted server binds any loopback address (127.0.0.1, 127.0.0.2, …), optionally on a
given port, and can speak TLS with a certificate of the test authority, so that tests can
route one host name to different local servers and check which one a client reached.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class LocalAuthority:
    """A CA certificate (``ca_file``) and a server certificate it signed (``cert_file``,
    ``key_file``) for the names and addresses given to :func:`make_authority`."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the server certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_authority(
    directory: Path,
    names: Iterable[str] = ("localhost",),
    addresses: Iterable[str] = ("127.0.0.1",),
) -> LocalAuthority:
    """Write a fresh CA and a server certificate for ``names`` and ``addresses``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backorigin test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backorigin test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    authority = LocalAuthority(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server-key.pem",
    )
    authority.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    authority.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    authority.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return authority


@dataclass(frozen=True)
class Seen:
    """One request a scripted server received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class Answer:
    """What a scripted server answers for one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class ScriptedServer(ThreadingHTTPServer):
    """An HTTP(S) server on ``address:port`` that answers from a script and records requests.

    Paths not in the script get 404. Use as a context manager; it serves from a thread.
    """

    daemon_threads = True

    def __init__(
        self, address: str = "127.0.0.1", port: int = 0, *, tls: LocalAuthority | None = None
    ) -> None:
        self.script: dict[str, Answer] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def _answer(self, *, send_body: bool) -> None:
                with owner._lock:
                    owner.seen.append(
                        Seen(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                        )
                    )
                    answer = owner.script.get(self.path, Answer(404, b"not here"))
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(answer.body)

            def log_message(self, *args: Any) -> None:
                return

        super().__init__((address, port), Handler)
        if tls is not None:
            self.socket = tls.server_context().wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, host: str | None = None) -> str:
        """``scheme://host:port`` (the bound address unless another host name is given)."""
        return f"{self.scheme}://{host or self.server_address[0]}:{self.port}"

    def answer(self, path: str, status: int = 200, body: bytes = b"", **headers: str) -> None:
        """Answer ``path`` (as sent, e.g. ``/a/b``) with this status, body and headers."""
        with self._lock:
            self.script[path] = Answer(
                status, body, {k.replace("_", "-"): v for k, v in headers.items()}
            )

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer ``path`` with a redirect to ``location``."""
        self.answer(path, status, Location=location)

    def requests(self, path: str | None = None) -> list[Seen]:
        """The requests received (for ``path`` only, if given)."""
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


def twin_servers(
    first: str, second: str, *, tls: LocalAuthority | None = None, attempts: int = 20
) -> tuple[ScriptedServer, ScriptedServer]:
    """Two scripted servers on the same port of two loopback addresses (not yet started),
    so that one URL reaches either, depending only on the address a client connects to."""
    for _ in range(attempts):
        one = ScriptedServer(first, tls=tls)
        try:
            two = ScriptedServer(second, one.port, tls=tls)
        except OSError:  # that port is taken on the second address: try another
            one.server_close()
            continue
        return one, two
    raise RuntimeError(f"no port free on both {first} and {second}")


@dataclass(frozen=True)
class Forwarded:
    """One request a :class:`TamperingProxy` forwarded, and what became of it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names, as the client sent them
    tampered: bool
    status: int


class TamperingProxy(ThreadingHTTPServer):
    """A plain HTTP proxy in front of one server that may change request bodies in transit.

    Requests are forwarded byte for byte, ``Host`` included (SigV4 signatures stay valid),
    except that ``tamper(method, path, body)`` returns the body actually sent on; where it
    returns other bytes, the request is recorded as tampered. Point a client's endpoint at
    :attr:`url`.
    """

    daemon_threads = True

    def __init__(
        self,
        upstream: str,
        tamper: Callable[[str, str, bytes], bytes],
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        target = urllib.parse.urlsplit(upstream)
        assert target.hostname is not None
        assert target.port is not None
        host, port = target.hostname, target.port
        self.forwarded: list[Forwarded] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                assert "chunked" not in (self.headers.get("Transfer-Encoding") or "")
                body = self.rfile.read(length) if length else b""
                sent = tamper(self.command, self.path, body)
                upstream_connection = http.client.HTTPConnection(host, port, timeout=120)
                try:
                    upstream_connection.putrequest(
                        self.command, self.path, skip_host=True, skip_accept_encoding=True
                    )
                    for name, value in self.headers.items():
                        if name.lower() not in ("connection", "content-length", "expect"):
                            upstream_connection.putheader(name, value)
                    if body or "Content-Length" in self.headers:
                        upstream_connection.putheader("Content-Length", str(len(sent)))
                    upstream_connection.endheaders(sent or None)
                    response = upstream_connection.getresponse()
                    data = response.read()
                    headers = response.getheaders()
                    status = response.status
                finally:
                    upstream_connection.close()
                with owner._lock:
                    owner.forwarded.append(
                        Forwarded(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            sent != body,
                            status,
                        )
                    )
                self.send_response_only(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                if self.command == "HEAD":
                    length_header = {k.lower(): v for k, v in headers}.get("content-length")
                    if length_header is not None:
                        self.send_header("Content-Length", length_header)
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay  # noqa: N815

            def log_message(self, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)
        self._tls = tls is not None
        if tls is not None:
            # A client that refuses the certificate fails the handshake in accept(); the
            # server drops that connection (an OSError) and keeps serving.
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, or ``https://localhost:PORT`` when it speaks TLS."""
        if self._tls:
            return f"https://localhost:{self.server_address[1]}"
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> TamperingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()
