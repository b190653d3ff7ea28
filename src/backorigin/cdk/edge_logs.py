"""The edge function's log group in the Origin Shield region, with a retention.

Lambda@Edge writes its logs to ``/aws/lambda/us-east-1.<function name>`` in the region where
each invocation ran, creating that log group (without a retention: kept forever) on first use.
With Origin Shield the origin-facing triggers run in the shield region, so that is where
nearly all of its logs, and its EMF metrics, land. A log group belongs to one region, and a
CloudFormation stack deploys to one region, so the group is created by a small stack of the
same app in the shield region (or by the construct's own stack when that is the shield region),
which the construct's stack depends on: the group exists before the distribution can invoke
the function, so Lambda never creates it first. This is how ``EdgeFunction`` itself puts the
function in us-east-1; a custom resource would instead need a Lambda function of its own,
would not be drift-detected and would have to re-implement deletion.
"""

from __future__ import annotations

__all__ = ["edge_log_group", "edge_log_group_name"]

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from constructs import Construct


def edge_log_group_name(function_name: str) -> str:
    """The log group Lambda@Edge writes to outside us-east-1 (and for replicas inside it)."""
    return f"/aws/lambda/us-east-1.{function_name}"


def edge_log_group(
    scope: Construct,
    *,
    function_name: str,
    region: str,
    retention: logs.RetentionDays,
) -> logs.LogGroup:
    """Create the edge function's log group in ``region``.

    Args:
        scope: The construct that owns it (its stack is made to depend on the group's).
        function_name: The edge function's name, known at synth time.
        region: Where the group is created: the Origin Shield region.
        retention: How long its events are kept.

    Returns:
        The log group (in ``scope``'s stack when that is in ``region``, else in a stack of
        the app named after that stack and the region).
    """
    stack = cdk.Stack.of(scope)
    owner: Construct = scope
    if stack.region != region:
        app = stack.node.root
        assert isinstance(app, Construct)
        stack_id = f"{stack.stack_name}-edge-logs-{region}"
        found = app.node.try_find_child(stack_id)
        if isinstance(found, cdk.Stack):
            owner = found
        else:
            account = None if cdk.Token.is_unresolved(stack.account) else stack.account
            owner = cdk.Stack(
                app,
                stack_id,
                env=cdk.Environment(account=account, region=region),
                description=f"backorigin: the edge function's logs in {region}",
            )
        stack.add_stack_dependency(
            owner, f"the edge function's log group in {region} exists before it runs"
        )
    # Scoped by function name: two constructs' groups may share the support stack.
    group_id = "EdgeLogs" if owner is scope else f"EdgeLogs-{function_name}"
    return logs.LogGroup(
        owner,
        group_id,
        log_group_name=edge_log_group_name(function_name),
        retention=retention,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
