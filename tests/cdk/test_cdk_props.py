"""Props and configs that cannot work are refused up front, before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Duration, Environment, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from backorigin.cdk import (
    ORIGIN_SHIELD_REGIONS,
    BackToOriginConstruct,
    ConstructConfigError,
    nearest_origin_shield_region,
)
from backorigin.config import load_config
from backorigin.errors import ConfigError

CONFIG = """\
bucket: {name: media-new, region: eu-west-1}
origins:
  - {name: legacy, type: gcs, bucket: old-media}
"""


def stack(region: str | None = "eu-west-1", account: str | None = None) -> Stack:
    env = Environment(region=region, account=account) if region else None
    return Stack(App(), "Props", env=env)


def build(scope: Stack | None = None, config: str = CONFIG, **props: object) -> None:
    BackToOriginConstruct(scope or stack(), "Migration", config=load_config(config), **props)


def test_bucket_and_removal_policy_are_mutually_exclusive() -> None:
    scope = stack()
    existing = s3.Bucket.from_bucket_name(scope, "Existing", "media-new")
    with pytest.raises(ConstructConfigError, match="bucket and removal_policy are mutually"):
        build(scope, bucket=existing, removal_policy=RemovalPolicy.DESTROY)


def test_domain_names_need_a_certificate() -> None:
    with pytest.raises(ConstructConfigError, match="domain_names and certificate go together"):
        build(domain_names=["media.example.com"])


def test_a_certificate_needs_domain_names() -> None:
    scope = stack()
    certificate = acm.Certificate.from_certificate_arn(
        scope, "Certificate", "arn:aws:acm:us-east-1:123456789012:certificate/abc"
    )
    with pytest.raises(ConstructConfigError, match="certificate was given without domain_names"):
        build(scope, certificate=certificate)


def test_access_log_prefix_needs_a_log_bucket() -> None:
    with pytest.raises(ConstructConfigError, match="access_log_prefix requires access_log_bucket"):
        build(access_log_prefix="logs/")


def test_an_unsupported_origin_shield_region_is_refused_with_the_nearest() -> None:
    with pytest.raises(ConstructConfigError) as error:
        build(origin_shield_region="eu-west-3")
    message = str(error.value)
    assert "origin_shield_region 'eu-west-3' is not a region CloudFront Origin Shield" in message
    assert "the nearest one to eu-west-3 is eu-west-2" in message
    assert all(region in message for region in ORIGIN_SHIELD_REGIONS)


def test_the_stack_region_is_checked_when_it_is_the_default_shield_region() -> None:
    config = CONFIG.replace("eu-west-1", "eu-north-1")
    with pytest.raises(
        ConstructConfigError, match=r"the stack's region 'eu-north-1' \(the default"
    ):
        build(stack("eu-north-1"), config=config)


def test_an_unknown_region_gets_no_suggestion() -> None:
    with pytest.raises(ConstructConfigError) as error:
        build(origin_shield_region="mars-north-1")
    assert "nearest" not in str(error.value)


def test_origin_shield_regions_are_their_own_nearest() -> None:
    assert all(nearest_origin_shield_region(r) == r for r in ORIGIN_SHIELD_REGIONS)
    assert nearest_origin_shield_region("us-west-1") == "us-west-2"


def test_a_stack_without_a_region_is_refused() -> None:
    with pytest.raises(ConstructConfigError, match="no explicit region"):
        build(stack(region=None))


def test_a_secret_from_the_environment_cannot_be_deployed() -> None:
    config = """\
bucket: {name: media-new}
origins:
  - name: web
    type: http
    base_url: https://old.example.com/
    auth: {mode: bearer, token: {secret: {env: OLD_SITE_TOKEN}}}
