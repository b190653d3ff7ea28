"""The commands as one tool: the same option names, readable output, one step from `serve`
to `fetch`/`prewarm`/`status`/`reconcile`, and a bucket that cannot be used said once, before
any work."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import urllib3

from backorigin.config.units import format_rate
from backorigin.local.state import find_serve_state, serve_state_path
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.testing.servers import free_port

SCRIPT = shutil.which("backorigin", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert SCRIPT, "the backorigin console script is not installed"
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, check=False)


def without_credentials(tmp_path: Path) -> dict[str, str]:
    """An environment in which boto3's chain finds nothing (and asks no metadata service)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    if "AWS_CA_BUNDLE" in os.environ:
        env["AWS_CA_BUNDLE"] = os.environ["AWS_CA_BUNDLE"]
    return env


def test_rates_take_the_unit_of_their_size() -> None:
    assert format_rate(36_000, 1.0) == "36.0 KB/s"
    assert format_rate(500, 1.0) == "500 B/s"
    assert format_rate(10_400_000, 1.0) == "10.4 MB/s"
    assert format_rate(3e9, 1.0) == "3.0 GB/s"
    assert format_rate(0, 1.0) is None  # nothing moved: no rate to state
    assert format_rate(10, 0.0) is None


def test_concurrency_has_one_name_and_fetch_keeps_jobs_as_a_hidden_alias(tmp_path: Path) -> None:
    env = without_credentials(tmp_path)
    for command in ("fetch", "prewarm"):
        help_text = run(command, "--help", env=env).stdout
        assert "-j, --concurrency" in help_text
        assert "--jobs" not in help_text
    assert "-v, --verbose" in run("serve", "--help", env=env).stdout
    # --jobs still parses (the bucket check then stops the run: there are no credentials).
    config = tmp_path / "c.yaml"
    config.write_text(
        "bucket: {name: media-new, endpoint_url: 'http://127.0.0.1:9', region: us-east-1}\n"
        "origins: [{name: web, type: http, base_url: 'http://127.0.0.1:9/'}]\n"
    )
    for flag in ("--jobs", "-j", "--concurrency"):
        result = run("fetch", str(config), "k", flag, "3", env=env)
        assert "no such option" not in result.stderr
        assert result.returncode == 1


def test_every_command_without_credentials_fails_once_before_any_key(
    tmp_path: Path, origin: HttpOriginServer, seaweedfs: Any, bucket: str
) -> None:
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins: [{{name: web, type: http, base_url: '{origin.url}'}}]\n"
    )
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"k{i}.txt\n" for i in range(20)))
    origin.reset_counters()
    env = without_credentials(tmp_path)
    for args, status in (
        (("fetch", str(config), "a.txt", "b.txt"), 1),
        (("prewarm", str(config), "--keys", str(keys)), 1),
        # status and reconcile: 2, "could not be examined"
        (("status", str(config), "--keys", str(keys)), 2),
        (("reconcile", str(config), "--keys", str(keys)), 2),
    ):
        result = run(*args, env=env)
        assert result.returncode == status, result.stderr
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"cannot use bucket {bucket} at {seaweedfs.url}: ")
        assert "no AWS credentials" in lines[0]
        assert lines[0].endswith("add --local")
    assert origin.total_requests() == 0  # no key was tried


@pytest.mark.parametrize(
    ("secret", "bucket_name", "problem"),
    [
        (None, "no-such-bucket-here", "the bucket does not exist"),
        ("not-the-secret-key", None, "access is denied (HTTP 403)"),
    ],
    ids=["no-such-bucket", "wrong-secret"],
)
def test_every_command_names_a_bucket_it_cannot_use_once(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    bucket: str,
    s3_credentials: dict[str, str],
    secret: str | None,
    bucket_name: str | None,
    problem: str,
) -> None:
    name = bucket_name or bucket
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        f"bucket: {{name: {name}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins: [{{name: web, type: http, base_url: '{origin.url}'}}]\n"
    )
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"k{i}.txt\n" for i in range(20)))
    origin.reset_counters()
    env = {**without_credentials(tmp_path), **s3_credentials}
    if secret is not None:
        env["AWS_SECRET_ACCESS_KEY"] = secret
    for args, status in (
        (("fetch", str(config), "a.txt", "b.txt"), 1),
        (("prewarm", str(config), "--keys", str(keys)), 1),
        (("status", str(config), "--keys", str(keys)), 2),
        (("reconcile", str(config), "--keys", str(keys)), 2),
    ):
        result = run(*args, env=env)
        assert result.returncode == status, result.stderr
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"cannot use bucket {name} at {seaweedfs.url}: {problem}")
    assert origin.total_requests() == 0  # no key was tried


def test_fetch_prints_aligned_columns_with_a_readable_rate(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    bucket: str,
    s3_credentials: dict[str, str],
) -> None:
    origin.put("aligned/small.txt", b"x" * 3000)
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins: [{{name: web, type: http, base_url: '{origin.url}', retries: 0}}]\n"
    )
    env = {**os.environ, **s3_credentials}
    result = run(
        "fetch", str(config), "aligned/small.txt", "aligned/a-much-longer-key.bin", env=env
    )
    assert result.returncode == 1, result.stderr
    assert "\t" not in result.stdout
    copied, missing = result.stdout.splitlines()
    assert copied.split()[:4] == ["aligned/small.txt", "copied", "2.9", "KiB"]
    assert missing.split()[:2] == ["aligned/a-much-longer-key.bin", "not_found"]
    # Columns start at the same place on every line.
    assert copied.index("copied") == missing.index("not_found")
    assert copied.index(" KiB") + len(" KiB") == missing.index(" B ") + len(" B")  # sizes
    seconds = [re.search(r"\d+\.\d\ds", line) for line in (copied, missing)]
    assert seconds[0]
    assert seconds[1]
    assert seconds[0].end() == seconds[1].end()
    assert re.search(r"\(\d+(\.\d)? (B|KB|MB)/s\)$", copied), copied
    assert "0.0 MB/s" not in result.stdout
    assert "/s)" not in missing  # nothing copied: no rate
    assert missing.endswith("not found at web")


