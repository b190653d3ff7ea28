"""Configuration: pydantic models, YAML loading and secret references.

>>> from backorigin.config import load_config
>>> config = load_config("backorigin.yaml")  # doctest: +SKIP
"""

from backorigin.config.deploy import Problem, deployability_problems
from backorigin.config.loader import config_json_schema, dump_json_schema, load_config
from backorigin.config.models import (
    BucketConfig,
    Config,
    CopyConfig,
    EdgeConfig,
    RewriteConfig,
    RouteConfig,
    origin_types,
)
from backorigin.config.origins import (
    AzureOrigin,
    GcsOrigin,
    HttpOrigin,
    OriginConfig,
    S3Origin,
    Strict,
    origin_setting,
)
from backorigin.config.secrets import SecretRef, SecretResolver, SecretSource, SecretUnavailable
from backorigin.config.units import ByteSize, Duration, format_size, parse_duration, parse_size

__all__ = [
    "AzureOrigin",
    "BucketConfig",
    "ByteSize",
    "Config",
    "CopyConfig",
    "Duration",
    "EdgeConfig",
    "GcsOrigin",
    "HttpOrigin",
    "OriginConfig",
    "Problem",
    "RewriteConfig",
    "RouteConfig",
    "S3Origin",
    "SecretRef",
    "SecretResolver",
    "SecretSource",
    "SecretUnavailable",
    "Strict",
    "config_json_schema",
    "deployability_problems",
    "dump_json_schema",
    "format_size",
    "load_config",
    "origin_setting",
    "origin_types",
    "parse_duration",
    "parse_size",
]
