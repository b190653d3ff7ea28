"""Deployments beyond a created bucket: existing buckets, SSE-KMS, customer-keyed secrets in
several regions, and provenance kept from viewers. Read from the shared synthesized apps."""

from __future__ import annotations

from typing import Any

from aws_cdk import Token
from cdk_support import (
    BUCKET_KEY,
    EDGE_HANDLER,
    EU_KEY,
    EU_TOKEN,
    FETCHER_HANDLER,
    NAMED_KEY,
    US_KEY,
    US_PASSWORD,
    Synthesized,
    flat,
    grants,
    one,
    resources,
    role_statements,
)

from backorigin.types import PROVENANCE_FIELDS, PROVENANCE_HEADERS

CLOUDFRONT = {"Service": "cloudfront.amazonaws.com"}
IMPORTED_WARNING = "backorigin:ImportedResourcesNeedSettings"


def distribution_arn(app: Synthesized) -> str:
    (distribution,) = resources(app.template_json(), "AWS::CloudFront::Distribution")
    account = app.stack.account
    if Token.is_unresolved(account):
        account = "${AWS::AccountId}"
    return f"arn:${{AWS::Partition}}:cloudfront::{account}:distribution/${{{distribution}}}"


def warnings(app: Synthesized, warning_id: str) -> list[str]:
    stack = app.assembly.get_stack_by_name(app.stack.stack_name)
    return [str(m.entry.data) for m in stack.messages if warning_id in str(m.entry.data)]


def bucket_policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    policy = one(template, "AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"]
    statements: list[dict[str, Any]] = policy["Statement"]
    return statements


def cloudfront_key_statements(template: dict[str, Any], key_id: str) -> list[dict[str, Any]]:
    policy = template["Resources"][key_id]["Properties"]["KeyPolicy"]
    return [s for s in policy["Statement"] if s.get("Principal") == CLOUDFRONT]


