"""The construct over a migration's life: scheduled reconcile, metrics, logs, cut-over.

``scheduled`` is a migration in progress with every lifecycle prop; ``migrated`` is the same
stack after the cut-over (``migrated=True``). Both come from the session's one synthesis.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_scheduler as scheduler
from aws_cdk.assertions import Match
from cdk_support import (
    LIFECYCLE_STACK,
    SCHEDULED_CONFIG,
    Synthesized,
    flat,
    function,
    grants,
    one,
    resources,
    role_statements,
)

from backorigin.cdk import BackToOriginConstruct, ConstructConfigError
from backorigin.config import load_config

RECONCILER_HANDLER = "backorigin.prewarm.scheduled.reconciler"
FETCHER_HANDLER = "backorigin.handlers.lambda_entry.fetcher"
EDGE_HANDLER = "backorigin.handlers.lambda_entry.edge"
SHIELD = "eu-central-1"
BUCKET = "${MigrationBucketDC29F5B3.Arn}"


def logical_id(app: Synthesized, kind: str) -> str:
    (found,) = resources(app.template_json(), kind)
    return found


def dashboard_body(app: Synthesized) -> dict[str, Any]:
    body = flat(
        one(app.template_json(), "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    )
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def dashboard_metrics(app: Synthesized) -> list[list[Any]]:
    return [
        metric
        for widget in dashboard_body(app)["widgets"]
        for metric in widget["properties"].get("metrics", [])
    ]


# --- scheduled reconcile -----------------------------------------------------------------------


def test_one_schedule_per_prefix_invokes_the_reconciler(scheduled: Synthesized) -> None:
    template = scheduled.template_json()
    reconciler = next(
        name
        for name, f in resources(template, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == RECONCILER_HANDLER
    )
    schedules = resources(template, "AWS::Scheduler::Schedule").values()
    assert sorted(json.loads(s["Properties"]["Target"]["Input"])["prefix"] for s in schedules) == [
        "images/",
        "video/",
    ]
    for schedule in schedules:
        props = schedule["Properties"]
        assert props["ScheduleExpression"] == "rate(1 day)"
        assert props["Target"]["Arn"] == {"Fn::GetAtt": [reconciler, "Arn"]}
        assert props["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0


def test_the_reconciler_runs_15_minutes_with_the_queue_and_the_delete_policy(
    scheduled: Synthesized,
) -> None:
    scheduled.template().has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": RECONCILER_HANDLER,
            "Timeout": 900,
            "EphemeralStorage": {"Size": 10240},
            "Environment": {
                "Variables": {
                    "BACKORIGIN_QUEUE_URL": {"Ref": logical_id_of_copy_queue(scheduled)},
                    "BACKORIGIN_DELETES": "delete",
                }
            },
        },
    )


def logical_id_of_copy_queue(app: Synthesized) -> str:
    (name,) = (
        name
        for name, queue in resources(app.template_json(), "AWS::SQS::Queue").items()
        if "QueueName" in queue["Properties"]
    )
    return name


def test_the_reconciler_may_list_and_examine_send_and_delete_copies_only(
    scheduled: Synthesized,
) -> None:
    pairs = grants(role_statements(scheduled.template_json(), RECONCILER_HANDLER))
    queue = f"${{{logical_id_of_copy_queue(scheduled)}.Arn}}"
    assert {
        ("s3:ListBucket", BUCKET),
        ("s3:GetObject", f"{BUCKET}/site/*"),
        ("s3:DeleteObject", f"{BUCKET}/site/*"),
        ("sqs:SendMessage", queue),
    } <= pairs
    assert not {action for action, _ in pairs if action.startswith("s3:Put")}


def test_the_reconciler_reads_the_origins_as_the_fetcher_does(scheduled: Synthesized) -> None:
    template = scheduled.template_json()
    reconciler = grants(role_statements(template, RECONCILER_HANDLER))
    fetcher = grants(role_statements(template, FETCHER_HANDLER))
    archive = "arn:${AWS::Partition}:s3:::media-archive-old"
    origin_grants = {("s3:ListBucket", archive), ("s3:GetObject", f"{archive}/old/*")}
    assert origin_grants <= fetcher
    assert origin_grants <= reconciler


def test_the_reconciler_bundle_carries_prewarm_and_the_baked_config(
    scheduled: Synthesized,
) -> None:
    asset = scheduled.asset_of(RECONCILER_HANDLER)
    assert (asset / "backorigin" / "prewarm" / "scheduled.py").is_file()
    baked = json.loads((asset / "backorigin" / "_baked" / "config.json").read_text())
    assert baked["bucket"]["name"] == "media-scheduled"
    # The fetcher's bundle stays without it.
    assert not (scheduled.asset_of(FETCHER_HANDLER) / "backorigin" / "prewarm").exists()


def test_the_schedules_role_may_invoke_only_the_reconciler(scheduled: Synthesized) -> None:
    template = scheduled.template_json()
    (role_id,) = {
        s["Properties"]["Target"]["RoleArn"]["Fn::GetAtt"][0]
        for s in resources(template, "AWS::Scheduler::Schedule").values()
    }
    trust = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert "aws:SourceAccount" in statement["Condition"]["StringEquals"]
    statements = [
        s
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert {a for a, _ in grants(statements)} == {"lambda:InvokeFunction"}


# --- bulk fan-out --------------------------------------------------------------------------------


def test_queue_retention_and_fetcher_fan_out_are_props(scheduled: Synthesized) -> None:
    template = scheduled.template()
    template.has_resource_properties(
        "AWS::SQS::Queue", {"QueueName": Match.any_value(), "MessageRetentionPeriod": 14 * 86400}
    )
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {"BatchSize": 10, "ScalingConfig": {"MaximumConcurrency": 100}},
    )


def test_the_queue_keeps_jobs_four_days_by_default(classic: Synthesized) -> None:
    classic.template().has_resource_properties(
        "AWS::SQS::Queue", {"QueueName": Match.any_value(), "MessageRetentionPeriod": 4 * 86400}
    )


# --- the edge function's logs --------------------------------------------------------------------


def test_the_edge_log_group_is_created_in_the_shield_region_with_a_retention(
    scheduled: Synthesized,
) -> None:
    name = f"{LIFECYCLE_STACK}-edge-logs-{SHIELD}"
    artifact = scheduled.assembly.get_stack_by_name(name)
    assert artifact.environment.region == SHIELD
    group = one(dict(artifact.template), "AWS::Logs::LogGroup")["Properties"]
    edge = function(scheduled.template_json(scheduled.edge_stack_name), EDGE_HANDLER)
    assert group["LogGroupName"] == f"/aws/lambda/us-east-1.{edge['Properties']['FunctionName']}"
    assert group["RetentionInDays"] == 30  # log_retention, as the fetcher's
    # Created before the distribution can invoke the function (Lambda would create it first).
    assert name in [
        d.id for d in scheduled.assembly.get_stack_by_name(LIFECYCLE_STACK).dependencies
    ]


def test_the_edge_log_group_is_in_the_stack_when_it_is_the_shield_region(
    classic: Synthesized,
) -> None:
    edge = function(classic.template_json(classic.edge_stack_name), EDGE_HANDLER)
    classic.template().has_resource_properties(
        "AWS::Logs::LogGroup",
        {"LogGroupName": f"/aws/lambda/us-east-1.{edge['Properties']['FunctionName']}"},
    )


# --- the dashboard -------------------------------------------------------------------------------


def test_the_dashboard_is_named_and_exposed(scheduled: Synthesized) -> None:
    assert scheduled.construct.dashboard is not None
    scheduled.template().has_resource_properties(
        "AWS::CloudWatch::Dashboard", {"DashboardName": "media-migration"}
    )


def test_the_dashboard_shares_cloudfront_requests_with_the_edge_in_their_regions(
    scheduled: Synthesized,
) -> None:
    metrics = dashboard_metrics(scheduled)
    distribution = logical_id(scheduled, "AWS::CloudFront::Distribution")
    requests = next(m for m in metrics if m[:2] == ["AWS/CloudFront", "Requests"])
    assert requests[2:6] == ["DistributionId", f"${{{distribution}}}", "Region", "Global"]
    assert requests[-1]["region"] == "us-east-1"
    served = next(m for m in metrics if m[:2] == ["backorigin", "ServedFromOrigin"])
    assert served[2:4] == ["service", "backorigin-edge"]
    assert served[-1]["region"] == SHIELD
    expressions = [m[0]["expression"] for m in metrics if "expression" in m[0]]
    ids = {requests[-1]["id"], served[-1]["id"]}
    assert any(all(i in e for i in ids) for e in expressions)


def test_the_dashboard_shows_copies_bytes_queues_and_the_fetcher(scheduled: Synthesized) -> None:
    metrics = dashboard_metrics(scheduled)
    named = {(m[0], m[1]) for m in metrics if isinstance(m[0], str)}
    assert {
        ("backorigin", "CopiesCopied"),
        ("backorigin", "CopiesFailed"),
        ("backorigin", "BytesCopied"),
        ("backorigin", "CopiesEnqueued"),
        ("backorigin", "EnqueueFailures"),
        ("backorigin", "RefusedKeys"),
        ("backorigin", "ReconcileUnfinished"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Duration"),
    } <= named
    fetcher = next(m for m in metrics if m[:2] == ["backorigin", "CopiesCopied"])
    assert fetcher[2:4] == ["service", "backorigin-fetcher"]  # as Powertools names it
    queues = [m for m in metrics if m[:2] == ["AWS/SQS", "ApproximateNumberOfMessagesVisible"]]
    assert len(queues) == 2  # the copy queue and the dead-letter queue
    errors = [m for m in metrics if m[:2] == ["AWS/Lambda", "Errors"]]
    assert len(errors) == 2  # the fetcher's and the reconciler's


# --- cut-over ------------------------------------------------------------------------------------


def test_the_cut_over_keeps_the_distribution(scheduled: Synthesized, migrated: Synthesized) -> None:
    assert logical_id(migrated, "AWS::CloudFront::Distribution") == logical_id(
        scheduled, "AWS::CloudFront::Distribution"
    )


def test_after_the_cut_over_the_bucket_is_the_only_origin(migrated: Synthesized) -> None:
    config = one(migrated.template_json(), "AWS::CloudFront::Distribution")["Properties"][
        "DistributionConfig"
    ]
    (origin,) = config["Origins"]
    assert "OriginAccessControlId" in origin
    assert "S3OriginConfig" in origin
    assert "OriginGroups" not in config
    behavior = config["DefaultCacheBehavior"]
    assert behavior["TargetOriginId"] == origin["Id"]
    assert "LambdaFunctionAssociations" not in behavior


def test_after_the_cut_over_nothing_copies(migrated: Synthesized) -> None:
    template = migrated.template_json()
    for kind in (
        "AWS::Lambda::Function",
        "AWS::SQS::Queue",
        "AWS::Scheduler::Schedule",
        "AWS::Lambda::EventSourceMapping",
        "AWS::CloudWatch::Alarm",
    ):
        assert resources(template, kind) == {}, kind
    assert [s.stack_name for s in migrated.assembly.stacks] == [LIFECYCLE_STACK]
    construct = migrated.construct
    assert (construct.queue, construct.fetcher, construct.edge_function) == (None, None, None)


def test_after_the_cut_over_cloudfront_still_reads_the_bucket(migrated: Synthesized) -> None:
    policy = one(migrated.template_json(), "AWS::S3::BucketPolicy")["Properties"]
    sids = {s.get("Sid") for s in policy["PolicyDocument"]["Statement"]}
    assert {"CloudFrontReadsObjects", "CloudFrontListsBucket"} <= sids


def test_the_same_origin_id_serves_before_and_after(
    scheduled: Synthesized, migrated: Synthesized
) -> None:
    def bucket_origin(app: Synthesized) -> str:
        config = one(app.template_json(), "AWS::CloudFront::Distribution")["Properties"]
        origins = config["DistributionConfig"]["Origins"]
        (found,) = (o["Id"] for o in origins if "S3OriginConfig" in o)
        return str(found)

    assert bucket_origin(scheduled) == bucket_origin(migrated)


# --- props checked before anything is built ------------------------------------------------------


def construct(**props: Any) -> None:
    app = cdk.App()
    stack = cdk.Stack(
        app, "Checks", env=cdk.Environment(account="123456789012", region="eu-west-1")
    )
    BackToOriginConstruct(stack, "Migration", config=load_config(SCHEDULED_CONFIG), **props)


DAILY = scheduler.ScheduleExpression.rate(cdk.Duration.days(1))


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"reconcile_prefixes": ["a/"]}, "require reconcile_schedule"),
        ({"reconcile_deletes": "delete"}, "require reconcile_schedule"),
        ({"reconcile_schedule": DAILY, "reconcile_deletes": "all"}, "reconcile_deletes"),
        ({"reconcile_schedule": DAILY, "reconcile_prefixes": "images/"}, "not one string"),
        ({"reconcile_schedule": DAILY, "reconcile_prefixes": ["a/", "a/"]}, "each once"),
        ({"reconcile_schedule": DAILY, "migrated": True}, "mutually exclusive"),
        ({"queue_retention": cdk.Duration.days(15)}, "queue_retention"),
    ],
)
def test_lifecycle_props_are_checked(props: dict[str, Any], message: str) -> None:
    with pytest.raises(ConstructConfigError, match=message):
        construct(**props)
