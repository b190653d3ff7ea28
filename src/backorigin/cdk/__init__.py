"""The CDK construct: S3, CloudFront with Origin Shield, Lambda@Edge, SQS and the fetcher.

Needs the ``cdk`` extra (``pip install 'backorigin[cdk]'``)::

    from backorigin.cdk import BackToOriginConstruct

    BackToOriginConstruct(stack, "Migration", config="backorigin.yaml")
"""

from backorigin.cdk.construct import BackToOriginConstruct, ConstructConfigError
from backorigin.cdk.regions import ORIGIN_SHIELD_REGIONS, nearest_origin_shield_region

__all__ = [
    "ORIGIN_SHIELD_REGIONS",
    "BackToOriginConstruct",
    "ConstructConfigError",
    "nearest_origin_shield_region",
]
