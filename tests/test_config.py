"""Config loading and validation: every problem reported with its path and YAML line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from backorigin.config import (
    Config,
    GcsOrigin,
    HttpOrigin,
    load_config,
    parse_duration,
    parse_size,
)
from backorigin.errors import ConfigError, ConfigIssue

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

BASE = """\
bucket:
  name: media-new
  region: eu-west-1
origins:
  - name: legacy
    type: gcs
    bucket: old-media
    auth: {mode: anonymous}
  - name: web
    type: http
    base_url: https://old.example.com/static/
    auth: {mode: none}
"""


def issues_of(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_config(textwrap.dedent(text))
    return info.value.issues


def issue_at(issues: list[ConfigIssue], path: str) -> ConfigIssue:
    matches = [i for i in issues if i.path == path]
    assert matches, f"no issue at {path}; got {[str(i) for i in issues]}"
    return matches[0]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/backorigin.yaml")), ids=str)
def test_examples_are_valid(path: Path) -> None:
    config = load_config(path)
    assert config.origins
    assert config.bucket.name


def test_full_format_from_the_docs() -> None:
    config = load_config(
        BASE
        + textwrap.dedent("""\
        routes:
          - prefix: images/
            suffix: [.jpg, .png]
            origin: legacy
            fallback: [web]
            rewrite: {strip_prefix: images/, add_prefix: img/}
        copy:
          part_size: 16MiB
          concurrency: 8
          max_object_size: 5TiB
        edge:
          failover_status: [404, 403]
          negative_ttl: 1m30s
        """)
    )
    assert isinstance(config.origins[0], GcsOrigin)
    assert isinstance(config.origins[1], HttpOrigin)
    assert config.origin("web").base_url == "https://old.example.com/static/"  # type: ignore[attr-defined]
    assert config.routes[0].suffix == [".jpg", ".png"]
    assert config.routes[0].rewrite.add_prefix == "img/"
    assert config.transfer.part_size == 16 * 1024**2
    assert config.transfer.max_object_size == 5 * 1024**4
    assert config.edge.failover_status == [403, 404]
    assert config.edge.negative_ttl == 90.0


def test_defaults() -> None:
    config = load_config(BASE)
    assert config.routes == []
    assert config.transfer.part_size == 8 * 1024**2
    assert config.transfer.concurrency == 4
    assert config.edge.failover_status == [403, 404]
    assert config.edge.negative_ttl == 30.0
    assert config.bucket.prefix == ""


def test_mapping_path_and_config_inputs(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(BASE)
    from_path = load_config(file)
    from_str_path = load_config(str(file))
    from_mapping = load_config(from_path.model_dump(by_alias=True))
    assert from_path == from_str_path == from_mapping
    assert load_config(from_path) is from_path


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_every_problem_is_listed_with_path_and_line() -> None:
    issues = issues_of("""\
        bucket:
          name: Media_New
          region: eu-west-1
        origins:
          - name: legacy
            type: gcs
            bucket: old-media
            auth: {mode: nope}
          - name: web
            type: ftp
        copy:
          part_size: 1KiB
          bogus: 1
        edge:
          failover_status: [418]
        """)
    assert issue_at(issues, "bucket.name").line == 2
    mode = issue_at(issues, "origins[0].auth.mode")
    assert mode.line == 8
    assert "'anonymous'" in mode.message
    assert "'service_account'" in mode.message
    assert "'hmac'" in mode.message
    kind = issue_at(issues, "origins[1].type")
    assert kind.line == 10
    assert "ftp" in kind.message
    for name in ("azure", "gcs", "http", "s3"):
        assert name in kind.message
    assert issue_at(issues, "copy.part_size").line == 12
    assert issue_at(issues, "copy.bogus").message == "unknown field"
    assert "418" in issue_at(issues, "edge.failover_status").message
    assert len(issues) == 6


def test_error_text_carries_path_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(BASE.replace("{mode: none}", "{mode: magic}"))
    text = str(info.value)
    assert "origins[1].auth.mode (line 12): unknown value 'magic'" in text


def test_missing_required_fields() -> None:
    issues = issues_of("""\
        bucket: {region: eu-west-1}
        origins:
          - name: web
            type: http
          - type: gcs
            bucket: abc
        """)
    assert issue_at(issues, "origins[0].base_url").message == "required field is missing"
    assert issue_at(issues, "origins[0].base_url").line == 3
    assert issue_at(issues, "origins[1].name").message == "required field is missing"


def test_origin_without_type_lists_the_types() -> None:
    issues = issues_of("""\
        bucket: {name: media-new}
        origins:
          - name: web
        """)
    message = issue_at(issues, "origins[0].type").message
    assert "http" in message
    assert "gcs" in message


def test_at_least_one_origin_and_unique_names() -> None:
    assert issue_at(issues_of("bucket: {name: abc}\norigins: []\n"), "origins")
    issues = issues_of(BASE.replace("name: web", "name: legacy"))
    dup = issue_at(issues, "origins[1].name")
    assert "origins[0]" in dup.message
    assert dup.line == 9


def test_routes_must_name_known_origins() -> None:
    issues = issues_of(
        BASE
        + """\
