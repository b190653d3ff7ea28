"""CDK app: a private Google Cloud Storage bucket moving onto S3 behind CloudFront.

The service account key is a Secrets Manager secret (see backorigin.yaml); the construct lets
only the edge function and the fetcher read it. The GCS bucket is in Belgium (europe-west1),
so Origin Shield sits in Frankfurt, the closest Origin Shield region, while the new bucket,
the copy queue and the fetcher stay in Ireland.

    python app.py                          # synthesize into cdk.out without the CDK CLI
    cdk deploy --app "python app.py" --all # deploy (the edge function's stack is in us-east-1)
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk

from backorigin.cdk import BackToOriginConstruct

CONFIG = Path(__file__).resolve().with_name("backorigin.yaml")


def build_app(outdir: str | None = None) -> cdk.App:
    """The CDK app (not synthesized yet)."""
    app = cdk.App(outdir=outdir)
    stack = cdk.Stack(app, "BackoriginGcsPrivate", env=cdk.Environment(region="eu-west-1"))
    migration = BackToOriginConstruct(
        stack,
        "Migration",
        config=CONFIG,
        origin_shield_region="eu-central-1",
        fetcher_max_concurrency=10,
    )
    cdk.CfnOutput(stack, "DomainName", value=migration.distribution.distribution_domain_name)
    return app


if __name__ == "__main__":
    build_app().synth()
