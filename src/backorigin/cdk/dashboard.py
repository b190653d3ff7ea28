"""The migration's CloudWatch dashboard: how much is still served from the old store, and why.

The metrics live in three regions, and one dashboard shows them all (CloudWatch displays
metrics of several regions of one account in one graph; each metric names its region):

* CloudFront's ``Requests`` are in us-east-1, with the dimension ``Region=Global``;
* the edge function's EMF metrics (``ServedFromOrigin``, ``CopiesEnqueued``,
  ``EnqueueFailures``, ``RefusedKeys``; service ``backorigin-edge``) are in the region it runs
  in for origin requests, the Origin Shield region;
* the fetcher's EMF metrics (``CopiesCopied``, ``CopiesExists``, ..., ``BytesCopied``; service
  ``backorigin-fetcher``), the reconciler's, the queues' and the fetcher's own Lambda metrics
  are in the stack's region.
"""

from __future__ import annotations

__all__ = ["EDGE_SERVICE", "FETCHER_OUTCOMES", "FETCHER_SERVICE", "NAMESPACE", "MigrationDashboard"]

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

NAMESPACE = "backorigin"
EDGE_SERVICE = "backorigin-edge"
FETCHER_SERVICE = "backorigin-fetcher"
RECONCILER_SERVICE = "backorigin-reconciler"
# The fetcher names a metric per copy outcome: "Copies" + the outcome in title case.
FETCHER_OUTCOMES = (
    "CopiesCopied",
    "CopiesExists",
    "CopiesInProgress",
    "CopiesNotFound",
    "CopiesTooLarge",
    "CopiesFailed",
)
_PERIOD = cdk.Duration.minutes(5)
_WIDTH = 12
_HEIGHT = 6


@dataclass(frozen=True)
class MigrationParts:
    """What the dashboard shows; ``None`` for what the construct did not create.

    Attributes:
        distribution: The CloudFront distribution.
        shield_region: Where the edge function runs for origin requests (its metrics' region).
        queue: The copy queue.
        dead_letter_queue: Its dead-letter queue.
        fetcher: The fetcher function.
        reconciler: The scheduled reconciler's function.
    """

    distribution: cloudfront.IDistribution
    shield_region: str
    queue: sqs.IQueue | None = None
    dead_letter_queue: sqs.IQueue | None = None
    fetcher: lambda_.IFunction | None = None
    reconciler: lambda_.IFunction | None = None


def _metric(
    name: str, service: str, *, region: str | None = None, label: str = ""
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        statistic="Sum",
        period=_PERIOD,
        region=region,
        label=label or name,
    )


