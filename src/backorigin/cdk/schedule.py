"""The scheduled reconciler: EventBridge Scheduler invokes a Lambda function that reconciles.

The function (handler ``backorigin.prewarm.scheduled.reconciler``, a fetcher bundle that also
carries ``backorigin.prewarm``) runs in the stack's region, beside the bucket and the copy
queue. It lists the bucket and the origins, sends copy and refresh jobs to the copy queue for
the fetchers, and (with ``deletes="delete"``) deletes orphaned copies itself. One schedule per
prefix: each invocation walks one prefix within Lambda's 15 minutes.
"""

from __future__ import annotations

__all__ = ["RECONCILER_HANDLER", "ScheduledReconciler"]

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

RECONCILER_HANDLER = "backorigin.prewarm.scheduled.reconciler"


class ScheduledReconciler(Construct):
    """A reconciler Lambda function and one EventBridge Scheduler schedule per prefix.

    Args:
        scope: The parent construct.
        id: The construct id.
        code: The bundle directory (a fetcher bundle built with ``include=("prewarm",)``).
        schedule: When to run, e.g. ``ScheduleExpression.rate(Duration.days(1))``.
        prefixes: Viewer-key prefixes, one schedule (and invocation) each.
        deletes: ``"keep"`` or ``"delete"`` orphaned copies.
        queue: The copy queue the jobs go to.
        bucket: The bucket (granted by name: it may belong to another stack).
        bucket_prefix: ``config.bucket.prefix``.
        architecture: The function's architecture (the bundle's).
        memory_size: Memory in MiB.
        log_retention: Retention of the function's log group.

    Attributes:
        function: The reconciler function.
        role: Its role (grant what reading the origins needs on it).
        schedules: The schedules, one per prefix.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        code: Path,
        schedule: scheduler.ScheduleExpression,
        prefixes: Sequence[str],
        deletes: Literal["keep", "delete"],
        queue: sqs.IQueue,
        bucket: s3.IBucket,
        bucket_prefix: str,
        architecture: lambda_.Architecture,
        memory_size: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id)
        description = "backorigin reconciler: enqueues copies of missing and stale objects"
        log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        # An explicit role: the managed basic-execution policy would allow writing to every
        # log group in the account.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            code=lambda_.Code.from_asset(str(code)),
            handler=RECONCILER_HANDLER,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=architecture,
            memory_size=memory_size,
            # A walk stops itself a minute before this and reports whether it finished.
            timeout=cdk.Duration.minutes(15),
            # The origins' listings are sorted in bounded memory, spilling runs to /tmp.
            ephemeral_storage_size=cdk.Size.gibibytes(10),
            environment={"BACKORIGIN_QUEUE_URL": queue.queue_url, "BACKORIGIN_DELETES": deletes},
            role=self.role,
            log_group=log_group,
        )
        queue.grant_send_messages(self.role)
        objects = bucket.arn_for_objects(f"{bucket_prefix}*")
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListBucket",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ExamineCopies",  # HEAD of the copies whose provenance decides
                actions=["s3:GetObject"],
                resources=[objects],
            )
        )
        if deletes == "delete":
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="DeleteOrphanedCopies",  # conditional on each copy's ETag
                    actions=["s3:DeleteObject"],
                    resources=[objects],
                )
            )
        # The schedules' own role, inside this construct (the target's default is a role
        # shared by the whole stack): it may invoke this function and nothing else.
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}},
            ),
            description="backorigin: EventBridge Scheduler invokes the reconciler",
        )
        # (role, resource) pairs granted with a wildcard, for the construct to acknowledge.
        self.wildcard_resources: list[tuple[iam.IRole, str, str]] = [
            (
                self.role,
                objects,
                "the reconciler examines (and may delete) copies whose keys are known only at "
                "run time; only the bucket's prefix is granted",
            ),
            (
                self.scheduler_role,
                f"{self.function.function_arn}:*",
                "Lambda's invoke grant covers the function's versions and aliases; the "
                "schedules invoke only this function",
            ),
        ]
        self.schedules: list[scheduler.Schedule] = []
        for index, prefix in enumerate(prefixes):
            self.schedules.append(
                scheduler.Schedule(
                    self,
                    f"Schedule{index}",
                    schedule=schedule,
                    description=f"backorigin: reconcile {prefix or 'every key'!s}"[:512],
                    target=targets.LambdaInvoke(
                        self.function,
                        role=self.scheduler_role,
                        input=scheduler.ScheduleTargetInput.from_object({"prefix": prefix}),
                        # A missed run is not worth repeating: the next one walks again.
                        retry_attempts=0,
                        max_event_age=cdk.Duration.hours(1),
                    ),
                )
            )
