"""Local mode: the same handlers behind a local CloudFront stand-in (extra ``local``)."""

from backorigin.local.queue import LocalQueue
from backorigin.local.server import LocalCloudFront

__all__ = ["LocalCloudFront", "LocalQueue"]
