"""Bulk copy of many small objects: ``backorigin prewarm`` against ``rclone copy``, one run.

The same N objects (2,000 x 64 KiB by default) sit on a local HTTP origin
(``origin_server.py``, aiohttp's sendfile-backed FileResponse, in its own process); each
variant copies the whole set into a fresh bucket of one local SeaweedFS (S3 auth on), one
after the other, round by round (rotated order), with a ``sync`` and a short pause before each:

* ``backorigin``  ``backorigin prewarm CONFIG --keys KEYS --concurrency N`` (the command as
                  shipped: worker threads through the copy engine);
* ``rclone``      ``rclone copy :http: :s3:BUCKET --files-from KEYS --no-traverse
                  --transfers N --checkers N``.

Every variant is timed as a whole process (start-up included; rclone starts in ~50 ms, a
Python CLI in ~0.5 s, reported separately). Each run's client CPU, SeaweedFS CPU, origin CPU
and the machine's busy cores are recorded, since on a 2-core machine they explain the result.
Every object is checked afterwards (all present, every size, and the MD5 of every object
against the source), outside the timing; the bucket is then emptied.

Then, untimed, each variant copies a sample of the objects (``--count-sample``, 200 by default)
once more through two counting proxies (``counting_proxy.py``), one in front of the origin and
one in front of SeaweedFS, and the report gives the requests per object on each side, by kind.

Nothing here asserts a timing: it measures and reports Markdown (stdout, ``--markdown-out``,
or appended as the ``## Prewarm`` section of ``benchmarks/RESULTS.md`` with
``--append-results``).

Example::

    .venv/bin/python benchmarks/prewarm_bench.py --objects 2000 --size 64KiB --rounds 3 \\
        --concurrency 16 --append-results
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from counting_proxy import CountingProxy, s3_kind

from backorigin.config.units import parse_size
from backorigin.local.embedded_s3 import EmbeddedS3

HERE = Path(__file__).resolve().parent
ORIGIN_SERVER = HERE / "origin_server.py"
RESULTS = HERE / "RESULTS.md"
ACCESS_KEY = "benchmark"
SECRET_KEY = "benchmark-secret-key"  # noqa: S105 - a throwaway identity of a local server
TICKS = os.sysconf("SC_CLK_TCK")
VARIANTS = ("backorigin", "rclone")


# --- measurements -------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_ticks() -> tuple[int, int]:
    """(total, idle) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


@dataclass(slots=True)
class Run:
    """One measured run of one variant."""

    variant: str
    round: int
    seconds: float
    client_cpu: float
    server_cpu: float
    origin_cpu: float
    cores_busy: float
    load_before: float
    inner_seconds: float | None
    verified: str

    def objects_per_s(self, objects: int) -> float:
        return objects / self.seconds


# --- the set of objects and the servers ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dataset:
    """The objects at the origin: keys, their files, their MD5s."""

    keys: list[str]
    size: int
    md5: dict[str, str]
    key_file: Path
    routes_file: Path


def make_dataset(workdir: Path, objects: int, size: int) -> Dataset:
    """Write ``objects`` random files of ``size`` bytes, the key list and the origin's routes."""
    root = workdir / "origin"
    keys = [f"set/{i % 50:02d}/object-{i:05d}.bin" for i in range(objects)]
    routes: dict[str, dict[str, Any]] = {}
    md5: dict[str, str] = {}
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        md5[key] = hashlib.md5(data).hexdigest()  # noqa: S324 - a checksum
        routes[key] = {"file": str(path), "headers": {"Content-Type": "application/octet-stream"}}
    key_file = workdir / "keys.txt"
    key_file.write_text("".join(k + "\n" for k in keys))
    routes_file = workdir / "routes.json"
    routes_file.write_text(json.dumps(routes))
    return Dataset(keys, size, md5, key_file, routes_file)


