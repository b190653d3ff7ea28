"""Local mode: the same handlers behind a local CloudFront stand-in (extra ``local``).

:mod:`backorigin.local.cloudfront` (what CloudFront does around an edge function) needs only
the standard library; the server and the queue are imported on first use, so importing that
module loads neither aiohttp nor an AWS SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backorigin.local.cloudfront import add_origin_request_headers

if TYPE_CHECKING:
    from backorigin.local.queue import LocalQueue
    from backorigin.local.server import LocalCloudFront

__all__ = ["LocalCloudFront", "LocalQueue", "add_origin_request_headers"]


def __getattr__(name: str) -> Any:
    if name == "LocalCloudFront":
        from backorigin.local.server import LocalCloudFront

        return LocalCloudFront
    if name == "LocalQueue":
        from backorigin.local.queue import LocalQueue

        return LocalQueue
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
