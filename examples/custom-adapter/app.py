"""CDK app: a third-party origin type (``type: directory``) deployed by the same construct.

Install the adapter package next to backorigin first (``pip install ./examples/custom-adapter``):
its entry point makes ``type: directory`` valid, and the construct bundles the package into
both Lambda functions, with what the adapter declares for each: PyJWT for the edge function,
which signs CloudFront's requests to the web server at ``public_url``, and
``elasticfilesystem:ClientMount`` on ``file_system_arn`` for the fetcher, which reads the
files from ``root``. In a real deployment that directory must be reachable from the fetcher
(the EFS file system mounted at ``root``; attaching it is the app's part).

    python app.py                          # synthesize into cdk.out without the CDK CLI
    cdk deploy --app "python app.py" --all # deploy (the edge function's stack is in us-east-1)
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk

from backorigin.cdk import BackToOriginConstruct

CONFIG = Path(__file__).resolve().with_name("directory-origin.yaml")


def build_app(outdir: str | None = None) -> cdk.App:
    """The CDK app (not synthesized yet)."""
    app = cdk.App(outdir=outdir)
    stack = cdk.Stack(app, "BackoriginDirectory", env=cdk.Environment(region="eu-west-1"))
    migration = BackToOriginConstruct(stack, "Migration", config=CONFIG)
    cdk.CfnOutput(stack, "DomainName", value=migration.distribution.distribution_domain_name)
    return app


if __name__ == "__main__":
    build_app().synth()
