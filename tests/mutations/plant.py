"""Plant known bugs, one at a time, in a copy of the repository and report which the tests catch.

Each plant is a small textual change to one function of ``src/`` that reintroduces a bug the
suite must never let through (an SSRF check skipped, credentials leaked on a redirect, a
create-only write that overwrites, an upload without its checksum, …). For every plant the
script runs the test files that guard that code, in the copy, and prints a table: caught or
not, and which tests failed.

The repository itself is never modified: the committed tree (``git archive HEAD``, or the
working files with ``--worktree``) is extracted into a temporary directory, the copy's
``src`` is put first on ``PYTHONPATH`` (ahead of the virtualenv's editable install, which is
checked), each plant is applied and undone there, and the directory is removed at the end.

Usage::

    .venv/bin/python tests/mutations/plant.py              # every plant, once
    .venv/bin/python tests/mutations/plant.py --rounds 2   # caught only if caught every time
    .venv/bin/python tests/mutations/plant.py --only put-new-overwrites dot-keys-accepted
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HTTP = "src/backorigin/adapters/http.py"
BUCKET = "src/backorigin/transfer/bucket.py"
CRT_PUT = "src/backorigin/transfer/crt_put.py"
KEYS = "src/backorigin/keys.py"

HTTP_TESTS = ("tests/adapters/test_http_adapter.py", "tests/reliability/test_hostile_input.py")
WRITE_TESTS = ("tests/transfer",)


class PlantFailed(Exception):
    """The code no longer has the shape a plant expects (say so instead of guessing)."""


def function_span(text: str, name: str) -> tuple[int, int]:
    """Start and end offsets of ``def name(`` and its body (up to the next def or class
    at the same or a lower indentation)."""
    match = re.search(rf"^(?P<indent>[ \t]*)def {re.escape(name)}\(", text, re.MULTILINE)
    if match is None:
        raise PlantFailed(f"no function {name}()")
    indent = len(match.group("indent"))
    # The body ends at the next line that starts a statement at the def's depth or less
    # (a multi-line signature's closing ")" line does not).
    following = re.compile(rf"^[ \t]{{0,{indent}}}[A-Za-z_@#]", re.MULTILINE)
    end = following.search(text, text.index("\n", match.end()) + 1)
    return match.start(), end.start() if end else len(text)


def in_function(name: str, pattern: str, replacement: str) -> Callable[[str], str]:
    """A mutation: ``re.sub(pattern, replacement)`` inside function ``name`` only; at least
    one match is required."""

    def mutate(text: str) -> str:
        start, end = function_span(text, name)
        body, count = re.subn(pattern, replacement, text[start:end])
        if count == 0:
            raise PlantFailed(f"{pattern!r} not found in {name}()")
        return text[:start] + body + text[end:]

    return mutate


@dataclass(frozen=True)
class Plant:
    """One deliberate bug: where it goes, how, and which test files must catch it."""

    id: str
    bug: str
    path: str
    mutate: Callable[[str], str]
    tests: tuple[str, ...]


PLANTS = [
    Plant(
        "redirect-check-first-hop-only",
        "the SSRF check judges the first redirect only; later hops are just looked up",
        HTTP,
        in_function(
            "_send",
            r"approved = check_redirect\(",
            "approved = list(self._lookup(target, what)) if _hop else check_redirect(",
        ),
        HTTP_TESTS,
    ),
    Plant(
        "credentials-on-downgrade",
        "auth headers still sent after an https -> http redirect to the same host",
        HTTP,
        in_function("_trusted", r"return not \([^\n]*\)", "return True"),
        HTTP_TESTS,
    ),
    Plant(
        "credentials-to-other-host",
        "auth headers sent after a redirect to another (allowed) host",
        HTTP,
        in_function("_trusted", r"\n[ \t]+if [^\n]*hostname[^\n]*:\n[ \t]+return False", ""),
        HTTP_TESTS,
    ),
    Plant(
        "connect-by-name",
        "the connection looks the host name up again instead of using the checked address",
        HTTP,
        in_function(
            "_open_socket", r"\(address, connection\.port\)", "(connection.host, connection.port)"
        ),
        HTTP_TESTS,
    ),
    Plant(
        "put-new-overwrites",
        "put_new without If-None-Match: *",
        BUCKET,
        in_function("put_new", r'\s*["\']?IfNoneMatch["\']?\s*[:=]\s*"\*",?', ""),
        WRITE_TESTS,
    ),
    Plant(
        "complete-new-overwrites",
        "complete_new without If-None-Match: *",
        BUCKET,
        in_function("complete_new", r'\s*IfNoneMatch="\*",?', ""),
        WRITE_TESTS,
    ),
    Plant(
        "put-without-crc32c",
        "PutObject sent without its CRC32C",
        BUCKET,
        in_function("put_new", r'["\']?ChecksumCRC32C["\']?\s*[:=]\s*_b64\(crc32c\),?', ""),
        WRITE_TESTS,
    ),
    Plant(
        "part-without-crc32c",
        "UploadPart sent without its CRC32C",
        BUCKET,
        in_function("upload_part", r'["\']?ChecksumCRC32C["\']?\s*[:=]\s*_b64\(crc32c\),?', ""),
        WRITE_TESTS,
    ),
    Plant(
        "probe-answers-every-put",
        "the CRT putter's URL probe answers any PutObject on the shared client, not only its own",
        CRT_PUT,
        in_function("answer", r"\n[ \t]+if urlsplit\(url\)[^\n]*\n[ \t]+return None", ""),
        ("tests/transfer/test_crt_put.py",),
    ),
    Plant(
        "probe-handler-shared-name",
        "every URL probe registers its handler under one name (botocore keeps the first only)",
        CRT_PUT,
        in_function("_put_url", r'f"backorigin-put-url-\{probe\}"', '"backorigin-put-url"'),
        ("tests/transfer/test_crt_put.py",),
    ),
    Plant(
        "dot-keys-accepted",
        "keys with '.' or '..' segments accepted (S3 would store them; SeaweedFS says 400)",
        KEYS,
        in_function("validate_key", r"if any\(segment in", "if False and any(segment in"),
        # The engine-side test on its own (the edge's escape tests catch this plant as well).
        (
            "tests/reliability/test_hostile_input.py"
            "::test_dot_segment_and_backslash_keys_are_refused_without_a_request",
        ),
    ),
    Plant(
        "rewrite-error-not-invalid-key",
        "a rewrite that makes a key invalid raises ValueError instead of InvalidKey",
        KEYS,
        in_function("rewrite", r"raise InvalidKey\(", "raise ValueError("),
        ("tests/prewarm/test_prewarm_routing.py",),
    ),
]


# --- running ------------------------------------------------------------------------------


def extract(into: Path, *, worktree: bool) -> None:
    """The repository's files, without touching the repository."""
    if worktree:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True
        ).stdout.split(b"\0")
        for name in filter(None, listed):
            source = ROOT / name.decode()
            if source.is_file():
                target = into / name.decode()
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        return
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy / "src"), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a planted file and its restored twin never mix
    return env