class Origin:
    """``origin_server.py`` in its own process."""

    def __init__(self, routes_file: Path) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, str(ORIGIN_SERVER), str(routes_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the origin did not start: {line!r}")
        self.url = line.split()[1]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def s3_client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=BotoConfig(
            s3={"addressing_style": "path"},
            max_pool_connections=16,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


# --- the variants -------------------------------------------------------------------------------


def write_config(path: Path, bucket: str, s3_url: str, origin_url: str) -> Path:
    path.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{s3_url}', region: us-east-1}}\n"
        f"origins:\n  - {{name: web, type: http, base_url: '{origin_url}'}}\n"
    )
    return path


def command(
    variant: str,
    *,
    workdir: Path,
    bucket: str,
    s3_url: str,
    origin_url: str,
    dataset: Dataset,
    concurrency: int,
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of one run."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if variant == "rclone":
        env.pop("AWS_CA_BUNDLE", None)  # rclone (Go) chokes on the machine's bundle
        rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or "rclone"
        argv = [
            rclone,
            "copy",
            f":http,url='{origin_url}':",
            f":s3,provider=Other,endpoint='{s3_url}',access_key_id={ACCESS_KEY},"
            f"secret_access_key={SECRET_KEY},region=us-east-1,force_path_style=true:{bucket}",
            "--files-from",
            str(dataset.key_file),
            "--no-traverse",
            "--transfers",
            str(concurrency),
            "--checkers",
            str(concurrency),
            "--stats",
            "0",
        ]
        return argv, env
    config = write_config(workdir / f"{bucket}.yaml", bucket, s3_url, origin_url)
    if variant == "backorigin":
        script = shutil.which("backorigin", path=str(Path(sys.executable).parent))
        assert script, "backorigin is not installed next to the interpreter"
        argv = [
            script,
            "prewarm",
            str(config),
            "--keys",
            str(dataset.key_file),
            "--concurrency",
            str(concurrency),
        ]
        if PROFILE_DIR is not None:
            # Sampled by py-spy while holding the GIL (collapsed stacks): where the client's
            # CPU goes. py-spy's own CPU then counts as the client's.
            spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
            out = PROFILE_DIR / f"{bucket}.txt"
            argv = [
                spy,
                "record",
                "--rate",
                "250",
                "--gil",
                "--format",
                "raw",
                "-o",
                str(out),
                "--",
                *argv,
            ]
        return argv, env
    raise ValueError(f"unknown variant {variant!r}")


def measure(
    variant: str,
    round_number: int,
    *,
    workdir: Path,
    s3: Any,
    seaweed: EmbeddedS3,
    origin: Origin,
    dataset: Dataset,
    concurrency: int,
) -> Run:
    bucket = f"bench-{variant}-{round_number}-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    argv, env = command(
        variant,
        workdir=workdir,
        bucket=bucket,
        s3_url=seaweed.url,
        origin_url=origin.url,
        dataset=dataset,
        concurrency=concurrency,
    )
    os.sync()
    time.sleep(2)
    load = os.getloadavg()[0]
    assert seaweed.process is not None
    server_before = process_cpu(seaweed.process.pid)
    origin_before = process_cpu(origin.process.pid)
    ticks_before = machine_ticks()
    started = time.monotonic()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603
    out, err = child.communicate()
    seconds = time.monotonic() - started
    ticks_after = machine_ticks()
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN, so wait4 is not
    # available any more: read the delta of the children's totals instead.
    client_cpu = _children_cpu_delta()
    server_cpu = process_cpu(seaweed.process.pid) - server_before
    origin_cpu = process_cpu(origin.process.pid) - origin_before
    total = ticks_after[0] - ticks_before[0]
    idle = ticks_after[1] - ticks_before[1]
    cores = (os.cpu_count() or 1) * (1 - idle / total) if total else 0.0
    if child.returncode != 0:
        tail = f"{out.decode()[-2000:]}\n{err.decode()[-2000:]}"
        raise RuntimeError(f"{variant} failed ({child.returncode}):\n{tail}")
    inner = _inner_seconds(variant, out.decode())
    verified = verify(s3, bucket, dataset)
    empty(s3, bucket)
    return Run(
        variant,
        round_number,
        seconds,
        client_cpu,
        server_cpu,
        origin_cpu,
        cores,
        load,
        inner,
        verified,
    )


_CHILDREN_CPU = [0.0]


def _children_cpu_delta() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    delta = total - _CHILDREN_CPU[0]
    _CHILDREN_CPU[0] = total
    return delta


def _inner_seconds(variant: str, stdout: str) -> float | None:
    """The copy time a Python variant reports itself (start-up and imports excluded)."""
    if variant == "backorigin":
        match = re.search(r"^\s+seconds\s+([\d.]+)\s*$", stdout, re.M)
        return float(match.group(1)) if match else None
    return None


def verify(s3: Any, bucket: str, dataset: Dataset) -> str:
    """Every object present, of the right size and MD5; raises otherwise."""
    sizes: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        sizes.update((o["Key"], o["Size"]) for o in page.get("Contents", []))
    copied = {k: v for k, v in sizes.items() if not k.startswith(".backorigin/")}
    if set(copied) != set(dataset.keys):
        raise RuntimeError(f"{bucket}: {len(copied)} of {len(dataset.keys)} objects present")
    if any(size != dataset.size for size in copied.values()):
        raise RuntimeError(f"{bucket}: an object has the wrong size")
    if len(sizes) != len(copied):
        raise RuntimeError(f"{bucket}: leases left behind")

    def md5(key: str) -> bool:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return hashlib.md5(body).hexdigest() == dataset.md5[key]  # noqa: S324 - a checksum

    with ThreadPoolExecutor(8) as pool:
        if not all(pool.map(md5, dataset.keys)):
            raise RuntimeError(f"{bucket}: an object's bytes differ from the source")
    return f"{len(copied)}/{len(dataset.keys)} present, sizes and MD5s match"


def empty(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)


# --- requests per object ------------------------------------------------------------------------


def count_requests(
    variant: str,
    *,
    workdir: Path,
    s3: Any,
    seaweed: EmbeddedS3,
    origin: Origin,
    dataset: Dataset,
    sample: int,
    concurrency: int,
) -> tuple[Counter[str], Counter[str], int]:
    """Copy ``sample`` objects through counting proxies; the origin's and S3's counts."""
    keys = dataset.keys[:sample]
    key_file = workdir / f"sample-{variant}.txt"
    key_file.write_text("".join(k + "\n" for k in keys))
    subset = Dataset(keys, dataset.size, dataset.md5, key_file, dataset.routes_file)
    bucket = f"count-{variant}-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    origin_proxy = CountingProxy(origin.url)
    s3_proxy = CountingProxy(seaweed.url, s3_kind)
    try:
        argv, env = command(
            variant,
            workdir=workdir,
            bucket=bucket,
            s3_url=s3_proxy.url.rstrip("/"),
            origin_url=origin_proxy.url,
            dataset=subset,
            concurrency=concurrency,
        )
        s3_proxy.take()  # the bucket's creation is not the tool's
        done = subprocess.run(argv, env=env, capture_output=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"{variant} failed: {done.stderr.decode()[-2000:]}")
        counted = origin_proxy.take(), s3_proxy.take()
    finally:
        origin_proxy.stop()
        s3_proxy.stop()
    verify(s3, bucket, subset)
    empty(s3, bucket)
    return counted[0], counted[1], len(keys)


def requests_table(counts: dict[str, tuple[Counter[str], Counter[str], int]]) -> list[str]:
    """Markdown: requests per object at the origin and at S3, per variant and kind."""
    lines = [
        "| variant | objects | origin requests / object | S3 requests / object | by kind |",
        "|---|---|---|---|---|",
    ]
    for variant, (at_origin, at_s3, objects) in counts.items():
        kinds = ", ".join(
            f"{kind} {n / objects:.2f}"
            for kind, n in sorted({**at_origin, **{f"S3 {k}": v for k, v in at_s3.items()}}.items())
        )
        lines.append(
            f"| {variant} | {objects} | {sum(at_origin.values()) / objects:.2f} "
            f"| {sum(at_s3.values()) / objects:.2f} | {kinds} |"
        )
    return lines


# --- report -------------------------------------------------------------------------------------


def markdown(
    runs: Sequence[Run],
    *,
    objects: int,
    size: int,
    concurrency: int,
    variants: Sequence[str],
    argv: Sequence[str],
    loads: tuple[float, float],
) -> str:
    by_variant = {v: [r for r in runs if r.variant == v] for v in variants}
    median = {v: statistics.median(r.seconds for r in rs) for v, rs in by_variant.items() if rs}
    lines = [
        "## Prewarm",
        "",
        f"`backorigin prewarm` against `rclone copy`: {objects:,} objects of {size // 1024} KiB "
        f"from a local HTTP origin into SeaweedFS, concurrency {concurrency} for both, "
        f"{len(by_variant[variants[0]])} round(s), medians; whole-process wall time.",
        "",
        "| variant | seconds | objects/s | MB/s | vs rclone | client CPU s | SeaweedFS CPU s "
        "| origin CPU s | busy cores | own timing s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rclone = median.get("rclone")
    for variant, rs in by_variant.items():
        if not rs:
            continue
        seconds = median[variant]
        ratio = f"{rclone / seconds:.2f}x" if rclone else "-"
        inner = [r.inner_seconds for r in rs if r.inner_seconds is not None]
        cells = [
            variant,
            f"{seconds:.2f}",
            f"{objects / seconds:.0f}",
            f"{objects * size / seconds / 1e6:.1f}",
            ratio,
            f"{statistics.median(r.client_cpu for r in rs):.1f}",
            f"{statistics.median(r.server_cpu for r in rs):.1f}",
            f"{statistics.median(r.origin_cpu for r in rs):.1f}",
            f"{statistics.median(r.cores_busy for r in rs):.2f}",
            f"{statistics.median(inner):.2f}" if inner else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Runs (round, variant, seconds, load average before):", ""]
    lines += [
        f"- round {r.round} {r.variant}: {r.seconds:.2f} s, load {r.load_before:.2f}; {r.verified}"
        for r in runs
    ]
    verdict = "n/a"
    if rclone and "backorigin" in median:
        ratio = rclone / median["backorigin"]
        verdict = (
            f"{'met' if ratio >= 1.0 else 'NOT met'}: backorigin prewarm runs at "
            f"{ratio:.2f}x rclone's objects/s (target >= 1.0x)"
        )
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {loads[0]:.2f} before the benchmark, "
        f"{loads[1]:.2f} after.",
        "",
        "Command:",
        "",
        "```sh",
        " ".join(shlex.quote(a) for a in argv),
        "```",
        "",
        f"Verdict: {verdict}.",
        "",
    ]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def rounds(variants: Sequence[str], count: int) -> Iterator[tuple[int, str]]:
    """Variants round by round, the order rotated each round."""
    for number in range(1, count + 1):
        shift = (number - 1) % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            yield number, variant


PROFILE_DIR: Path | None = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--size", type=parse_size, default=64 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--variants", default="backorigin,rclone")
    parser.add_argument(
        "--count-sample", type=int, default=200, help="objects per request-counting pass (0: none)"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--markdown-out", type=Path)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--append-results", action="store_true", help=f"append the section to {RESULTS}"
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        help="sample each backorigin run with py-spy --gil into this directory (collapsed "
        "stacks; CPU figures then include py-spy's)",
    )
    args = parser.parse_args()
    global PROFILE_DIR
    PROFILE_DIR = args.profile_dir
    if PROFILE_DIR is not None:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="prewarm-bench-", dir=args.workdir))
    runs: list[Run] = []
    counts: dict[str, tuple[Counter[str], Counter[str], int]] = {}
    try:
        dataset = make_dataset(workdir, args.objects, args.size)
        origin = Origin(dataset.routes_file)
        seaweed = EmbeddedS3(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        seaweed.start()
        try:
            s3 = s3_client(seaweed.url)
            _children_cpu_delta()
            for number, variant in rounds(variants, args.rounds):
                run = measure(
                    variant,
                    number,
                    workdir=workdir,
                    s3=s3,
                    seaweed=seaweed,
                    origin=origin,
                    dataset=dataset,
                    concurrency=args.concurrency,
                )
                runs.append(run)
                print(
                    f"round {number} {variant}: {run.seconds:.2f} s "
                    f"({args.objects / run.seconds:.0f} objects/s), client CPU "
                    f"{run.client_cpu:.1f} s, SeaweedFS CPU {run.server_cpu:.1f} s, "
                    f"load {run.load_before:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
            for variant in variants if args.count_sample > 0 else []:
                counts[variant] = count_requests(
                    variant,
                    workdir=workdir,
                    s3=s3,
                    seaweed=seaweed,
                    origin=origin,
                    dataset=dataset,
                    sample=args.count_sample,
                    concurrency=args.concurrency,
                )
        finally:
            seaweed.stop()
            origin.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = markdown(
        runs,
        objects=args.objects,
        size=args.size,
        concurrency=args.concurrency,
        variants=variants,
        argv=[".venv/bin/python", "benchmarks/prewarm_bench.py", *sys.argv[1:]],
        loads=(load_before, os.getloadavg()[0]),
    )
    if counts:
        report += "\n".join(
            [
                "",
                "Requests per object (an untimed pass through counting proxies, "
                f"{args.count_sample} objects each):",
                "",
                *requests_table(counts),
                "",
            ]
        )
    print(report)
    if args.markdown_out:
        args.markdown_out.write_text(report)
    if args.json_out:
        args.json_out.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    if args.append_results:
        # One append: another section of RESULTS.md may be written by someone else meanwhile.
        with RESULTS.open("a", encoding="utf-8") as file:
            file.write("\n" + report)


if __name__ == "__main__":
    main()
