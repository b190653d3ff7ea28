"""CDK app: a public Google Cloud Storage bucket moving onto S3 behind CloudFront.

The classic setup: the GCS bucket is read anonymously, Origin Shield and the copy machinery
run in the stack's region (eu-west-1, next to the new bucket).

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
    stack = cdk.Stack(app, "BackoriginGcsPublic", env=cdk.Environment(region="eu-west-1"))
    migration = BackToOriginConstruct(stack, "Migration", config=CONFIG)
    cdk.CfnOutput(stack, "DomainName", value=migration.distribution.distribution_domain_name)
    return app


if __name__ == "__main__":
    build_app().synth()
