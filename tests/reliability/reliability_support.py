"""Shared machinery of the reliability suite: seeds, an S3 fault proxy, the invariant checker.

Every trial draws its parameters from ``random.Random(tag)``, where the tag is
``"<seed>:<category>:<index>"`` and the seed comes from ``BACKORIGIN_RELIABILITY_SEED`` (a fixed
default). Failure messages start with the tag, so a failing trial is reproduced by running the
same test id with the same seed.

:class:`S3FaultProxy` is a real HTTP proxy in front of SeaweedFS: it forwards every request
byte for byte (SigV4 signatures stay valid because the ``Host`` header is passed on as the
client signed it) and answers chosen S3 operations with an error instead — before the request
reaches S3, or after S3 applied it (a lost response). botocore's own retry logic then runs
for real against those answers.

This module is also what the forkserver children of the process tests import (see
:func:`child_copy`), so it imports the heavy modules once, in the forkserver.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3  # noqa: F401 - preloaded into the forkserver for the process tests
import urllib3

from backorigin.config import Config, load_config
from backorigin.config.models import BucketConfig
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.transfer import CopyEngine, CopyOutcome, CopyResult
from backorigin.transfer.bucket import make_s3_client
from backorigin.transfer.lease import lease_key

SEED = int(os.environ.get("BACKORIGIN_RELIABILITY_SEED", "20250917"))
MiB = 1024 * 1024
PART = 5 * MiB


def trial(category: str, index: int) -> tuple[random.Random, str]:
    """The trial's random generator and its tag (printed in every failure message)."""
    tag = f"{SEED}:{category}:{index}"
    return random.Random(tag), tag


def object_size(rng: random.Random, *, multipart_share: float = 0.25) -> int:
    """Mostly small single-part objects (0 B..400 KB), some multipart ones (5..16 MiB)."""
    if rng.random() < multipart_share:
        return rng.randint(PART + 1, 16 * MiB)
    return rng.choice([0, 1, rng.randint(2, 4096), rng.randint(4097, 400_000)])


def config_text(
    bucket: str, s3_url: str, origin_url: str, *, copy: dict[str, Any], http: dict[str, Any]
) -> str:
    """A config with one HTTP origin, in the YAML users write."""
    http_yaml = "".join(f"    {k}: {v}\n" for k, v in http.items())
    copy_yaml = ", ".join(f"{k}: {v}" for k, v in copy.items())
    return (
        f"bucket: {{name: {bucket}, endpoint_url: '{s3_url}', region: us-east-1}}\n"
        "origins:\n"
        "  - name: web\n"
        "    type: http\n"
        f"    base_url: '{origin_url}'\n" + http_yaml + f"copy: {{{copy_yaml}}}\n"
    )


def origin_etag(origin_url: str, key: str) -> str:
    """The ETag the origin states for ``key`` right now (the version token of the bytes)."""
    response = urllib3.request(
        "HEAD", origin_url + urllib.parse.quote(key), retries=False, timeout=10
    )
    assert response.status == 200, f"HEAD {key}: {response.status}"
    return str(response.headers["ETag"])


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``condition`` until it holds; False if it never did within ``timeout``.

    For states only observable by asking (a lease in S3); the timeout is a bound on a hang,
    never the thing a test waits for.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for_expiry(lease: dict[str, Any]) -> None:
    """Wait until the wall clock passes the expiry ``lease`` states.

    A lease expires by the clock (that is its contract), so this waits for the instant the
    lease itself names, not for a guessed length of time.
    """
    expires = float(lease["expires"])
    while time.time() <= expires:
        time.sleep(max(0.01, expires - time.time()))


# --- the S3 fault proxy ---------------------------------------------------------------------