def kms_grants(statements: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """``(action, key, condition)`` of every KMS statement, the condition as flat text."""
    found = set()
    for statement in statements:
        actions = statement["Action"]
        for action in actions if isinstance(actions, list) else [actions]:
            if action.startswith("kms:"):
                condition = str(flat(statement.get("Condition", {})))
                found.add((action, str(flat(statement["Resource"])), condition))
    return found


def via(operator: str, region: str) -> str:
    return str({operator: {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}})


# --- SSE-KMS ----------------------------------------------------------------------------------


def test_a_created_bucket_is_encrypted_with_the_given_key(full: Synthesized) -> None:
    template = full.template_json()
    (key,) = resources(template, "AWS::KMS::Key")
    encryption = one(template, "AWS::S3::Bucket")["Properties"]["BucketEncryption"]
    assert encryption == {
        "ServerSideEncryptionConfiguration": [
            {
                "BucketKeyEnabled": True,
                "ServerSideEncryptionByDefault": {
                    "KMSMasterKeyID": {"Fn::GetAtt": [key, "Arn"]},
                    "SSEAlgorithm": "aws:kms",
                },
            }
        ]
    }


def test_cloudfront_may_decrypt_with_the_bucket_key_for_this_distribution_only(
    full: Synthesized, managed: Synthesized, owned: Synthesized
) -> None:
    for app in (full, managed, owned):
        template = app.template_json()
        (key,) = resources(template, "AWS::KMS::Key")
        (statement,) = cloudfront_key_statements(template, key)
        assert (statement["Effect"], statement["Action"]) == ("Allow", "kms:Decrypt")
        condition = flat(statement["Condition"]["StringEquals"]["AWS:SourceArn"])
        assert condition == distribution_arn(app), app.name


def test_the_fetcher_may_generate_data_keys_and_decrypt_with_the_bucket_key(
    full: Synthesized, adopted: Synthesized
) -> None:
    template = full.template_json()
    (key,) = resources(template, "AWS::KMS::Key")
    expected = {("kms:GenerateDataKey", f"${{{key}.Arn}}"), ("kms:Decrypt", f"${{{key}.Arn}}")}
    assert {
        g for g in grants(role_statements(template, FETCHER_HANDLER)) if g[0].startswith("kms:")
    } == expected
    imported = grants(role_statements(adopted.template_json(), FETCHER_HANDLER))
    assert {("kms:GenerateDataKey", BUCKET_KEY), ("kms:Decrypt", BUCKET_KEY)} <= imported


def test_the_key_of_an_apps_own_bucket_is_found_on_the_bucket(owned: Synthesized) -> None:
    template = owned.template_json()
    (key,) = resources(template, "AWS::KMS::Key")
    assert ("kms:GenerateDataKey", f"${{{key}.Arn}}") in grants(
        role_statements(template, FETCHER_HANDLER)
    )
    assert owned.construct.encryption_key is not None


def test_without_a_key_nothing_is_granted_on_kms(classic: Synthesized) -> None:
    template = classic.template_json()
    assert not resources(template, "AWS::KMS::Key")
    assert not {g for g in grants(role_statements(template, FETCHER_HANDLER)) if "kms:" in g[0]}


# --- existing buckets -----------------------------------------------------------------------


def test_an_apps_own_bucket_gets_the_lifecycle_rules(owned: Synthesized) -> None:
    rules = one(owned.template_json(), "AWS::S3::Bucket")["Properties"]["LifecycleConfiguration"]
    by_id = {rule["Id"]: rule for rule in rules["Rules"]}
    assert by_id["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    assert by_id["ExpireStaleCopyLeases"]["Prefix"] == "site/.backorigin/leases/"
    assert by_id["ExpireStaleCopyLeases"]["ExpirationInDays"] == 7


def test_an_apps_own_bucket_gets_the_policy_statements(owned: Synthesized) -> None:
    template = owned.template_json()
    (bucket,) = resources(template, "AWS::S3::Bucket")
    found = {
        (s["Effect"], s["Action"], flat(s["Resource"]))
        for s in bucket_policy_statements(template)
        if s.get("Principal") == CLOUDFRONT
    }
    assert found == {
        ("Allow", "s3:GetObject", f"${{{bucket}.Arn}}/site/*"),
        ("Allow", "s3:ListBucket", f"${{{bucket}.Arn}}"),
        ("Deny", "s3:GetObject", f"${{{bucket}.Arn}}/site/.backorigin/*"),
    }
    assert warnings(owned, IMPORTED_WARNING) == []


def test_a_bucket_in_another_stack_gets_the_lifecycle_rules(shared: Synthesized) -> None:
    data = shared.template_json("BackoriginData")
    rules = one(data, "AWS::S3::Bucket")["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {rule["Id"] for rule in rules} == {
        "AbortIncompleteMultipartUploads",
        "ExpireStaleCopyLeases",
    }


def test_a_bucket_in_another_stack_takes_no_statement_naming_the_distribution(
    shared: Synthesized,
) -> None:
    # Such a statement would make the data stack depend on this one, which depends on it.
    data = shared.template_json("BackoriginData")
    (key,) = resources(data, "AWS::KMS::Key")
    assert cloudfront_key_statements(data, key) == []
    assert [s for s in bucket_policy_statements(data) if s.get("Principal") == CLOUDFRONT] == []
    (warning,) = warnings(shared, IMPORTED_WARNING)
    assert "bucket media-shared's policy must allow" in warning
    assert "manage_bucket_policy" not in warning  # refused for an s3.Bucket
    assert "kms:Decrypt" in warning
    assert "lifecycle" not in warning


def test_an_imported_bucket_gets_no_policy_by_default(adopted: Synthesized) -> None:
    assert not resources(adopted.template_json(), "AWS::S3::BucketPolicy")


def test_an_imported_bucket_warns_what_its_owner_must_set(adopted: Synthesized) -> None:
    (warning,) = warnings(adopted, IMPORTED_WARNING)
    assert "bucket media-adopted's policy must allow cloudfront.amazonaws.com" in warning
    assert "bucket media-adopted's lifecycle rules must abort incomplete multipart" in warning
    assert "'.backorigin/leases/' after 7 days" in warning
    assert f"the policy of KMS key {BUCKET_KEY} must allow" in warning


def test_the_needed_statements_are_exposed_for_an_imported_bucket(adopted: Synthesized) -> None:
    stack = adopted.stack
    bucket = [
        stack.resolve(s.to_statement_json()) for s in adopted.construct.bucket_policy_statements
    ]
    assert {(s["Effect"], s["Action"], flat(s["Resource"])) for s in bucket} == {
        ("Allow", "s3:GetObject", "arn:${AWS::Partition}:s3:::media-adopted/*"),
        ("Allow", "s3:ListBucket", "arn:${AWS::Partition}:s3:::media-adopted"),
        ("Deny", "s3:GetObject", "arn:${AWS::Partition}:s3:::media-adopted/.backorigin/*"),
    }
    (key,) = [stack.resolve(s.to_statement_json()) for s in adopted.construct.key_policy_statements]
    assert (key["Action"], key["Principal"]) == ("kms:Decrypt", CLOUDFRONT)
    assert len(adopted.construct.lifecycle_rules) == 2


def test_a_managed_policy_holds_the_construct_statements(managed: Synthesized) -> None:
    template = managed.template_json()
    policy = one(template, "AWS::S3::BucketPolicy")["Properties"]
    assert policy["Bucket"] == "media-managed"
    found = {
        (s["Effect"], str(s["Action"]), str(flat(s["Resource"])))
        for s in policy["PolicyDocument"]["Statement"]
    }
    arn = "arn:${AWS::Partition}:s3:::media-managed"
    assert found == {
        ("Allow", "s3:GetObject", f"{arn}/site/*"),
        ("Allow", "s3:ListBucket", arn),
        ("Deny", "s3:GetObject", f"{arn}/site/.backorigin/*"),
        ("Deny", "s3:*", str([arn, f"{arn}/*"])),
    }


def test_a_managed_policy_leaves_only_the_lifecycle_rules_to_the_owner(
    managed: Synthesized,
) -> None:
    (warning,) = warnings(managed, IMPORTED_WARNING)
    assert "lifecycle rules" in warning
    assert "policy must allow" not in warning


def test_created_buckets_need_nothing_from_their_owner(
    classic: Synthesized, full: Synthesized
) -> None:
    assert warnings(classic, IMPORTED_WARNING) == warnings(full, IMPORTED_WARNING) == []


def test_cdks_own_imported_bucket_warning_is_answered_by_the_constructs(
    apps: dict[str, Synthesized],
) -> None:
    for app in apps.values():
        assert warnings(app, "updateImportedBucketPolicyOac") == [], app.name


def test_the_list_permission_warning_is_answered_by_the_root_object(
    apps: dict[str, Synthesized],
) -> None:
    for app in apps.values():
        assert warnings(app, "listBucketSecurityRisk") == [], app.name


# --- secrets: regions and customer-managed keys ---------------------------------------------


def test_secrets_in_other_regions_are_granted_in_their_regions(adopted: Synthesized) -> None:
    fetcher = grants(role_statements(adopted.template_json(), FETCHER_HANDLER))
    edge = grants(role_statements(adopted.template_json(adopted.edge_stack_name), EDGE_HANDLER))
    read = "secretsmanager:GetSecretValue"
    assert {(read, EU_TOKEN), (read, US_PASSWORD), (read, f"{US_PASSWORD}-??????")} <= fetcher
    assert (read, EU_TOKEN) in edge
    assert not {g for g in edge if g[1].startswith(US_PASSWORD)}  # us-web is a fallback only


def test_the_fetcher_decrypts_each_secret_key_through_its_secrets_region(
    adopted: Synthesized,
) -> None:
    found = kms_grants(role_statements(adopted.template_json(), FETCHER_HANDLER))
    assert {
        ("kms:Decrypt", EU_KEY, via("StringEquals", "eu-west-1")),
        ("kms:Decrypt", US_KEY, via("StringEquals", "us-west-2")),
        # A secret named without an ARN is read in the fetcher's own region.
        ("kms:Decrypt", NAMED_KEY, via("StringEquals", "ap-southeast-2")),
    } <= found


def test_the_edge_decrypts_only_the_keys_of_its_secrets(adopted: Synthesized) -> None:
    template = adopted.template_json(adopted.edge_stack_name)
    assert kms_grants(role_statements(template, EDGE_HANDLER)) == {
        ("kms:Decrypt", EU_KEY, via("StringEquals", "eu-west-1")),
        # Read by name wherever Lambda@Edge runs.
        ("kms:Decrypt", NAMED_KEY, via("StringLike", "*")),
    }


# --- provenance -----------------------------------------------------------------------------


def test_viewers_do_not_see_provenance_headers(classic: Synthesized) -> None:
    template = classic.template_json()
    (policy_id,) = resources(template, "AWS::CloudFront::ResponseHeadersPolicy")
    config = template["Resources"][policy_id]["Properties"]["ResponseHeadersPolicyConfig"]
    removed = [item["Header"] for item in config["RemoveHeadersConfig"]["Items"]]
    assert sorted(removed) == sorted(PROVENANCE_HEADERS)
    behavior = one(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"][
        "DefaultCacheBehavior"
    ]
    assert behavior["ResponseHeadersPolicyId"] == {"Ref": policy_id}


def test_every_provenance_field_has_its_header() -> None:
    assert len(PROVENANCE_HEADERS) == len(PROVENANCE_FIELDS)
    assert "x-amz-meta-backorigin-origin-key" in PROVENANCE_HEADERS
    assert all(h.startswith("x-amz-meta-backorigin-") for h in PROVENANCE_HEADERS)


def test_expose_provenance_keeps_the_headers(adopted: Synthesized) -> None:
    template = adopted.template_json()
    assert not resources(template, "AWS::CloudFront::ResponseHeadersPolicy")
    behavior = one(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"][
        "DefaultCacheBehavior"
    ]
    assert "ResponseHeadersPolicyId" not in behavior
