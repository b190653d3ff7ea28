"""Lambda handler factories: the edge function and the fetcher, built from one config.

Everything is imported on first use: the bundle's entry point lives in this package, and a
request to the S3 primary must not pay for the handlers it does not run (the fetcher needs
boto3 and Powertools, which the edge function must not load at all).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at a cold start
if TYPE_CHECKING:
    from backorigin.handlers.edge import EdgeHandler, make_edge_handler
    from backorigin.handlers.fetcher import FetcherHandler, make_fetcher_handler

__all__ = ["EdgeHandler", "FetcherHandler", "make_edge_handler", "make_fetcher_handler"]

_HOMES = {
    "EdgeHandler": "edge",
    "make_edge_handler": "edge",
    "FetcherHandler": "fetcher",
    "make_fetcher_handler": "fetcher",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"backorigin.handlers.{home}"), name)