def imported_from(copy: Path) -> str:
    """Where ``backorigin`` is imported from in the copy's environment."""
    done = subprocess.run(
        [sys.executable, "-c", "import backorigin; print(backorigin.__file__)"],
        cwd=copy,
        env=environment(copy),
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@dataclass
class Run:
    returncode: int
    failed: list[str]
    summary: str
    seconds: float


def run_tests(copy: Path, files: Sequence[str], *, maxfail: int) -> Run:
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *files,
            "-q",
            "-rfE",
            "--no-header",
            "-p",
            "no:cacheprovider",
            f"--maxfail={maxfail}",
        ],
        cwd=copy,
        env=environment(copy),
        capture_output=True,
        text=True,
    )
    lines = done.stdout.splitlines()
    failed = [
        line.split(" ", 1)[1].split(" - ", 1)[0]
        for line in lines
        if line.startswith(("FAILED ", "ERROR "))
    ]
    summary = next((line for line in reversed(lines) if line.strip()), "")
    return Run(done.returncode, failed, summary, time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="*", help="plant ids to run (default: all)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per plant (default 1)")
    parser.add_argument("--maxfail", type=int, default=3, help="stop a run after N failures")
    parser.add_argument("--worktree", action="store_true", help="copy the working files, not HEAD")
    args = parser.parse_args(argv)
    plants = [p for p in PLANTS if not args.only or p.id in args.only]
    if args.only and len(plants) != len(args.only):
        parser.error(f"unknown plant id; known: {', '.join(p.id for p in PLANTS)}")

    with tempfile.TemporaryDirectory(prefix="backorigin-plants-") as tmp:
        copy = Path(tmp)
        extract(copy, worktree=args.worktree)
        where = imported_from(copy)
        print(f"copy: {copy} ({'working files' if args.worktree else 'HEAD'})")
        print(f"backorigin imported from: {where}")
        if not where.startswith(str(copy / "src")):
            print("the copy's package is not the one imported; refusing to go on")
            return 2
        files = sorted({f for p in plants for f in p.tests})
        baseline = run_tests(copy, files, maxfail=args.maxfail)
        print(f"baseline (nothing planted): {baseline.summary} [{baseline.seconds:.0f}s]")
        if baseline.returncode != 0:
            print("the tests fail without any plant: " + ", ".join(baseline.failed))
            return 2

        rows: list[tuple[str, str, str, str, str]] = []
        for plant in plants:
            target = copy / plant.path
            original = target.read_text()
            try:
                planted = plant.mutate(original)
            except PlantFailed as exc:
                rows.append((plant.id, plant.bug, ", ".join(plant.tests), "NOT PLANTED", str(exc)))
                continue
            target.write_text(planted)
            try:
                runs = [
                    run_tests(copy, plant.tests, maxfail=args.maxfail) for _ in range(args.rounds)
                ]
            finally:
                target.write_text(original)
            caught = [r.returncode == 1 and bool(r.failed) for r in runs]
            if all(caught):
                verdict = "yes" if args.rounds == 1 else f"yes ({args.rounds}/{args.rounds})"
            elif any(caught):
                verdict = f"FLAKY ({sum(caught)}/{len(caught)})"
            else:
                verdict = "NO" if all(r.returncode == 0 for r in runs) else "ERROR"
            failed = sorted({name for r in runs for name in r.failed})
            detail = "; ".join(failed) if failed else runs[-1].summary
            rows.append((plant.id, plant.bug, ", ".join(plant.tests), verdict, detail))
            print(f"  {plant.id}: {verdict} [{sum(r.seconds for r in runs):.0f}s]", flush=True)

    print()
    print("| plant | bug | test files run | caught | failing tests |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return 0 if all(row[3].startswith("yes") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
