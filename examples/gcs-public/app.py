"""CDK app: a public Google Cloud Storage bucket moving onto S3 behind CloudFront.

The classic setup: the GCS bucket is read anonymously, Origin Shield and the copy machinery
run in the stack's region (eu-west-1, next to the new bucket). A daily reconcile copies what
viewers have not asked for yet and refreshes copies whose GCS object changed; once
``backorigin status`` reports the migration complete, ``migrated=True`` cuts over.

    python app.py                          # synthesize into cdk.out without the CDK CLI
    cdk deploy --app "python app.py" --all # deploy (the edge function's stack is in us-east-1)
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_scheduler as scheduler

from backorigin.cdk import BackToOriginConstruct

CONFIG = Path(__file__).resolve().with_name("backorigin.yaml")


def build_app(outdir: str | None = None) -> cdk.App:
    """The CDK app (not synthesized yet)."""
    app = cdk.App(outdir=outdir)
    stack = cdk.Stack(app, "BackoriginGcsPublic", env=cdk.Environment(region="eu-west-1"))
    migration = BackToOriginConstruct(
        stack,
        "Migration",
        config=CONFIG,
        # Once a day, a function in eu-west-1 compares GCS with the bucket and sends copies of
        # missing objects and refreshes of stale ones to the copy queue (orphaned copies are
        # kept unless reconcile_deletes="delete").
        reconcile_schedule=scheduler.ScheduleExpression.rate(cdk.Duration.days(1)),
        # The cut-over: once writes to GCS have stopped and `backorigin status backorigin.yaml`
        # exits 0, replace the schedule above with this line and deploy. The same distribution
        # (same domain name) then serves the bucket alone; the edge function, copy queue,
        # fetcher and reconciler are removed, and the GCS bucket can be switched off.
        # migrated=True,
    )
    cdk.CfnOutput(stack, "DomainName", value=migration.distribution.distribution_domain_name)
    return app


if __name__ == "__main__":
    build_app().synth()
