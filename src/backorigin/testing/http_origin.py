"""A real local HTTP origin server for tests and demos, built on aiohttp.

:class:`HttpOriginServer` serves the files of a directory over HTTP on ``127.0.0.1``. All the
HTTP semantics (``Range``, ``ETag``, ``Last-Modified``, ``If-Match``,
``If-Unmodified-Since``, ``If-None-Match``, 416s) come from :class:`aiohttp.web.FileResponse`;
this module adds what a test needs around it:

* per-object response headers (``Content-Type``, ``Cache-Control``, ``Content-MD5``,
  ``Repr-Digest``, user metadata, …) kept in a sidecar map, see :func:`object_headers`;
* counters of requests and bytes served per key, so a test can assert "the origin served the
  bytes once";
* fault hooks: answer 503 with ``Retry-After`` N times, redirect, ignore ``Range``, drop the
  connection after N body bytes, go quiet after N body bytes, stall, refuse ``HEAD``, weak
  ETags, hidden headers, required (auth) headers;
* gates (:meth:`HttpOriginServer.hold`): hold chosen GETs, before the response or after N body
  bytes, until the test releases them or the client goes away. A test that must act while a
  client is at a known point of a transfer (kill it, interrupt it, let its read time out) waits
  for :meth:`Hold.wait_held` instead of sleeping and hoping.

The server runs its own event loop in a background thread, so synchronous code (and the
urllib3-based adapter) can talk to it::

    with HttpOriginServer() as server:
        server.put("docs/a.txt", b"hello", headers={"Content-Type": "text/plain"})
        print(server.url + "docs/a.txt")

Keys are URL paths below ``/`` (percent-decoded), stored as files below ``root``. Files written
by :meth:`HttpOriginServer.put` get a whole-second modification time, strictly later than the
version they replace, so both the ETag (mtime and size) and the second-granularity
``Last-Modified`` change with every write.

aiohttp is imported here and only here (install ``backorigin[local]``).
"""

from __future__ import annotations

__all__ = ["Hold", "HttpOriginServer", "RecordedRequest", "object_headers"]

import asyncio
import base64
import contextlib
import hashlib
import math
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import unquote

from backorigin._servers import Service
from backorigin.errors import MissingExtra

try:
    from aiohttp import web
    from aiohttp.abc import AbstractStreamWriter
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("local", "aiohttp") from exc

# Headers the file server computes itself; a sidecar must not contradict them.
_SERVER_HEADERS = frozenset(
    {
        "content-length",
        "content-range",
        "etag",
        "last-modified",
        "accept-ranges",
        "transfer-encoding",
        "connection",
    }
)


