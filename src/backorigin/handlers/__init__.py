"""Lambda handler factories: the edge function and the fetcher, built from one config.

``make_edge_handler`` is imported eagerly (it loads no SDK); ``make_fetcher_handler`` lazily,
because the fetcher needs boto3 and Powertools, which the edge function must not load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backorigin.handlers.edge import EdgeHandler, make_edge_handler

if TYPE_CHECKING:
    from backorigin.handlers.fetcher import FetcherHandler, make_fetcher_handler

__all__ = ["EdgeHandler", "FetcherHandler", "make_edge_handler", "make_fetcher_handler"]


def __getattr__(name: str) -> Any:
    if name in ("FetcherHandler", "make_fetcher_handler"):
        from backorigin.handlers import fetcher

        return getattr(fetcher, name)
    raise AttributeError(name)