class MigrationDashboard(Construct):
    """A CloudWatch dashboard of one migration.

    Widgets: the share of requests served from the old store over time; requests by where
    they were served from; copies by outcome; bytes migrated; the copy queue's and the
    dead-letter queue's depth and oldest message; the fetcher's errors, throttles and
    duration; and, with a scheduled reconciler, what each run found and the share migrated.
    Widgets of parts that do not exist (after the cut-over: no edge function, queue or
    fetcher) are left out.

    Attributes:
        dashboard: The ``cloudwatch.Dashboard``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        parts: MigrationParts,
        dashboard_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name,
            default_interval=cdk.Duration.days(7),
        )
        requests = cloudwatch.Metric(
            namespace="AWS/CloudFront",
            metric_name="Requests",
            dimensions_map={
                "DistributionId": parts.distribution.distribution_id,
                "Region": "Global",
            },
            statistic="Sum",
            period=_PERIOD,
            region="us-east-1",  # CloudFront publishes its metrics there only
            label="Requests (CloudFront)",
        )
        rows: list[list[cloudwatch.IWidget]] = []
        if parts.fetcher is not None:
            served = _metric(
                "ServedFromOrigin",
                EDGE_SERVICE,
                region=parts.shield_region,
                label="Served from the old store",
            )
            share = cloudwatch.MathExpression(
                expression="100 * FILL(served, 0) / requests",
                using_metrics={"served": served, "requests": requests},
                label="% of requests served from the old store",
                period=_PERIOD,
            )
            rows.append(
                [
                    cloudwatch.GraphWidget(
                        title="Share of requests served from the old store (%)",
                        left=[share],
                        left_y_axis=cloudwatch.YAxisProps(min=0, max=100, show_units=False),
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                    cloudwatch.GraphWidget(
                        title="Requests, and those served from the old store",
                        left=[requests, served],
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                ]
            )
            edge = [
                _metric(name, EDGE_SERVICE, region=parts.shield_region)
                for name in ("CopiesEnqueued", "EnqueueFailures", "RefusedKeys")
            ]
            copies = [_metric(name, FETCHER_SERVICE) for name in FETCHER_OUTCOMES]
            rows.append(
                [
                    cloudwatch.GraphWidget(
                        title="Copies by outcome (fetcher)",
                        left=copies,
                        stacked=True,
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                    cloudwatch.GraphWidget(
                        title=f"Edge function ({parts.shield_region}): jobs and refusals",
                        left=edge,
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                ]
            )
            bytes_copied = _metric("BytesCopied", FETCHER_SERVICE, label="Bytes migrated")
            rows.append(
                [
                    cloudwatch.GraphWidget(
                        title="Bytes migrated",
                        left=[bytes_copied],
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                    cloudwatch.SingleValueWidget(
                        title="Bytes migrated (period shown)",
                        metrics=[bytes_copied],
                        set_period_to_time_range=True,
                        full_precision=False,
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                ]
            )
        else:
            rows.append(
                [
                    cloudwatch.GraphWidget(
                        title="Requests (CloudFront)",
                        left=[requests],
                        width=2 * _WIDTH,
                        height=_HEIGHT,
                    )
                ]
            )
        if parts.queue is not None and parts.dead_letter_queue is not None:
            depth = [
                parts.queue.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=_PERIOD, label="Copy queue: waiting"
                ),
                parts.queue.metric_approximate_number_of_messages_not_visible(
                    statistic="Maximum", period=_PERIOD, label="Copy queue: in flight"
                ),
                parts.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=_PERIOD, label="Dead-letter queue"
                ),
            ]
            oldest = parts.queue.metric_approximate_age_of_oldest_message(
                statistic="Maximum", period=_PERIOD, label="Oldest copy job (s)"
            )
            rows.append(
                [
                    cloudwatch.GraphWidget(
                        title="Queue and dead-letter depth",
                        left=depth,
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                    cloudwatch.GraphWidget(
                        title="Age of the oldest copy job",
                        left=[oldest],
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                ]
            )
        if parts.fetcher is not None:
            fetcher = parts.fetcher
            rows.append(
                [
                    cloudwatch.GraphWidget(
                        title="Fetcher errors and throttles",
                        left=[
                            fetcher.metric_errors(statistic="Sum", period=_PERIOD),
                            fetcher.metric_throttles(statistic="Sum", period=_PERIOD),
                        ],
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                    cloudwatch.GraphWidget(
                        title="Fetcher duration",
                        left=[
                            fetcher.metric_duration(statistic="p50", period=_PERIOD),
                            fetcher.metric_duration(statistic="p99", period=_PERIOD),
                            fetcher.metric_duration(statistic="Maximum", period=_PERIOD),
                        ],
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                ]
            )
        if parts.reconciler is not None:
            found = [
                _metric(name, RECONCILER_SERVICE)
                for name in (
                    "ReconcileMissing",
                    "ReconcileStale",
                    "ReconcileOrphaned",
                    "ReconcileJobsEnqueued",
                    "ReconcileFailures",
                    "ReconcileUnfinished",
                )
            ]
            # A walk that cannot list its prefix before the timeout never reports: it ends
            # as a Lambda error.
            found.append(
                parts.reconciler.metric_errors(
                    statistic="Sum", period=_PERIOD, label="Reconciler errors and timeouts"
                )
            )
            share_migrated = cloudwatch.Metric(
                namespace=NAMESPACE,
                metric_name="ShareMigrated",
                dimensions_map={"service": RECONCILER_SERVICE},
                statistic="Minimum",
                period=cdk.Duration.hours(1),
                label="Share migrated (last reconcile)",
            )
            rows.append(
                [
                    cloudwatch.GraphWidget(
                        title="Scheduled reconcile: what each run found and did",
                        left=found,
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                    cloudwatch.GraphWidget(
                        title="Share of the old store's objects migrated",
                        left=[share_migrated],
                        left_y_axis=cloudwatch.YAxisProps(min=0, max=1, show_units=False),
                        width=_WIDTH,
                        height=_HEIGHT,
                    ),
                ]
            )
        for row in rows:
            self.dashboard.add_widgets(*row)
