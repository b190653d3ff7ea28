"""deployability_problems and `backorigin validate --deploy`: what CloudFront would refuse at run
time is found before deploy, for the origins CloudFront reaches; loading never refuses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backorigin.cloudfront_rules import DISALLOWED_HEADERS, READ_ONLY_ORIGIN_REQUEST
from backorigin.config import Problem, deployability_problems, load_config

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*/backorigin.yaml"))
BUCKET = "bucket: {name: media-new, region: eu-west-1}\n"


def problems_of(origins: str, routes: str = "") -> list[Problem]:
    # Loading succeeds: serve and tests use origins on 127.0.0.1.
    config = load_config(BUCKET + "origins:\n" + origins + (f"routes:\n{routes}" if routes else ""))
    return deployability_problems(config)


def http(name: str, url: str, auth: str = "{mode: none}") -> str:
    return f"  - {{name: {name}, type: http, base_url: '{url}', auth: {auth}}}\n"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_the_examples_are_deployable(path: Path) -> None:
    assert deployability_problems(load_config(path)) == []


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/", "https://10.1.2.3/", "http://[::1]:9000/", "http://localhost/"],
)
def test_ip_literal_and_local_hosts(url: str) -> None:
    (problem,) = problems_of(http("web", url))
    assert problem.path == "origins[0].base_url"
    assert problem.message.startswith("not deployable: ")
    assert "DNS name" in problem.message


@pytest.mark.parametrize(
    ("url", "bad"),
    [
        ("http://old.example.com/", False),
        ("https://old.example.com/", False),
        ("http://old.example.com:443/", False),
        ("http://old.example.com:1024/", False),
        ("https://old.example.com:65535/", False),
        ("http://old.example.com:8080/", False),
        ("http://old.example.com:22/", True),
        ("https://old.example.com:1023/", True),
        ("http://old.example.com:81/", True),
    ],
)
def test_ports(url: str, bad: bool) -> None:
    problems = problems_of(http("web", url))
    assert [p.path for p in problems] == (["origins[0].base_url"] if bad else [])
    if bad:
        assert "80, 443 or 1024-65535" in problems[0].message


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("X-Amz-Cf-Origin", "disallowed"),
        ("X-Edge-Location", "disallowed"),
        ("Proxy-Authorization", "disallowed"),
        ("Upgrade", "disallowed"),
        ("X-Forwarded-Proto", "disallowed"),
        ("X-Real-IP", "disallowed"),
        ("Via", "read-only"),
        ("X-Api-Key", None),
        ("Authorization", None),
    ],
)
def test_header_names_of_headers_auth(header: str, kind: str | None) -> None:
    auth = f"{{mode: headers, headers: {{{header}: {{secret: {{env: K}}}}}}}}"
    problems = problems_of(http("web", "https://old.example.com/", auth))
    if kind is None:
        assert problems == []
        return
    (problem,) = problems
    assert problem.path == f"origins[0].auth.headers.{header}"
    assert kind in problem.message
    assert "502" in problem.message


def test_the_lists_are_cloudfronts() -> None:
    """A few names from each list of CloudFront's "Restrictions on edge functions" page."""
    assert {"x-accel-redirect", "x-amzn-requestid", "keep-alive"} <= DISALLOWED_HEADERS
    assert {
        "if-none-match",
        "accept-encoding",
        "via",
    } <= READ_ONLY_ORIGIN_REQUEST


def test_only_origins_cloudfront_reaches_are_checked() -> None:
    origins = (
        http("web", "https://old.example.com/")
        + http("lab", "http://127.0.0.1:8080/")
        + http("copy-only", "http://10.0.0.5:22/")
    )
    routes = (
        "  - {prefix: 'lab/', origin: lab}\n  - {prefix: '', origin: web, fallback: [copy-only]}\n"
    )
    assert [p.path for p in problems_of(origins, routes)] == ["origins[1].base_url"]
    # Without routes, only the first origin is CloudFront's.
    assert (
        problems_of(http("web", "https://old.example.com/") + http("b", "http://10.0.0.5/")) == []
    )


def test_every_origin_type_names_its_url_field() -> None:
    origins = (
        "  - {name: g, type: gcs, bucket: old-media, endpoint_url: 'http://127.0.0.1:4443'}\n"
        "  - {name: a, type: azure, account_url: 'http://127.0.0.1:10000/devstoreaccount1', "
        "container: media}\n"
        "  - {name: s, type: s3, bucket: old, endpoint_url: 'http://127.0.0.1:8333', "
        "auth: {mode: anonymous}}\n"
        "  - {name: g2, type: gcs, bucket: old-media}\n"
    )
    routes = "".join(f"  - {{prefix: '{n}/', origin: {n}}}\n" for n in ("g", "a", "s", "g2"))
    assert [p.path for p in problems_of(origins, routes)] == [
        "origins[0].endpoint_url",
        "origins[1].account_url",
        "origins[2].endpoint_url",
    ]


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backorigin.cli", "validate", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_validate_warns_and_validate_deploy_fails(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(BUCKET + "origins:\n" + http("web", "http://127.0.0.1:8080/"))
    plain = run_validate(str(path))
    assert plain.returncode == 0
    assert plain.stdout == "ok\n"
    assert plain.stderr.startswith("warning: origins[0].base_url: not deployable: ")
    strict = run_validate("--deploy", str(path))
    assert strict.returncode == 2
    assert strict.stdout == ""
    assert strict.stderr.startswith("error: origins[0].base_url: not deployable: ")
    good = run_validate("--deploy", str(EXAMPLES[0]))
    assert (good.returncode, good.stdout, good.stderr) == (0, "ok\n", "")
