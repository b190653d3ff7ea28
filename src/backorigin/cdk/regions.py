"""The AWS regions CloudFront Origin Shield runs in, and the nearest one for the others."""

from __future__ import annotations

__all__ = ["ORIGIN_SHIELD_REGIONS", "nearest_origin_shield_region"]

ORIGIN_SHIELD_REGIONS = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "ap-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "eu-central-1",
        "eu-west-1",
        "eu-west-2",
        "sa-east-1",
    }
)
"""Regions with a CloudFront regional edge cache, where Origin Shield can be placed."""

# The CloudFront Developer Guide's recommendation for origins in regions without Origin Shield
# ("Choosing the AWS Region for Origin Shield"): the shield region with the lowest latency.
_NEAREST = {
    "us-west-1": "us-west-2",
    "af-south-1": "eu-west-1",
    "ap-east-1": "ap-southeast-1",
    "ca-central-1": "us-east-1",
    "eu-south-1": "eu-central-1",
    "eu-west-3": "eu-west-2",
    "eu-north-1": "eu-west-2",
    "me-south-1": "ap-south-1",
}


def nearest_origin_shield_region(region: str) -> str | None:
    """The Origin Shield region to use for an origin in ``region``, if one is known."""
    if region in ORIGIN_SHIELD_REGIONS:
        return region
    return _NEAREST.get(region)