"""
    with pytest.raises(ConstructConfigError, match="environment variable OLD_SITE_TOKEN"):
        build(config=config)


def test_an_existing_bucket_must_match_the_configs_name() -> None:
    scope = stack()
    existing = s3.Bucket.from_bucket_name(scope, "Existing", "other-bucket")
    with pytest.raises(ConstructConfigError, match="bucket is 'other-bucket' but the config's"):
        build(scope, bucket=existing)


def test_a_bucket_name_is_needed_at_synth_time() -> None:
    config = "origins:\n  - {name: legacy, type: gcs, bucket: old-media}\nbucket: {}\n"
    with pytest.raises(ConstructConfigError, match="account is not known at synth time"):
        build(config=config)


def test_the_created_bucket_must_be_in_the_configs_region() -> None:
    with pytest.raises(ConstructConfigError, match=r"bucket\.region is eu-west-1 but"):
        build(stack("us-east-1"))


def test_a_non_aws_bucket_cannot_be_deployed() -> None:
    config = CONFIG.replace("region: eu-west-1", "endpoint_url: 'https://s3.example.com'")
    with pytest.raises(ConstructConfigError, match=r"bucket\.endpoint_url is set"):
        build(config=config)


def test_fetcher_timeout_is_bounded() -> None:
    with pytest.raises(ConstructConfigError, match="fetcher_timeout"):
        build(fetcher_timeout=Duration.minutes(20))


def test_max_concurrency_is_bounded() -> None:
    with pytest.raises(ConstructConfigError, match="fetcher_max_concurrency"):
        build(fetcher_max_concurrency=1)


def test_the_root_object_cannot_be_empty() -> None:
    with pytest.raises(ConstructConfigError, match="default_root_object"):
        build(default_root_object="/")


def test_an_invalid_config_file_names_the_problem() -> None:
    with pytest.raises(ConfigError, match="origins"):
        BackToOriginConstruct(stack(), "Migration", config="bucket: {name: media-new}\n")


def test_a_missing_relative_config_names_its_absolute_path_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for given in ("backorigin.yaml", Path("conf") / "backorigin.yaml"):
        with pytest.raises(ConstructConfigError) as info:
            BackToOriginConstruct(stack(), "Migration", config=given)
        message = str(info.value)
        assert f"config file {tmp_path / given} does not exist" in message
        assert f"a relative path is read from {tmp_path})" in message
        assert "Path(__file__).parent" in message


def test_a_missing_absolute_config_is_named_without_the_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConstructConfigError, match="does not exist;") as info:
        BackToOriginConstruct(stack(), "Migration", config=str(missing))
    assert str(missing) in str(info.value)
    assert "relative path" not in str(info.value)


def test_a_relative_config_is_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An invalid file, so the construct stops at validation, before building any bundle; the
    # error proves which file was read, by its absolute path.
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "backorigin.yaml").write_text("bucket: {name: media-new}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="origins") as info:
        BackToOriginConstruct(stack(), "Migration", config=Path("conf/backorigin.yaml"))
    assert str(tmp_path / "conf" / "backorigin.yaml") in str(info.value)


def test_two_constructs_can_share_a_stack() -> None:
    scope = stack()
    first = BackToOriginConstruct(scope, "First", config=load_config(CONFIG))
    second = BackToOriginConstruct(
        scope, "Second", config=load_config(CONFIG.replace("media-new", "media-second"))
    )
    assert first.queue_name != second.queue_name
    edge_stacks = {Stack.of(c.edge_function.lambda_).stack_name for c in (first, second)}
    assert len(edge_stacks) == 1  # one us-east-1 support stack holds both edge functions


def test_manage_bucket_policy_needs_an_imported_bucket() -> None:
    with pytest.raises(ConstructConfigError, match="manage_bucket_policy applies only"):
        build(manage_bucket_policy=True)
    scope = stack()
    own = s3.Bucket(scope, "Own", bucket_name="media-new")
    with pytest.raises(ConstructConfigError, match="manage_bucket_policy applies only"):
        build(scope, bucket=own, manage_bucket_policy=True)


SECRET_CONFIG = """\
bucket: {name: media-new}
origins:
  - name: web
    type: http
    base_url: https://old.example.com/
    auth: {mode: bearer, token: {secret: {aws_secretsmanager: backorigin/token}}}
"""


def test_secret_keys_must_name_the_configs_secrets() -> None:
    scope = stack()
    key = kms.Key.from_key_arn(scope, "Key", "arn:aws:kms:eu-west-1:123456789012:key/abc")
    with pytest.raises(ConstructConfigError) as error:
        build(scope, config=SECRET_CONFIG, secret_encryption_keys={"backorigin/tokn": key})
    assert "names backorigin/tokn, which the config does not reference" in str(error.value)
    assert "references are: backorigin/token" in str(error.value)


def test_an_edge_secrets_key_must_be_known_by_arn() -> None:
    scope = stack()
    key = kms.Key(scope, "Key")
    with pytest.raises(ConstructConfigError, match=r"kms\.Key\.from_key_arn"):
        build(scope, config=SECRET_CONFIG, secret_encryption_keys={"backorigin/token": key})


def test_settings_cloudfront_would_refuse_are_listed_with_their_paths() -> None:
    config = """\
bucket: {name: media-new}
origins:
  - {name: direct, type: http, base_url: "https://10.1.2.3/files/"}
  - name: api
    type: http
    base_url: https://files.example.com:81/
    auth:
      mode: headers
      headers: {X-Forwarded-Proto: {secret: {aws_secretsmanager: backorigin/api}}}
routes:
  - {prefix: api/, origin: api}
  - {prefix: "", origin: direct}
"""
    with pytest.raises(ConstructConfigError) as error:
        build(config=config)
    message = str(error.value)
    assert "CloudFront would refuse 3 setting(s)" in message
    assert "origins[0].base_url: not deployable" in message
    assert "origins[1].base_url: not deployable" in message
    assert "origins[1].auth.headers.X-Forwarded-Proto: not deployable" in message