@dataclass
class Fault:
    """Answer matching S3 requests with an error.

    Attributes:
        operation: ``PutObject``, ``UploadPart``, ``CreateMultipartUpload``,
            ``CompleteMultipartUpload``, ``AbortMultipartUpload``, ``ListParts``,
            ``HeadObject``, ``GetObject`` or ``DeleteObject``.
        key: The object key (without the bucket).
        status: The HTTP status to answer with.
        code: The S3 error code in the XML body.
        times: How many matching requests get the error (after ``skip``).
        skip: Matching requests let through before the first error.
        part: For ``UploadPart``: only this part number.
        after_apply: Forward the request to S3 first, then answer the error (the write
            happened, the response was lost).
        hold: Keep a matching request waiting (before it reaches S3, or with ``after_apply``
            after S3 applied it) until :meth:`release`; :attr:`arrived` is set once one
            waits. A test kills a copier at exactly that point of an S3 write this way.
    """

    operation: str
    key: str
    status: int = 503
    code: str = "SlowDown"
    times: int = 1
    skip: int = 0
    part: int | None = None
    after_apply: bool = False
    hold: bool = False
    seen: int = 0
    fired: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let held requests go on (they get the error)."""
        self.released.set()

    def _wait(self) -> None:
        if self.hold:
            self.arrived.set()
            self.released.wait()


def _operation(method: str, query: dict[str, list[str]]) -> str:
    if method == "PUT":
        return "UploadPart" if "uploadId" in query else "PutObject"
    if method == "POST":
        return "CompleteMultipartUpload" if "uploadId" in query else "CreateMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    return "HeadObject" if method == "HEAD" else method


_NOT_FORWARDED = frozenset(
    {"expect", "connection", "keep-alive", "proxy-connection", "transfer-encoding"}
)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _proxy(self) -> None:
        body = self._body()
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        operation = _operation(self.command, query)
        segments = parts.path.split("/", 2)
        key = urllib.parse.unquote(segments[2]) if len(segments) == 3 else ""
        part = int(query["partNumber"][0]) if "partNumber" in query else None
        fault = self.server.owner.match(operation, key, part)
        if fault is not None and not fault.after_apply:
            fault._wait()
            with contextlib.suppress(OSError):  # a held client may be dead by now
                self._error(fault)
            return
        status, headers, data = self._forward(body)
        if fault is not None:
            fault._wait()
            with contextlib.suppress(OSError):
                self._error(fault)
            return
        self.send_response_only(status)
        for name, value in headers:
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        if self.command == "HEAD":
            length = next((v for n, v in headers if n.lower() == "content-length"), None)
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.server.owner.upstream
        connection = http.client.HTTPConnection(host, port, timeout=120)
        try:
            connection.putrequest(
                self.command, self.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in self.headers.items():
                if name.lower() not in _NOT_FORWARDED and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or self.headers.get("Content-Length") is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _error(self, fault: Fault) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{fault.code}</Code><Message>injected by the fault proxy</Message>"
            "<RequestId>fault-proxy</RequestId></Error>"
        ).encode()
        self.send_response_only(fault.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", "fault-proxy")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: S3FaultProxy) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.owner = owner


class S3FaultProxy:
    """A proxy in front of an S3 server that injects errors into chosen operations.

    Args:
        upstream: The S3 server's base URL (``http://127.0.0.1:PORT``).
    """

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        assert parts.hostname is not None
        assert parts.port is not None
        self.upstream = (parts.hostname, parts.port)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = _ProxyServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="s3-fault-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        """The proxy's base URL (point the S3 client's endpoint here)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, fault: Fault) -> Fault:
        """Add a fault; it stays until it has fired ``times`` times or :meth:`clear`."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault; requests still held go on."""
        with self._lock:
            for fault in self._faults:
                fault.release()
            self._faults.clear()

    def match(self, operation: str, key: str, part: int | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation != operation or fault.key != key:
                    continue
                if fault.part is not None and fault.part != part:
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip or fault.fired >= fault.times:
                    continue
                fault.fired += 1
                return fault
        return None


# --- the invariant ----------------------------------------------------------------------------


@dataclass
class Invariant:
    """What S3 must look like for one key after a trial.

    Attributes:
        versions: Every version the origin held during the trial, by its ETag.
        foreign: Bytes a competing writer put under the key (allowed when the copy says
            ``exists``).
        resume_limit: In resume cases, the most bytes the origin may have served.
        expect: The outcomes this trial may end with.
    """

    versions: dict[str, bytes]
    foreign: bytes | None = None
    resume_limit: float | None = None
    expect: frozenset[CopyOutcome] = frozenset(CopyOutcome)
    problems: list[str] = field(default_factory=list)


class Checker:
    """Checks the invariant against the real S3 server (a direct client, no proxy)."""

    def __init__(self, s3: Any, bucket: str, prefix: str = "") -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def stored(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None
        return bytes(response["Body"].read()), dict(response.get("Metadata", {}))

    def open_uploads(self, key: str) -> list[str]:
        listed = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        return [u["UploadId"] for u in listed.get("Uploads", []) if u["Key"] == key]

    def lease(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=lease_key(self.prefix, key))
        except self.s3.exceptions.NoSuchKey:
            return None
        loaded: dict[str, Any] = json.loads(body["Body"].read())
        return loaded

    def check(
        self,
        tag: str,
        key: str,
        result: CopyResult,
        invariant: Invariant,
        *,
        served: int | None = None,
        lease_may_remain: bool = False,
    ) -> None:
        """Assert the invariant; the message names the trial, what was done and what broke."""
        problems = invariant.problems
        journal = os.environ.get("BACKORIGIN_RELIABILITY_JOURNAL")
        if journal:  # one line per check, to see what the trials ran into
            with open(journal, "a") as out:
                entry = {"tag": tag, "outcome": result.outcome.value, "reason": result.reason}
                out.write(json.dumps({**entry, "resumed": result.resumed_parts}) + "\n")
        found = self.stored(key)
        if found is not None:
            data, metadata = found
            etag = metadata.get("backorigin-origin-etag")
            if invariant.foreign is not None and data == invariant.foreign:
                if result.outcome not in (CopyOutcome.EXISTS, CopyOutcome.IN_PROGRESS):
                    problems.append(f"a competitor's object is there but the copy says {result}")
            elif etag is None or etag not in invariant.versions:
                problems.append(f"S3 holds {len(data)} bytes of no known version ({etag})")
            elif data != invariant.versions[etag]:
                problems.append(
                    f"S3 holds {len(data)} bytes that are not version {etag} "
                    f"({len(invariant.versions[etag])} bytes)"
                )
        if result.outcome is CopyOutcome.COPIED and found is None:
            problems.append("the copy says copied but S3 holds nothing")
        written = result.outcome in (CopyOutcome.COPIED, CopyOutcome.EXISTS)
        if not written and found is not None and found[0] != invariant.foreign:
            problems.append(f"the copy ended {result.outcome.value} but S3 holds an object")
        uploads = self.open_uploads(key)
        if uploads:
            problems.append(f"{len(uploads)} multipart upload(s) left open")
        if not lease_may_remain and self.lease(key) is not None:
            problems.append("the copy lease was left behind")
        if result.outcome not in invariant.expect:
            wanted = ", ".join(sorted(o.value for o in invariant.expect))
            problems.append(f"outcome {result.outcome.value} (expected {wanted})")
        limit = invariant.resume_limit
        if limit is not None and served is not None and served > limit:
            problems.append(f"the origin served {served} bytes, over the {limit:.0f} allowed")
        if problems:
            raise AssertionError(
                f"trial {tag} (key {key!r}): "
                + "; ".join(problems)
                + f"\n  result: {result.outcome.value} reason={result.reason!r}"
            )


# --- the lab: a bucket, clients, engines ---------------------------------------------------------


class Lab:
    """A bucket of a test module's own, S3 clients built like the engine's, and the checker."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        seaweedfs: Any,
        proxy: S3FaultProxy,
        origin: HttpOriginServer,
        credentials: dict[str, str],
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.s3_url = seaweedfs.url
        self.proxy = proxy
        self.origin = origin
        self.access_key = credentials["AWS_ACCESS_KEY_ID"]
        self.secret_key = credentials["AWS_SECRET_ACCESS_KEY"]
        self.checker = Checker(s3, bucket)
        self.direct = self.client(self.s3_url)

    def client(self, endpoint: str, **kwargs: Any) -> Any:
        """An S3 client exactly as the engine builds its own (standard retries and all)."""
        bucket = BucketConfig(name=self.bucket, endpoint_url=endpoint, region="us-east-1")
        return make_s3_client(
            bucket,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            **kwargs,
        )

    def text(
        self,
        *,
        copy: dict[str, Any] | None = None,
        http: dict[str, Any] | None = None,
        via_proxy: bool = False,
    ) -> str:
        """The config of a trial: small parts, fast HTTP retries unless overridden; S3 through
        the fault proxy if ``via_proxy``."""
        return config_text(
            self.bucket,
            self.proxy.url if via_proxy else self.s3_url,
            self.origin.url,
            copy={"part_size": PART, "concurrency": 3, "lease_ttl": "30s", **(copy or {})},
            http={"retries": 3, "backoff": "10ms", "read_timeout": "5s", **(http or {})},
        )

    def config(self, **kwargs: Any) -> Config:
        return load_config(self.text(**kwargs))

    def engine(
        self,
        *,
        via_proxy: bool = False,
        clock: Callable[[], float] = time.time,
        read_attempts: int = 5,
        **kwargs: Any,
    ) -> CopyEngine:
        """A copy engine on the bucket, its S3 requests optionally through the fault proxy.

        Through the proxy, each engine gets a client of its own, as a fresh fetcher would:
        botocore's standard-mode retry quota (500 tokens, 14 per retried 5xx, 1 back per
        success) is per client, and the trials that exhaust retries on purpose would otherwise
        drain it for the trials after them, which then see no retry at all.
        """
        return CopyEngine(
            self.config(**kwargs),
            s3_client=self.client(self.proxy.url) if via_proxy else self.direct,
            clock=clock,
            read_attempts=read_attempts,
        )


# --- copiers in other processes ---------------------------------------------------------------


def engine_in_process(
    text: str, access_key: str, secret_key: str, *, clock_skew: float = 0.0
) -> tuple[Config, CopyEngine]:
    """A copy engine built the way a fetcher process builds it (its own client and adapters)."""
    config = load_config(text)
    client = make_s3_client(
        config.bucket, aws_access_key_id=access_key, aws_secret_access_key=secret_key
    )

    def clock() -> float:
        return time.time() + clock_skew

    return config, CopyEngine(config, s3_client=client, clock=clock)


def child_copy(
    text: str,
    key: str,
    access_key: str,
    secret_key: str,
    barrier: Any = None,
    results: Any = None,
) -> None:
    """Run one copy in this (child) process; report the outcome on ``results`` if given."""
    _, engine = engine_in_process(text, access_key, secret_key)
    if barrier is not None:
        barrier.wait(timeout=120)
    result = engine.copy(key)
    if results is not None:
        results.put((os.getpid(), result.outcome.value, result.reason))


@contextlib.contextmanager
def forkserver_context() -> Iterator[Any]:
    """A multiprocessing context whose children fork from a server that preloaded this module."""
    import multiprocessing
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["reliability_support"])
    # The forkserver is a fresh interpreter, and before Python 3.12 it ignores the parent's
    # sys.path when preloading: give it this directory through the environment.
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", _WARM)}
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, saved["PYTHONPATH"]) if p)
    os.environ[_WARM] = "1"
    try:
        forkserver.ensure_running()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield context


_WARM = "BACKORIGIN_RELIABILITY_FORKSERVER"


def _warm_up() -> None:
    """In the forkserver: load what every child needs (botocore's S3 model, the config
    models' validators) once, so that a forked child starts in milliseconds."""
    engine_in_process(
        config_text("warm-up", "http://127.0.0.1:9", "http://127.0.0.1:9/", copy={}, http={}),
        "warm",
        "up",
    )


if os.environ.get(_WARM) == "1":
    _warm_up()
