"""A plain, fast HTTP origin for the copy benchmark: aiohttp's sendfile-backed FileResponse.

Run by ``copy_bench.py`` as its own process (so the origin never competes with the measured
client for a GIL)::

    python benchmarks/origin_server.py ROUTES.json

``ROUTES.json`` maps URL paths (without the leading ``/``) to ``{"file": PATH, "headers":
{...}}``. Range, ETag, Last-Modified and the conditional headers come from
:class:`aiohttp.web.FileResponse`; the extra headers are sent as given, except that
``Content-MD5`` (a digest of the whole body) is dropped from 206 answers. The server binds
127.0.0.1 on a free port, prints ``READY <base url>`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from aiohttp import web


def make_app(routes: dict[str, dict[str, Any]]) -> web.Application:
    """The application serving ``routes``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        route = routes.get(request.match_info["path"])
        if route is None:
            return web.Response(status=404)
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        return web.FileResponse(Path(route["file"]), headers=route.get("headers", {}))

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if response.status == 206:
            response.headers.popall("Content-MD5", None)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    app.on_response_prepare.append(on_prepare)
    return app


async def serve(routes: dict[str, dict[str, Any]]) -> None:
    """Serve until a termination signal arrives."""
    runner = web.AppRunner(make_app(routes), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"READY http://{host}:{port}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("routes", type=Path, help="JSON file: URL path -> file and headers")
    args = parser.parse_args()
    asyncio.run(serve(json.loads(args.routes.read_text())))


if __name__ == "__main__":
    main()