def object_headers(
    data: bytes,
    *,
    content_type: str | None = None,
    content_encoding: str | None = None,
    cache_control: str | None = None,
    content_disposition: str | None = None,
    content_language: str | None = None,
    expires: str | None = None,
    metadata: Mapping[str, str] | None = None,
    metadata_prefix: str = "x-meta-",
    digests: bool = True,
) -> dict[str, str]:
    """The response headers an origin would send for ``data`` with this metadata.

    Args:
        data: The stored bytes (used for the digests).
        metadata: User metadata, sent as ``metadata_prefix + name`` headers.
        digests: State ``Content-MD5`` and an RFC 9530 ``Repr-Digest`` (sha-256 and md5).
    """
    headers: dict[str, str] = {}
    for name, value in (
        ("Content-Type", content_type),
        ("Content-Encoding", content_encoding),
        ("Cache-Control", cache_control),
        ("Content-Disposition", content_disposition),
        ("Content-Language", content_language),
        ("Expires", expires),
    ):
        if value is not None:
            headers[name] = value
    for name, value in (metadata or {}).items():
        headers[metadata_prefix + name] = value
    if digests:
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - a checksum
        sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode()
        headers["Content-MD5"] = md5
        headers["Repr-Digest"] = f"sha-256=:{sha256}:, md5=:{md5}:"
    return headers


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received: its method and headers (names lower-cased)."""

    method: str
    headers: Mapping[str, str]


@dataclass(slots=True)
class _Behaviour:
    """Per-key fault hooks; the defaults mean "behave like a plain file server"."""

    fail_times: int = 0
    fail_status: int = 503
    fail_headers: dict[str, str] = field(default_factory=dict)
    redirect_to: str | None = None
    redirect_status: int = 302
    ignore_range: bool = False
    drop_after: int | None = None
    drop_times: int | None = None
    pause_after: int | None = None
    pause_seconds: float = 0.0
    pause_times: int | None = None
    before_get: Callable[[int], None] | None = None
    gets: int = 0
    stall: float = 0.0
    refuse_head: int | None = None
    weak_etag: bool = False
    hidden_headers: frozenset[str] = frozenset()
    required_headers: dict[str, str] = field(default_factory=dict)


class Hold:
    """A gate in front of GET responses, made by :meth:`HttpOriginServer.hold`.

    A held request waits until :meth:`release` or until its client goes away (killed, or gave
    up after its read timeout); an abandoned request sends nothing more. The counters let a test
    wait for a known state instead of a length of time: "two requests wait at the gate" means
    the client is exactly there.
    """

    # How often a held request checks whether its client is still connected; this bounds how
    # late the gate notices a killed client, it is not a wait any test relies on.
    _POLL = 0.005

    def __init__(self, which: Callable[[int], bool], after_bytes: int | None) -> None:
        self.after_bytes = after_bytes
        self._which = which
        self._seen = 0
        self._cv = threading.Condition()
        self._released = False
        self._waiting = 0
        self._caught = 0
        self._abandoned = 0

    def _match(self) -> bool:
        """Count one more GET; whether it is to be held (called under the server's lock)."""
        with self._cv:
            if self._released:
                return False
            self._seen += 1
            return self._which(self._seen)

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called."""
        with self._cv:
            return self._released

    @property
    def waiting(self) -> int:
        """Requests waiting at the gate right now."""
        with self._cv:
            return self._waiting

    @property
    def caught(self) -> int:
        """Requests the gate has held so far (released, abandoned or still waiting)."""
        with self._cv:
            return self._caught

    @property
    def abandoned(self) -> int:
        """Held requests whose client went away before the release."""
        with self._cv:
            return self._abandoned

    def release(self) -> None:
        """Let every held request go on, and every later one pass without stopping."""
        with self._cv:
            self._released = True
            self._cv.notify_all()

    def wait_held(self, count: int = 1, timeout: float = 60.0) -> bool:
        """Wait until ``count`` requests wait at the gate at the same time; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._waiting >= count, timeout)

    def wait_empty(self, timeout: float = 60.0) -> bool:
        """Wait until no request waits at the gate (each was released or abandoned).

        After killing a client, this is how a test knows the server has seen its connections
        close, so that a later :meth:`release` cannot send bytes to nobody.
        """
        with self._cv:
            return self._cv.wait_for(lambda: self._waiting == 0, timeout)

    async def _pass(self, request: web.BaseRequest) -> bool:
        """Hold ``request`` here; True once released, False if its client went away."""
        with self._cv:
            self._waiting += 1
            self._caught += 1
            self._cv.notify_all()
        released = False
        try:
            while True:
                with self._cv:
                    released = self._released
                if released or _gone(request):
                    return released and not _gone(request)
                await asyncio.sleep(self._POLL)
        finally:
            with self._cv:
                self._waiting -= 1
                if not released:
                    self._abandoned += 1
                self._cv.notify_all()


def _gone(request: web.BaseRequest) -> bool:
    """Whether the client of ``request`` has closed its connection."""
    return request.transport is None or request.transport.is_closing()


