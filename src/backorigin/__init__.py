"""backorigin: lazy, verified migration of an object store onto Amazon S3 behind CloudFront."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("backorigin")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
