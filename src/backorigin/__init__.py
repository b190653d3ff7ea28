"""backorigin: lazy, verified migration of an object store onto Amazon S3 behind CloudFront."""

from backorigin._version import __version__

__all__ = ["__version__"]