class _RangeBlindFileResponse(web.FileResponse):
    """A file response that answers as if the request had no ``Range``/``If-Range``."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        ignored = ("range", "if-range")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ignored}
        return await super().prepare(request.clone(headers=headers))


class HttpOriginServer(Service):
    """A local HTTP origin serving files from ``root``, in a background thread.

    Args:
        root: The directory to serve; a temporary directory (deleted on :meth:`stop`) if not
            given.
        host: Address to bind (loopback by default).
        port: Port to bind; 0 picks a free one (see :attr:`url`).
        weak_etags: Send every ETag as a weak validator (``W/"..."``), like servers that
            cannot promise byte-identical representations.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        weak_etags: bool = False,
    ) -> None:
        self.weak_etags = weak_etags
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="backorigin-origin-") if root is None else root)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._headers: dict[str, dict[str, str]] = {}
        self._behaviour: dict[str, _Behaviour] = {}
        self._requests: dict[str, list[RecordedRequest]] = {}
        self._bytes: Counter[str] = Counter()
        self._holds: list[tuple[str | None, Hold]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, ending with ``/`` (e.g. ``http://127.0.0.1:41234/``)."""
        if self._url is None:
            raise RuntimeError("the server is not running; call start() first")
        return self._url

    def start(self) -> HttpOriginServer:
        """Start serving; returns ``self`` once the socket is bound."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup())
            except BaseException as exc:  # reported to start() below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                assert self._runner is not None
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="backorigin-http-origin", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise RuntimeError("the HTTP origin server could not start") from failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; removes ``root`` if it was a temporary one."""
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._thread = self._loop = self._runner = None
        self._url = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        app.on_response_prepare.append(self._on_prepare)
        # A stalled handler (see stall()) must not hold up stop() for long.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}/"

    # --- content -----------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, headers: Mapping[str, str] | None = None) -> None:
        """Store ``data`` under ``key`` with extra response ``headers`` (replacing any old ones).

        Raises:
            ValueError: the key cannot be a file path, or a header is one the server computes.
        """
        path = self._path(key)
        if path is None:
            raise ValueError(f"key {key!r} cannot be stored as a file")
        sidecar = dict(headers or {})
        computed = sorted(name for name in sidecar if name.lower() in _SERVER_HEADERS)
        if computed:
            raise ValueError(f"the server computes {', '.join(computed)} itself")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Whole seconds, strictly after the previous version: Last-Modified has one-second
        # granularity and aiohttp compares If-Unmodified-Since against the exact mtime.
        mtime = math.floor(time.time())
        with contextlib.suppress(FileNotFoundError):
            mtime = max(mtime, math.floor(path.stat().st_mtime) + 1)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.utime(temp, ns=(mtime * 10**9, mtime * 10**9))
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._headers[key] = sidecar

    def replace(self, key: str, data: bytes, *, headers: Mapping[str, str] | None = None) -> None:
        """Write a new version of an existing ``key``; keeps its headers unless given new ones.

        Raises:
            KeyError: ``key`` does not exist.
        """
        path = self._path(key)
        if path is None or not path.is_file():
            raise KeyError(key)
        with self._lock:
            old = self._headers.get(key, {})
        self.put(key, data, headers=old if headers is None else headers)

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it does not exist)."""
        path = self._path(key)
        if path is not None:
            path.unlink(missing_ok=True)
        with self._lock:
            self._headers.pop(key, None)

    def _path(self, key: str) -> Path | None:
        if not key or key.endswith("/"):
            return None
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts) or "\x00" in key:
            return None
        return self.root.joinpath(*parts)

    # --- counters ----------------------------------------------------------------------------

    def request_count(self, key: str, method: str | None = None) -> int:
        """How many requests for ``key`` arrived (of ``method``, if given)."""
        with self._lock:
            seen = self._requests.get(key, [])
            return sum(1 for r in seen if method is None or r.method == method.upper())

    def total_requests(self) -> int:
        """How many requests arrived, for any key (or for paths that are not keys)."""
        with self._lock:
            return sum(len(seen) for seen in self._requests.values())

    def requests(self, key: str) -> list[RecordedRequest]:
        """The requests for ``key``, oldest first."""
        with self._lock:
            return list(self._requests.get(key, []))

    def bytes_served(self, key: str) -> int:
        """Body bytes sent for ``key`` by successful GETs (as announced by Content-Length)."""
        with self._lock:
            return self._bytes[key]

    def reset_counters(self) -> None:
        """Forget every recorded request and byte count."""
        with self._lock:
            self._requests.clear()
            self._bytes.clear()

    # --- fault hooks -------------------------------------------------------------------------

    def _hook(self, key: str, **changes: object) -> None:
        with self._lock:
            behaviour = self._behaviour.setdefault(key, _Behaviour())
            for name, value in changes.items():
                setattr(behaviour, name, value)

    def fail(
        self, key: str, *, times: int = 1, status: int = 503, retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` requests for ``key`` with ``status`` (and Retry-After)."""
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        self._hook(key, fail_times=times, fail_status=status, fail_headers=headers)

    def redirect(self, key: str, location: str, *, status: int = 302) -> None:
        """Answer requests for ``key`` with a redirect to ``location`` (sent verbatim)."""
        self._hook(key, redirect_to=location, redirect_status=status)

    def ignore_range(self, key: str) -> None:
        """Serve ``key`` whole with 200, ignoring ``Range`` (like a server without ranges)."""
        self._hook(key, ignore_range=True)

    def drop_after(self, key: str, nbytes: int, *, times: int | None = None) -> None:
        """For GETs of ``key``: announce the full length, send ``nbytes``, then hang up.

        ``Range`` is honoured (206 with ``Content-Range``) and the validators are sent as for
        a healthy response, so clients can resume. ``times`` limits how many GETs are cut
        short (all of them if None).
        """
        self._hook(key, drop_after=nbytes, drop_times=times)

    def stall_after(
        self, key: str, nbytes: int, seconds: float, *, times: int | None = None
    ) -> None:
        """For GETs of ``key``: send ``nbytes`` of the body, go quiet for ``seconds``, then
        send the rest (if the client is still there).

        Like :meth:`drop_after` (ranges honoured, validators sent), but the connection stays
        open: a client with a shorter read timeout gives up mid-body. ``times`` limits how
        many GETs stall (all of them if None).
        """
        self._hook(key, pause_after=nbytes, pause_seconds=seconds, pause_times=times)

    def on_get(self, key: str, callback: Callable[[int], None]) -> None:
        """Call ``callback(n)`` before serving the n-th GET of ``key`` (n counts from 1).

        It runs in a worker thread and may change the object (``replace``) to simulate an
        origin that changes while it is being copied.
        """
        self._hook(key, before_get=callback)

    def hold(
        self,
        key: str | None = None,
        *,
        which: Callable[[int], bool] | None = None,
        after_bytes: int | None = None,
    ) -> Hold:
        """Hold GETs of ``key`` (of every key if None) until the returned gate is released.

        Args:
            key: The key whose GETs are held; None holds GETs of any key.
            which: Called with n for the n-th GET this gate sees (from 1); only the GETs for
                which it returns True are held. All of them if not given.
            after_bytes: Hold after sending this many body bytes (status line, headers and
                validators already sent, ``Range`` honoured, as :meth:`stall_after`); before
                the response if None.

        The gate applies to GETs that would be answered with the object; it is checked after
        the other hooks (:meth:`fail`, :meth:`on_get`, …). :meth:`clear_faults` releases and
        forgets it.
        """
        gate = Hold(which or (lambda n: True), after_bytes)
        with self._lock:
            self._holds.append((key, gate))
        return gate

    def stall(self, key: str, seconds: float) -> None:
        """Wait ``seconds`` before answering requests for ``key``."""
        self._hook(key, stall=seconds)

    def refuse_head(self, key: str, *, status: int = 405) -> None:
        """Answer ``HEAD`` for ``key`` with ``status`` (405 by default), as some servers do."""
        self._hook(key, refuse_head=status)

    def weak_etag(self, key: str) -> None:
        """Send the ETag of ``key`` as a weak validator (``W/"..."``)."""
        self._hook(key, weak_etag=True)

    def hide_headers(self, key: str, *names: str) -> None:
        """Remove these headers (e.g. ``ETag``, ``Last-Modified``) from responses for ``key``."""
        self._hook(key, hidden_headers=frozenset(name.lower() for name in names))

    def require_headers(self, key: str, headers: Mapping[str, str]) -> None:
        """Answer 401 to requests for ``key`` that lack any of these exact header values."""
        self._hook(key, required_headers=dict(headers))

    def clear_faults(self, key: str | None = None) -> None:
        """Remove the fault hooks of ``key`` (of every key if not given)."""
        with self._lock:
            if key is None:
                self._behaviour.clear()
            else:
                self._behaviour.pop(key, None)
            cleared = [gate for held, gate in self._holds if key is None or held == key]
            self._holds = [(held, gate) for held, gate in self._holds if gate not in cleared]
        for gate in cleared:
            gate.release()

    # --- request handling --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            key = unquote(request.rel_url.raw_path[1:], errors="strict")
        except UnicodeDecodeError:
            return web.Response(status=400, text="the path is not UTF-8")
        with self._lock:
            recorded = RecordedRequest(
                request.method,
                MappingProxyType({k.lower(): v for k, v in request.headers.items()}),
            )
            self._requests.setdefault(key, []).append(recorded)
            behaviour = self._behaviour.get(key, _Behaviour())
            dropping = behaviour.drop_after is not None and request.method == "GET"
            if dropping and behaviour.drop_times is not None:
                dropping = behaviour.drop_times > 0
                behaviour.drop_times -= 1 if dropping else 0
            pausing = behaviour.pause_after is not None and request.method == "GET"
            if pausing and behaviour.pause_times is not None:
                pausing = behaviour.pause_times > 0
                behaviour.pause_times -= 1 if pausing else 0
            if request.method == "GET":
                behaviour.gets += 1
            gets = behaviour.gets
            failing = behaviour.fail_times > 0
            if failing:
                behaviour.fail_times -= 1
            sidecar = dict(self._headers.get(key, {}))
        if behaviour.stall:
            await asyncio.sleep(behaviour.stall)
        for name, value in behaviour.required_headers.items():
            if request.headers.get(name) != value:
                return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if failing:
            return web.Response(status=behaviour.fail_status, headers=behaviour.fail_headers)
        if behaviour.redirect_to is not None:
            return web.Response(
                status=behaviour.redirect_status, headers={"Location": behaviour.redirect_to}
            )
        if request.method == "HEAD" and behaviour.refuse_head is not None:
            return web.Response(status=behaviour.refuse_head, headers={"Allow": "GET"})
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        path = self._path(key)
        if path is None or not path.is_file():
            return web.Response(status=404)
        if behaviour.before_get is not None and request.method == "GET":
            callback = behaviour.before_get
            await asyncio.get_running_loop().run_in_executor(None, callback, gets)
            if request.transport is None or request.transport.is_closing():
                # The client went away meanwhile: nothing is sent, so nothing is counted.
                raise ConnectionResetError("client disconnected")
        gate = self._gate(key) if request.method == "GET" else None
        if gate is not None and gate.after_bytes is None and not await gate._pass(request):
            raise ConnectionResetError("client disconnected")  # nothing sent, nothing counted
        if gate is not None and gate.after_bytes is not None:
            return await self._send_and_drop(request, key, path, sidecar, gate.after_bytes, gate)
        if dropping and behaviour.drop_after is not None:
            return await self._send_and_drop(request, key, path, sidecar, behaviour.drop_after)
        if pausing and behaviour.pause_after is not None:
            return await self._send_and_drop(
                request, key, path, sidecar, behaviour.pause_after, behaviour.pause_seconds
            )
        if behaviour.ignore_range:
            return _RangeBlindFileResponse(path, headers=sidecar)
        return web.FileResponse(path, headers=sidecar)

    def _gate(self, key: str) -> Hold | None:
        """The first live gate that holds this GET of ``key``, if any."""
        with self._lock:
            self._holds = [(held, gate) for held, gate in self._holds if not gate.released]
            for held, gate in self._holds:
                if (held is None or held == key) and gate._match():
                    return gate
        return None

    async def _send_and_drop(
        self,
        request: web.Request,
        key: str,
        path: Path,
        headers: dict[str, str],
        nbytes: int,
        pause: float | Hold | None = None,
    ) -> web.StreamResponse:
        """Send ``nbytes`` of the body, then hang up, or (with ``pause``: seconds, or a gate to
        pass) wait and send the rest."""
        data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
        stat = path.stat()
        wanted = request.http_range  # aiohttp parses Range into a slice
        start, stop, _ = wanted.indices(len(data))
        body = data[start:stop]
        response = web.StreamResponse(status=206 if request.headers.get("Range") else 200)
        response.headers.update(headers)
        # The validators a healthy response would carry, so a client can pin and resume.
        response.headers["ETag"] = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        response.last_modified = stat.st_mtime
        if response.status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
            response.headers.popall("Content-MD5", None)
        response.content_length = len(body)
        response.force_close()
        await response.prepare(request)
        with self._lock:
            self._bytes[key] += min(nbytes, len(body))
        await response.write(body[:nbytes])
        if pause is not None:
            if isinstance(pause, Hold):
                passed = await pause._pass(request)
            else:
                await asyncio.sleep(pause)
                passed = not _gone(request)
            if not passed:
                raise ConnectionResetError("client disconnected")  # it gave up: nothing more
            # Counted before they are sent (as a file response is counted when it is
            # prepared): a client that has read them never sees a count short of them.
            with self._lock:
                self._bytes[key] += max(len(body) - nbytes, 0)
            await response.write(body[nbytes:])
            await response.write_eof()
        # Without a pause: ending the response short of the announced bytes and closing the
        # connection is exactly what a server that crashes mid-body looks like to the client.
        return response

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if not isinstance(response, web.FileResponse):
            return
        key = unquote(request.rel_url.raw_path[1:], errors="strict")
        with self._lock:
            behaviour = self._behaviour.get(key, _Behaviour())
            if request.method == "GET" and response.status in (200, 206):
                self._bytes[key] += response.content_length or 0
        headers = response.headers
        if response.status == 206:
            # Content-MD5 is the digest of the message body, which a partial response is not.
            headers.popall("Content-MD5", None)
        weak = behaviour.weak_etag or self.weak_etags
        if weak and "ETag" in headers and not headers["ETag"].startswith("W/"):
            headers["ETag"] = "W/" + headers["ETag"]
        for name in behaviour.hidden_headers:
            headers.popall(name, None)
