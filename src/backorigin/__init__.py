"""backorigin: lazy, verified migration of an object store onto Amazon S3 behind CloudFront."""

from backorigin._version import __version__

__all__ = ["RESERVED_PREFIX", "__version__"]

# Defined here, the one module every other loads first: the edge function's lean path (keys)
# and the CDK construct (types) both read it without loading anything more.
RESERVED_PREFIX = ".backorigin/"
"""Keys under this prefix (below the bucket prefix) belong to the copy engine: its leases and
markers. Viewers cannot ask for them, copies never write there, and the deployment grants the
fetcher its lease rights under it."""
