"""CDK app: two legacy stores (GCS and a web server) behind one CloudFront URL.

The origin group's fallback is the first route's origin (GCS); the edge function re-points
each request to the origin its route names, so one origin group serves both stores. Copy
alarms notify an SNS topic.

    python app.py                          # synthesize into cdk.out without the CDK CLI
    cdk deploy --app "python app.py" --all # deploy (the edge function's stack is in us-east-1)
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns

from backorigin.cdk import BackToOriginConstruct

CONFIG = Path(__file__).resolve().with_name("backorigin.yaml")


def build_app(outdir: str | None = None) -> cdk.App:
    """The CDK app (not synthesized yet)."""
    app = cdk.App(outdir=outdir)
    stack = cdk.Stack(app, "BackoriginHttpMultiOrigin", env=cdk.Environment(region="eu-west-1"))
    alarms = sns.Topic(stack, "Alarms", enforce_ssl=True)
    migration = BackToOriginConstruct(
        stack,
        "Migration",
        config=CONFIG,
        alarm_actions=[cloudwatch_actions.SnsAction(alarms)],
    )
    cdk.CfnOutput(stack, "DomainName", value=migration.distribution.distribution_domain_name)
    return app


if __name__ == "__main__":
    build_app().synth()