@contextmanager
def serving(config: Path, port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`backorigin serve CONFIG`, once it says it is ready for `--local` commands."""
    assert SCRIPT
    serve = subprocess.Popen(
        [SCRIPT, "serve", str(config), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    said: list[str] = []
    try:
        assert serve.stderr is not None
        for line in serve.stderr:
            said.append(line)
            if line.startswith("copy into it now: backorigin fetch --local"):
                break
        else:
            pytest.fail(f"serve exited with {serve.wait()}: {''.join(said)}")
        yield serve
    finally:
        serve.terminate()
        serve.wait(timeout=90)


def test_serve_then_fetch_and_prewarm_local_in_one_step(
    tmp_path: Path, origin: HttpOriginServer
) -> None:
    origin.put("local/one.txt", b"one")
    origin.put("local/two.txt", b"two" * 100)
    config = tmp_path / "site.yaml"
    # No bucket endpoint: serve starts its embedded S3 server with credentials of its own.
    config.write_text(
        "bucket: {name: site-local}\n"
        f"origins: [{{name: web, type: http, base_url: '{origin.url}local/'}}]\n"
    )
    env = without_credentials(tmp_path)  # nothing but what serve says
    port = free_port()
    with serving(config, port, env) as serve:
        state_file = serve_state_path(config, env)
        assert state_file.stat().st_mode & 0o077 == 0  # it holds a secret key
        state = find_serve_state(config, env)
        assert state is not None
        assert state.pid == serve.pid

        fetched = run("fetch", "--local", str(config), "one.txt", env=env)
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout.split()[:2] == ["one.txt", "copied"]
        keys = tmp_path / "keys.txt"
        keys.write_text("one.txt\ntwo.txt\n")
        warmed = run("prewarm", "--local", str(config), "--keys", str(keys), env=env)
        assert warmed.returncode == 0, warmed.stderr
        # Both are in serve's bucket now: served from S3, not from the origin.
        origin.reset_counters()
        hit = urllib3.request("GET", f"http://127.0.0.1:{port}/two.txt", retries=False)
        assert (hit.status, hit.data) == (200, b"two" * 100)
        assert "x-backorigin" not in hit.headers
        assert origin.total_requests() == 0
    assert not serve_state_path(config, env).exists()
    after = run("fetch", "--local", str(config), "one.txt", env=env)
    assert after.returncode == 2
    assert "no `backorigin serve" in after.stderr


def test_status_and_reconcile_local_compare_and_fill_the_bucket_of_serve(
    tmp_path: Path, origin: HttpOriginServer
) -> None:
    origin.put("walk/one.txt", b"one")
    origin.put("walk/two.txt", b"two" * 100)
    config = tmp_path / "site.yaml"
    config.write_text(
        "bucket: {name: site-walk}\n"
        f"origins: [{{name: web, type: http, base_url: '{origin.url}walk/'}}]\n"
    )
    keys = tmp_path / "keys.txt"
    keys.write_text("one.txt\ntwo.txt\n")
    env = without_credentials(tmp_path)  # nothing but what serve says
    port = free_port()

    def status() -> tuple[int, dict[str, Any]]:
        result = run("status", "--local", str(config), "--keys", str(keys), "--json", env=env)
        assert result.returncode in (0, 1), result.stderr
        return result.returncode, json.loads(result.stdout)

    with serving(config, port, env):
        code, before = status()
        assert code == 1
        assert before["classes"]["missing"] == {"objects": 2, "bytes": 303}
        reconciled = run("reconcile", "--local", str(config), "--keys", str(keys), env=env)
        assert reconciled.returncode == 0, reconciled.stderr
        code, after = status()
        assert code == 0
        assert after["complete"] is True
        assert after["classes"]["migrated"] == {"objects": 2, "bytes": 303}
        # The copies are in serve's bucket: served from S3, not from the origin.
        origin.reset_counters()
        hit = urllib3.request("GET", f"http://127.0.0.1:{port}/two.txt", retries=False)
        assert (hit.status, hit.data) == (200, b"two" * 100)
        assert "x-backorigin" not in hit.headers
        assert origin.total_requests() == 0
    gone = run("status", "--local", str(config), "--keys", str(keys), env=env)
    assert gone.returncode == 2
    assert "no `backorigin serve" in gone.stderr
    queued = run("reconcile", "--local", str(config), "--queue-url", "http://q", env=env)
    assert queued.returncode == 2
    assert "--queue-url" in queued.stderr


def test_prewarm_without_a_terminal_prints_no_bar(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    bucket: str,
    s3_credentials: dict[str, str],
) -> None:
    for i in range(5):
        origin.put(f"bar/{i}.txt", b"y" * 100)
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins: [{{name: web, type: http, base_url: '{origin.url}bar/'}}]\n"
    )
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"{i}.txt\n" for i in range(5)))
    result = run("prewarm", str(config), "--keys", str(keys), env={**os.environ, **s3_credentials})
    assert result.returncode == 0, result.stderr
    assert "━" not in result.stderr + result.stdout  # no bar, live or final
    assert "ETA" not in result.stderr
    assert re.search(r"rate\s+\d+(\.\d)? (B|KB)/s", result.stdout), result.stdout