routes:
  - origin: legacy
    fallback: [web, legacy, cdn]
  - origin: nowhere
"""
    )
    assert "legacy" in issue_at(issues, "routes[0].fallback[1]").message
    unknown = issue_at(issues, "routes[0].fallback[2]")
    assert "'cdn'" in unknown.message
    assert "legacy, web" in unknown.message
    assert issue_at(issues, "routes[1].origin").line == 16


def test_duplicate_yaml_keys_are_errors() -> None:
    issues = issues_of(BASE + "edge: {negative_ttl: 5s}\nedge: {negative_ttl: 10s}\n")
    assert issue_at(issues, "edge").line == 14


def test_yaml_syntax_error_has_a_line() -> None:
    issues = issues_of("bucket:\n  name: [unclosed\norigins: x\n")
    assert issues[0].line is not None
    assert "invalid YAML" in issues[0].message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text"])
def test_document_must_be_a_mapping(text: str) -> None:
    with pytest.raises(ConfigError):
        load_config(text if "\n" in text else text + "\n")


def test_bad_values_in_paths_and_urls() -> None:
    issues = issues_of("""\
        bucket: {name: abc, prefix: /abs, region: europe}
        origins:
          - name: web
            type: http
            base_url: ftp://old.example.com/
            prefix: a/../b
          - name: web2
            type: http
            base_url: https://user:pw@old.example.com/
          - name: "bad name"
            type: http
            base_url: https://old.example.com/?q=1
        """)
    assert "'/'" in issue_at(issues, "bucket.prefix").message
    assert "region" in issue_at(issues, "bucket.region").message
    assert "http" in issue_at(issues, "origins[0].base_url").message
    assert "'..'" in issue_at(issues, "origins[0].prefix").message
    assert "credentials" in issue_at(issues, "origins[1].base_url").message
    assert issue_at(issues, "origins[2].name")
    assert "query" in issue_at(issues, "origins[2].base_url").message


# --- secrets -------------------------------------------------------------------------------

LITERAL = "hunter2-very-secret-value"


def test_a_literal_secret_is_rejected_without_echoing_it() -> None:
    text = BASE.replace(
        "auth: {mode: none}", f"auth: {{mode: basic, username: me, password: {LITERAL}}}"
    )
    with pytest.raises(ConfigError) as info:
        load_config(text)
    issue = issue_at(info.value.issues, "origins[1].auth.password")
    assert "literal secret is not allowed" in issue.message
    assert "{secret: {env: NAME}}" in issue.message
    assert LITERAL not in str(info.value)
    assert LITERAL not in repr(info.value)


def test_direct_model_validation_never_echoes_a_secret() -> None:
    data = load_config(BASE).model_dump(by_alias=True)
    data["origins"][1]["auth"] = {"mode": "bearer", "token": LITERAL}
    with pytest.raises(ValidationError) as info:
        Config.model_validate(data)
    assert LITERAL not in str(info.value)


def test_secret_reference_forms() -> None:
    text = BASE.replace(
        "auth: {mode: none}",
        "auth: {mode: headers, headers: {"
        "X-Api-Key: {secret: {env: API_KEY}}, "
        "X-Other: {secret: {file: /run/secrets/other}}, "
        "X-Third: {secret: {aws_secretsmanager: app/creds, key: token}}}}",
    )
    auth = load_config(text).origins[1].auth  # type: ignore[attr-defined]
    sources = {name: ref.secret for name, ref in auth.headers.items()}
    assert sources["X-Api-Key"].env == "API_KEY"
    assert sources["X-Other"].file == "/run/secrets/other"
    assert sources["X-Third"].aws_secretsmanager == "app/creds"
    assert sources["X-Third"].key == "token"


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("{secret: {}}", "exactly one"),
        ("{secret: {env: A, file: /b}}", "exactly one"),
        ("{secret: {env: A, key: k}}", "only valid with aws_secretsmanager"),
        ("{secret: {vault: x}}", "unknown field"),
    ],
)
def test_malformed_secret_references(ref: str, fragment: str) -> None:
    text = BASE.replace("auth: {mode: none}", f"auth: {{mode: bearer, token: {ref}}}")
    issues = issues_of(text)
    assert any(fragment in i.message and i.path.startswith("origins[1].auth.token") for i in issues)


def test_secret_values_stay_hidden_in_repr() -> None:
    value = SecretStr(LITERAL)
    assert LITERAL not in repr(value)
    assert LITERAL not in str(value)


# --- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16MiB", 16 * 1024**2),
        ("16 MiB", 16 * 1024**2),
        ("5TiB", 5 * 1024**4),
        ("1.5GB", 1_500_000_000),
        ("10kb", 10_000),
        ("100", 100),
        (42, 42),
        ("7B", 7),
    ],
)
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["16 furlongs", "-1", "MiB", "", True, 1.5, -3])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message checked below
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("2d", 172800.0), (7, 7.0)],
)
def test_durations(text: str | int, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["30", "s", "5 weeks", "", "1h-5m", -1, False])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_size_bounds_are_checked_with_paths() -> None:
    issues = issues_of(BASE + "copy: {part_size: 6GiB, concurrency: 0, max_object_size: 6TiB}\n")
    assert issue_at(issues, "copy.part_size")
    assert issue_at(issues, "copy.concurrency")
    assert issue_at(issues, "copy.max_object_size")


# --- where auth modes work -------------------------------------------------------------------

ADC = "{name: gcs, type: gcs, bucket: old-media, auth: {mode: service_account}}"
WEB = '{name: web, type: http, base_url: "https://old.example.com/"}'


def test_an_edge_origin_must_be_signable_at_the_edge() -> None:
    issues = issues_of(f"bucket: {{name: abc}}\norigins:\n  - {ADC}\n")
    issue = issue_at(issues, "origins[0].auth")
    assert "Application Default Credentials" in issue.message
    assert "default origin" in issue.message
    issues = issues_of(
        f"bucket: {{name: abc}}\norigins:\n  - {WEB}\n  - {ADC}\nroutes:\n  - {{origin: gcs}}\n"
    )
    assert "routes[0]" in issue_at(issues, "origins[1].auth").message


def test_a_copy_only_mode_is_fine_for_a_fallback_origin() -> None:
    config = load_config(
        f"bucket: {{name: abc}}\norigins:\n  - {WEB}\n  - {ADC}\n"
        "routes:\n  - {origin: web, fallback: [gcs]}\n"
    )
    assert config.origin("gcs").edge_problem() is not None
    assert config.origin("web").edge_problem() is None


# --- shared origin settings -------------------------------------------------------------------


SHARED_SETTINGS = ("connect_timeout", "read_timeout", "retries", "backoff")


def test_every_origin_type_has_the_shared_settings_with_its_own_defaults() -> None:
    from backorigin.config import origin_types
    from backorigin.config.origins import OriginConfig

    base = OriginConfig.model_fields
    for name, model in origin_types().items():
        for setting in SHARED_SETTINGS:
            field = model.model_fields[setting]
            assert field.description == base[setting].description, (name, setting)
            assert field.metadata == base[setting].metadata, (name, setting)
    config = load_config(BASE)
    gcs, http = config.origins
    assert (gcs.read_timeout, gcs.retries, gcs.backoff) == (60.0, 6, 1.0)
    assert (http.read_timeout, http.retries, http.backoff) == (30.0, 4, 0.5)


def test_shared_settings_are_set_by_the_same_names_on_every_type() -> None:
    config = load_config(
        BASE.replace(
            "    auth: {mode: anonymous}\n",
            "    auth: {mode: anonymous}\n    retries: 2\n    backoff: 250ms\n"
            "    connect_timeout: 3s\n    read_timeout: 1m\n",
        )
    )
    gcs = config.origins[0]
    assert (gcs.retries, gcs.backoff, gcs.connect_timeout, gcs.read_timeout) == (
        2,
        0.25,
        3.0,
        60.0,
    )
    issues = issues_of(BASE.replace("auth: {mode: none}", "auth: {mode: none}\n    retries: 21"))
    assert "less than or equal to 20" in issue_at(issues, "origins[1].retries").message


def test_retry_timeout_is_a_deprecated_name_of_retries() -> None:
    text = BASE.replace("auth: {mode: anonymous}", "auth: {mode: anonymous}\n    retry_timeout: 1m")
    with pytest.warns(FutureWarning, match=r"retry_timeout is deprecated.*retries: 5"):
        config = load_config(text)
    assert config.origins[0].retries == 5  # 1+2+4+8+16 s of backoff fit in a minute
    with pytest.warns(FutureWarning):
        off = load_config(text.replace("retry_timeout: 1m", "retry_timeout: 0"))
    assert off.origins[0].retries == 0
    both = text.replace("retry_timeout: 1m", "retry_timeout: 1m\n    retries: 3")
    issues = issues_of(both)
    assert "set only retries" in issue_at(issues, "origins[0]").message


def test_an_s3_origin_refuses_a_backoff_botocore_cannot_apply() -> None:
    text = BASE + "  - {name: s3old, type: s3, bucket: old-s3, region: eu-west-1, backoff: 2s}\n"
    issue = issue_at(issues_of(text), "origins[2].backoff")
    assert "botocore" in issue.message
    # The default survives a dump and a reload (what bundling and overrides do).
    ok = load_config(text.replace(", backoff: 2s", ""))
    assert load_config(ok.model_dump(by_alias=True)) == ok


# --- messages written for people, not pydantic's ------------------------------------------------


def test_auth_written_as_a_word_says_it_must_be_a_mapping() -> None:
    issues = issues_of(BASE.replace("auth: {mode: anonymous}", "auth: anonymous"))
    issue = issue_at(issues, "origins[0].auth")
    assert issue.message == "auth must be a mapping such as {mode: anonymous}"
    assert issue.line == 8


def test_auth_that_may_be_a_secret_is_not_echoed() -> None:
    issues = issues_of(BASE.replace("auth: {mode: none}", "auth: Zq8-s3cr3t-T0ken"))
    issue = issue_at(issues, "origins[1].auth")
    assert "Zq8" not in str(issue)
    assert issue.message == "auth must be a mapping such as {mode: anonymous}"


def test_a_bucket_written_as_a_url_names_the_bare_name() -> None:
    text = BASE.replace("bucket: old-media", "bucket: gs://old-media/photos")
    text = text.replace("name: media-new", "name: s3://media-new")
    issues = issues_of(text)
    gcs = issue_at(issues, "origins[0].bucket")
    assert gcs.message == "write a bucket name, without gs:// or a path: old-media"
    assert "s3://" in issue_at(issues, "bucket.name").message
    s3 = BASE + "  - {name: s3old, type: s3, bucket: 's3://old-s3', region: eu-west-1}\n"
    assert issue_at(issues_of(s3), "origins[2].bucket").message.endswith(": old-s3")
