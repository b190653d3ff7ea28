"""CDK app: an Azure Blob container, read with a SAS token, moving onto S3 behind CloudFront.

The stack is in us-east-1, where Lambda@Edge functions live, so the edge function is part of
this stack (in any other region the construct adds a small us-east-1 stack for it).

    python app.py                          # synthesize into cdk.out without the CDK CLI
    cdk deploy --app "python app.py" --all
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk

from backorigin.cdk import BackToOriginConstruct

CONFIG = Path(__file__).resolve().with_name("backorigin.yaml")


def build_app(outdir: str | None = None) -> cdk.App:
    """The CDK app (not synthesized yet)."""
    app = cdk.App(outdir=outdir)
    stack = cdk.Stack(app, "BackoriginAzureSas", env=cdk.Environment(region="us-east-1"))
    migration = BackToOriginConstruct(stack, "Migration", config=CONFIG)
    cdk.CfnOutput(stack, "DomainName", value=migration.distribution.distribution_domain_name)
    return app


if __name__ == "__main__":
    build_app().synth()
