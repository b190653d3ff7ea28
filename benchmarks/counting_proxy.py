"""A counting reverse proxy: how many requests of each kind a client sends to a server.

Used by ``prewarm_bench.py`` in a separate, untimed pass (a Python proxy on the request path
would distort the timings): each tool copies a sample of the objects through two of these,
one in front of the origin and one in front of SeaweedFS, and the counts per kind are divided
by the number of objects. The ``Host`` header is forwarded unchanged, so SigV4 signatures made
for the proxy's address still verify at the server.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def s3_kind(method: str, path: str, query: str) -> str:
    """The S3 operation a request is (close enough to count it)."""
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    lease = "/.backorigin/" in path
    if method == "GET" and "list-type" in params:
        return "ListObjectsV2"
    if method == "GET" and "uploadId" in params:
        return "ListParts"
    if method == "GET" and "uploads" in params:
        return "ListMultipartUploads"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT" and "partNumber" in params:
        return "UploadPart"
    if method == "PUT":
        return "PutObject (lease)" if lease else "PutObject"
    if method == "POST" and "uploads" in params:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in params:
        return "CompleteMultipartUpload"
    if method == "DELETE":
        return "DeleteObject (lease)" if lease else "DeleteObject"
    return "GetObject (lease)" if lease else f"{method} object"


def http_kind(method: str, path: str, query: str) -> str:
    """An origin request: its method."""
    return method


class CountingProxy:
    """Forwards every request to ``target`` (``http://host:port``) and counts it by kind.

    Args:
        target: The server's base URL.
        kind: Names a request from its method, path and query.
    """

    def __init__(self, target: str, kind: type[str] | object = http_kind) -> None:
        parsed = urllib.parse.urlsplit(target)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._kind = kind
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                path, _, query = self.path.partition("?")
                with proxy._lock:
                    proxy.counts[proxy._kind(self.command, path, query)] += 1  # type: ignore[operator]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream = http.client.HTTPConnection(proxy.host, proxy.port, timeout=120)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response_only(response.status, response.reason)
                    head = self.command == "HEAD"
                    for name, value in response.getheaders():
                        lower = name.lower()
                        if lower not in _HOP and (head or lower != "content-length"):
                            self.send_header(name, value)
                    if not head:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 - http.server names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def take(self) -> Counter[str]:
        """The counts so far, reset to zero."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
