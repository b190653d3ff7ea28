"""What the construct creates, one behaviour per test, read from the synthesized templates."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match
from cdk_support import (
    EDGE_HANDLER,
    FETCHER_HANDLER,
    Synthesized,
    flat,
    function,
    grants,
    one,
    resources,
    role_statements,
)

from backorigin.cdk import ORIGIN_SHIELD_REGIONS


def distribution_config(app: Synthesized) -> dict[str, Any]:
    config: dict[str, Any] = one(app.template_json(), "AWS::CloudFront::Distribution")[
        "Properties"
    ]["DistributionConfig"]
    return config


# --- the bucket -----------------------------------------------------------------------------------


def test_bucket_blocks_all_public_access(classic: Synthesized) -> None:
    classic.template().has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            }
        },
    )


def test_bucket_enforces_ssl(classic: Synthesized) -> None:
    classic.template().has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_bucket_is_encrypted(classic: Synthesized) -> None:
    classic.template().has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            }
        },
    )


def test_bucket_owner_enforces_object_ownership(classic: Synthesized) -> None:
    classic.template().has_resource_properties(
        "AWS::S3::Bucket",
        {"OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}},
    )


def test_bucket_aborts_incomplete_multipart_uploads(classic: Synthesized) -> None:
    classic.template().has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                                "Status": "Enabled",
                            }
                        )
                    ]
                )
            }
        },
    )


def test_bucket_is_retained_by_default(classic: Synthesized) -> None:
    classic.template().has_resource(
        "AWS::S3::Bucket", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
    )


def test_removal_policy_prop_reaches_the_bucket(full: Synthesized) -> None:
    full.template().has_resource("AWS::S3::Bucket", {"DeletionPolicy": "Delete"})


def test_bucket_takes_the_configs_name(classic: Synthesized) -> None:
    classic.template().has_resource_properties("AWS::S3::Bucket", {"BucketName": "media-new"})


def test_bucket_name_is_generated_when_the_config_has_none(full: Synthesized) -> None:
    name = one(full.template_json(), "AWS::S3::Bucket")["Properties"]["BucketName"]
    assert name.startswith("backorigin-")
    assert name.endswith("-123456789012-eu-west-3")
    assert full.construct.config.bucket.name == name  # baked into the functions


def test_viewers_cannot_read_copy_leases(full: Synthesized) -> None:
    policy = one(full.template_json(), "AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"]
    denied = [
        flat(s["Resource"])
        for s in policy["Statement"]
        if s["Effect"] == "Deny" and s.get("Principal") == {"Service": "cloudfront.amazonaws.com"}
    ]
    bucket = next(iter(resources(full.template_json(), "AWS::S3::Bucket")))
    assert denied == [f"${{{bucket}.Arn}}/media/.backorigin/*"]


def test_cloudfront_may_list_the_bucket_so_misses_are_404(classic: Synthesized) -> None:
    template = classic.template_json()
    policy = one(template, "AWS::S3::BucketPolicy")["Properties"]
    allowed = {
        (s["Action"], flat(s["Resource"]), flat(s["Condition"]["StringEquals"]["AWS:SourceArn"]))
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    }
    bucket = next(iter(resources(template, "AWS::S3::Bucket")))
    distribution = next(iter(resources(template, "AWS::CloudFront::Distribution")))
    this_distribution = (
        f"arn:${{AWS::Partition}}:cloudfront::${{AWS::AccountId}}:distribution/${{{distribution}}}"
    )
    assert allowed == {
        ("s3:GetObject", f"${{{bucket}.Arn}}/*", this_distribution),
        ("s3:ListBucket", f"${{{bucket}.Arn}}", this_distribution),
    }


def test_bucket_listing_is_never_served_for_the_root(classic: Synthesized) -> None:
    assert distribution_config(classic)["DefaultRootObject"] == "index.html"


def test_an_existing_bucket_is_used_not_created(adopted: Synthesized) -> None:
    adopted.template().resource_count_is("AWS::S3::Bucket", 0)
    assert adopted.construct.config.bucket.name == "media-adopted"
    baked = adopted.asset_of(FETCHER_HANDLER) / "backorigin" / "_baked" / "config.json"
    assert json.loads(baked.read_text())["bucket"]["name"] == "media-adopted"


def test_access_logs_go_to_the_log_bucket(full: Synthesized) -> None:
    logging = distribution_config(full)["Logging"]
    assert logging["Bucket"].startswith("media-access-logs.s3.")
    assert logging["Prefix"] == "media-logs/cloudfront/"
    full.template().has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LoggingConfiguration": {
                "DestinationBucketName": "media-access-logs",
                "LogFilePrefix": "media-logs/s3/",
            }
        },
    )


# --- the distribution -----------------------------------------------------------------------------


def test_origin_group_fails_over_on_the_configs_statuses(
    classic: Synthesized, full: Synthesized
) -> None:
    for app, statuses in ((classic, [403, 404]), (full, [403, 404, 500])):
        (group,) = distribution_config(app)["OriginGroups"]["Items"]
        assert group["FailoverCriteria"]["StatusCodes"]["Items"] == statuses
        primary, fallback = (m["OriginId"] for m in group["Members"]["Items"])
        origins = {o["Id"]: o for o in distribution_config(app)["Origins"]}
        assert "S3OriginConfig" in origins[primary]
        assert "CustomOriginConfig" in origins[fallback]


def test_both_origins_go_through_origin_shield_in_the_stack_region(classic: Synthesized) -> None:
    shields = [o["OriginShield"] for o in distribution_config(classic)["Origins"]]
    assert shields == [{"Enabled": True, "OriginShieldRegion": "eu-west-1"}] * 2
    assert "eu-west-1" in ORIGIN_SHIELD_REGIONS


def test_origin_shield_region_prop_is_used(full: Synthesized) -> None:
    shields = {
        o["OriginShield"]["OriginShieldRegion"] for o in distribution_config(full)["Origins"]
    }
    assert shields == {"eu-west-2"}
    assert full.stack.region == "eu-west-3"


def test_legacy_origin_is_the_configs_cloudfront_origin(
    classic: Synthesized, full: Synthesized
) -> None:
    gcs = distribution_config(classic)["Origins"][1]
    assert (gcs["DomainName"], gcs["OriginPath"]) == ("storage.googleapis.com", "/old-media")
    assert gcs["CustomOriginConfig"] == {
        "HTTPSPort": 443,
        "OriginProtocolPolicy": "https-only",
        "OriginSSLProtocols": ["TLSv1.2"],
    }
    web = distribution_config(full)["Origins"][1]
    assert (web["DomainName"], web["OriginPath"]) == ("old.example.com", "/static")
    assert web["CustomOriginConfig"]["HTTPSPort"] == 8443


def test_the_fallback_is_the_first_routes_origin(apps: dict[str, Synthesized]) -> None:
    # http-multi-origin routes images/ to GCS first; the edge function re-points the rest.
    origin = distribution_config(apps["http-multi-origin"])["Origins"][1]
    assert origin["DomainName"] == "storage.googleapis.com"


def test_bucket_prefix_becomes_the_s3_origin_path(full: Synthesized) -> None:
    assert distribution_config(full)["Origins"][0]["OriginPath"] == "/media"


def test_viewers_are_redirected_to_https(classic: Synthesized) -> None:
    behavior = distribution_config(classic)["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]


def test_edge_function_runs_on_origin_request_and_response(classic: Synthesized) -> None:
    associations = distribution_config(classic)["DefaultCacheBehavior"][
        "LambdaFunctionAssociations"
    ]
    assert [a["EventType"] for a in associations] == ["origin-request", "origin-response"]
    assert len({json.dumps(a["LambdaFunctionARN"]) for a in associations}) == 1


def test_default_certificate_without_domain_names(classic: Synthesized) -> None:
    config = distribution_config(classic)
    assert "Aliases" not in config
    assert "ViewerCertificate" not in config


def test_a_certificate_brings_domain_names_and_tls_1_2(full: Synthesized) -> None:
    config = distribution_config(full)
    assert config["Aliases"] == ["media.example.com"]
    assert config["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert config["ViewerCertificate"]["SslSupportMethod"] == "sni-only"


def test_web_acl_is_attached(full: Synthesized) -> None:
    assert distribution_config(full)["WebACLId"].startswith("arn:aws:wafv2:us-east-1:")


def test_misses_are_cached_for_the_negative_ttl(classic: Synthesized, full: Synthesized) -> None:
    for app, ttl in ((classic, 30), (full, 45)):
        assert distribution_config(app)["CustomErrorResponses"] == [
            {"ErrorCachingMinTTL": ttl, "ErrorCode": 404}
        ]


def test_forwarded_query_parameters_are_in_the_cache_key(
    classic: Synthesized, full: Synthesized
) -> None:
    def query(app: Synthesized) -> dict[str, Any]:
        policy = one(app.template_json(), "AWS::CloudFront::CachePolicy")
        parameters = policy["Properties"]["CachePolicyConfig"][
            "ParametersInCacheKeyAndForwardedToOrigin"
        ]
        result: dict[str, Any] = parameters["QueryStringsConfig"]
        return result

    assert query(classic) == {"QueryStringBehavior": "none"}
    assert query(full) == {"QueryStringBehavior": "whitelist", "QueryStrings": ["v"]}


def test_policy_names_are_generated_per_stack_and_region(apps: dict[str, Synthesized]) -> None:
    names = []
    # "migrated" is the "scheduled" stack after its cut-over: the same stack, the same names.
    for app in (a for name, a in apps.items() if name != "migrated"):
        template = app.template_json()
        cache = one(template, "AWS::CloudFront::CachePolicy")["Properties"]["CachePolicyConfig"]
        request = one(template, "AWS::CloudFront::OriginRequestPolicy")["Properties"][
            "OriginRequestPolicyConfig"
        ]
        response = [
            policy["Properties"]["ResponseHeadersPolicyConfig"]["Name"]
            for policy in resources(template, "AWS::CloudFront::ResponseHeadersPolicy").values()
        ]
        for name in (cache["Name"], request["Name"], *response):
            assert name.startswith(app.stack.stack_name)
            assert name.endswith(app.stack.region)
            names.append(name)
    assert len(set(names)) == len(names)


def test_nothing_beyond_the_cache_key_is_forwarded(classic: Synthesized) -> None:
    classic.template().has_resource_properties(
        "AWS::CloudFront::OriginRequestPolicy",
        {
            "OriginRequestPolicyConfig": {
                "CookiesConfig": {"CookieBehavior": "none"},
                "HeadersConfig": {"HeaderBehavior": "none"},
                "QueryStringsConfig": {"QueryStringBehavior": "none"},
            }
        },
    )


# --- queue and fetcher ----------------------------------------------------------------------------


def test_queue_visibility_is_six_times_the_fetcher_timeout(
    classic: Synthesized, full: Synthesized
) -> None:
    for app in (classic, full):
        template = app.template_json()
        timeout = function(template, FETCHER_HANDLER)["Properties"]["Timeout"]
        queue = app.construct.queue_name
        (copy_queue,) = [
            q
            for q in resources(template, "AWS::SQS::Queue").values()
            if q["Properties"].get("QueueName") == queue
        ]
        assert copy_queue["Properties"]["VisibilityTimeout"] == 6 * timeout
    assert function(full.template_json(), FETCHER_HANDLER)["Properties"]["Timeout"] == 300


def test_dead_letter_queue_bounds_receives(classic: Synthesized, full: Synthesized) -> None:
    for app, receives in ((classic, 5), (full, 3)):
        app.template().has_resource_properties(
            "AWS::SQS::Queue",
            {
                "QueueName": app.construct.queue_name,
                "RedrivePolicy": {
                    "deadLetterTargetArn": Match.any_value(),
                    "maxReceiveCount": receives,
                },
            },
        )


def test_queues_are_encrypted_and_refuse_plain_http(classic: Synthesized) -> None:
    template = classic.template_json()
    queues = resources(template, "AWS::SQS::Queue")
    assert len(queues) == 2
    assert all(q["Properties"]["SqsManagedSseEnabled"] for q in queues.values())
    for policy in resources(template, "AWS::SQS::QueuePolicy").values():
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_event_source_reports_item_failures_and_caps_concurrency(
    classic: Synthesized, full: Synthesized
) -> None:
    for app, concurrency, batch in ((classic, 5, 1), (full, 20, 4)):
        app.template().has_resource_properties(
            "AWS::Lambda::EventSourceMapping",
            {
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "ScalingConfig": {"MaximumConcurrency": concurrency},
                "BatchSize": batch,
            },
        )


def test_fetcher_is_python_3_12_on_arm64_by_default(
    classic: Synthesized, full: Synthesized
) -> None:
    props = function(classic.template_json(), FETCHER_HANDLER)["Properties"]
    assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["arm64"])
    assert function(full.template_json(), FETCHER_HANDLER)["Properties"]["Architectures"] == [
        "x86_64"
    ]


def test_fetcher_memory_fits_the_copy_buffers(apps: dict[str, Synthesized]) -> None:
    def memory(name: str) -> int:
        size: int = function(apps[name].template_json(), FETCHER_HANDLER)["Properties"][
            "MemorySize"
        ]
        return size

    assert memory("gcs-public") == 512  # 8 MiB parts x 6 + 256 MiB -> the 512 MiB floor
    assert memory("gcs-private") == 576  # 32 MiB parts x 10 + 256 MiB = 576, in 64 MiB steps
    assert memory("full") == 2048  # the prop


def test_fetcher_logs_are_retained(classic: Synthesized, full: Synthesized) -> None:
    for app, days in ((classic, 30), (full, 7)):
        template = app.template_json()
        config = function(template, FETCHER_HANDLER)["Properties"]["LoggingConfig"]
        group_id = config["LogGroup"]["Ref"]
        assert template["Resources"][group_id]["Properties"]["RetentionInDays"] == days


def test_fetcher_has_least_privilege_on_the_bucket(classic: Synthesized) -> None:
    template = classic.template_json()
    bucket = next(iter(resources(template, "AWS::S3::Bucket")))
    s3 = {g for g in grants(role_statements(template, FETCHER_HANDLER)) if g[0].startswith("s3:")}
    objects, leases, arn = (
        f"${{{bucket}.Arn}}/*",
        f"${{{bucket}.Arn}}/.backorigin/*",
        (f"${{{bucket}.Arn}}"),
    )
    assert s3 == {
        ("s3:GetObject", objects),
        ("s3:PutObject", objects),
        ("s3:AbortMultipartUpload", objects),
        ("s3:ListMultipartUploadParts", objects),
        ("s3:DeleteObject", leases),
        ("s3:ListBucket", arn),
        ("s3:ListBucketMultipartUploads", arn),
    }


def test_fetcher_role_has_no_managed_policy(classic: Synthesized) -> None:
    template = classic.template_json()
    role = function(template, FETCHER_HANDLER)["Properties"]["Role"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in template["Resources"][role]["Properties"]


def test_fetcher_reads_only_the_configs_secrets(apps: dict[str, Synthesized]) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:backorigin/gcs-service-account"
    secrets = {
        g
        for g in grants(role_statements(apps["gcs-private"].template_json(), FETCHER_HANDLER))
        if g[0].startswith("secretsmanager:")
    }
    assert secrets == {
        ("secretsmanager:GetSecretValue", arn),
        ("secretsmanager:GetSecretValue", f"{arn}-??????"),
    }
    public = grants(role_statements(apps["gcs-public"].template_json(), FETCHER_HANDLER))
    assert not {g for g in public if g[0].startswith("secretsmanager:")}


def test_alarms_watch_dead_letters_and_fetcher_errors(classic: Synthesized) -> None:
    alarms = resources(classic.template_json(), "AWS::CloudWatch::Alarm").values()
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    assert watched == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/Lambda", "Errors"),
    }
    assert all(a["Properties"]["Threshold"] == 1 for a in alarms)


def test_alarm_actions_prop_notifies(apps: dict[str, Synthesized]) -> None:
    alarms = resources(apps["http-multi-origin"].template_json(), "AWS::CloudWatch::Alarm")
    for alarm in alarms.values():
        (action,) = alarm["Properties"]["AlarmActions"]
        assert "Ref" in action


# --- the edge function ----------------------------------------------------------------------------


def test_edge_function_is_python_x86_in_us_east_1(classic: Synthesized) -> None:
    stack = classic.assembly.get_stack_by_name(classic.edge_stack_name)
    assert stack.environment.region == "us-east-1"
    props = function(classic.template_json(classic.edge_stack_name), EDGE_HANDLER)["Properties"]
    assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["x86_64"])
    assert "Environment" not in props


def test_edge_function_shares_a_us_east_1_stack(apps: dict[str, Synthesized]) -> None:
    app = apps["azure-sas"]
    assert app.stack.region == "us-east-1"
    assert app.edge_stack_name == app.stack.stack_name


def test_edge_function_may_send_only_to_the_copy_queue(classic: Synthesized) -> None:
    template = classic.template_json(classic.edge_stack_name)
    queue = (
        f"arn:${{AWS::Partition}}:sqs:eu-west-1:${{AWS::AccountId}}:{classic.construct.queue_name}"
    )
    assert grants(role_statements(template, EDGE_HANDLER)) == {("sqs:SendMessage", queue)}


def test_edge_function_reads_only_the_secrets_of_edge_origins(
    apps: dict[str, Synthesized],
) -> None:
    template = apps["gcs-private"].template_json(apps["gcs-private"].edge_stack_name)
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:backorigin/gcs-service-account"
    assert {
        g for g in grants(role_statements(template, EDGE_HANDLER)) if g[0] != "sqs:SendMessage"
    } == {
        ("secretsmanager:GetSecretValue", arn),
        ("secretsmanager:GetSecretValue", f"{arn}-??????"),
    }


def test_a_secret_named_without_arn_is_readable_in_every_edge_region(
    adopted: Synthesized,
) -> None:
    edge = grants(role_statements(adopted.template_json(adopted.edge_stack_name), EDGE_HANDLER))
    fetcher = grants(role_statements(adopted.template_json(), FETCHER_HANDLER))
    name = "${AWS::AccountId}:secret:backorigin/web-token-??????"
    assert (
        "secretsmanager:GetSecretValue",
        f"arn:${{AWS::Partition}}:secretsmanager:*:{name}",
    ) in edge
    assert (
        "secretsmanager:GetSecretValue",
        f"arn:${{AWS::Partition}}:secretsmanager:ap-southeast-2:{name}",
    ) in fetcher
    warnings = [
        str(message.entry.data)
        for message in adopted.assembly.get_stack_by_name(adopted.stack.stack_name).messages
        if "backorigin:SecretByName" in str(message.entry.data)
    ]
    assert len(warnings) == 1


def test_aws_s3_fallback_origins_grant_the_fetcher_read_access(adopted: Synthesized) -> None:
    edge = grants(role_statements(adopted.template_json(adopted.edge_stack_name), EDGE_HANDLER))
    fetcher = grants(role_statements(adopted.template_json(), FETCHER_HANDLER))
    expected = {
        ("s3:GetObject", "arn:${AWS::Partition}:s3:::media-archive-old/media/*"),
        ("s3:ListBucket", "arn:${AWS::Partition}:s3:::media-archive-old"),
        ("sts:AssumeRole", "arn:aws:iam::210987654321:role/backorigin-reader"),
    }
    assert expected <= fetcher
    # Only the fetcher reads them: they are fallbacks, never reached through the edge.
    assert not expected & edge


def test_declared_pseudo_parameters_become_references(adopted: Synthesized) -> None:
    """The adapter writes ${AWS::Partition}; the template must reference the parameter."""
    (read,) = (
        s
        for s in role_statements(adopted.template_json(), FETCHER_HANDLER)
        if s["Action"] == "s3:GetObject" and "media-archive-old" in json.dumps(s["Resource"])
    )
    assert read["Resource"] == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::media-archive-old/media/*"]]
    }


def test_edge_bundle_is_the_lambda_edge_handler(classic: Synthesized) -> None:
    bundle = classic.asset_of(EDGE_HANDLER)
    assert (bundle / "backorigin" / "handlers" / "lambda_entry.py").is_file()
