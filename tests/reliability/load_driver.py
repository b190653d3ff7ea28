"""A load driver for ``backorigin serve``: many concurrent viewers, hits and misses, checked.

Used by ``test_load.py`` (a short run that asserts correctness only) and by
``benchmarks/load_serve.py`` (a longer run whose numbers go into docs/RELIABILITY.md).

Each viewer loops until the deadline, and at least ``min_rounds`` times: it asks for a key
already in S3 (a hit), a key nobody asked for yet (a miss: served from the origin and copied), or
a key missed a moment ago (a miss or, once its copy landed, a hit). Every answer must be 200 with
exactly the object's bytes. Afterwards, :func:`lost_copies` checks that every key served from the
origin ended up in S3 with the right bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class LoadReport:
    """What a run saw."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    missed: set[str] = field(default_factory=set)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        """A latency percentile in milliseconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    def summary(self) -> str:
        mean = statistics.fmean(self.latencies) * 1000 if self.latencies else 0.0
        return (
            f"{self.requests} requests in {self.seconds:.1f} s = {self.rate:.0f} req/s; "
            f"latency mean {mean:.1f} ms, p50 {self.percentile(0.5):.1f} ms, "
            f"p99 {self.percentile(0.99):.1f} ms; from S3 {self.sources['s3']}, "
            f"from the origin {self.sources['origin']}; errors {len(self.errors)}"
        )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def drive(
    base_url: str,
    hits: dict[str, str],
    misses: dict[str, str],
    *,
    clients: int = 200,
    seconds: float = 10.0,
    miss_share: float = 0.1,
    recent_share: float = 0.1,
    seed: int = 0,
    min_rounds: int = 0,
) -> LoadReport:
    """Run ``clients`` concurrent viewers against ``base_url`` for ``seconds``.

    Args:
        hits: Keys already in S3, with the sha256 of their bytes.
        misses: Keys only at the origin (asked for once each, in order), with their sha256.
        miss_share: Share of requests for a fresh miss (while fresh keys last).
        recent_share: Share of requests for a key missed earlier.
        min_rounds: Requests each viewer makes even if ``seconds`` have passed, so that a
            slow machine still runs the whole mix.
    """
    report = LoadReport()
    expected = {**hits, **misses}
    hit_keys = sorted(hits)
    fresh = iter(sorted(misses))
    recent: list[str] = []
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = loop.time()
        deadline = started + seconds

        async def viewer(number: int) -> None:
            rng = random.Random(f"{seed}:viewer:{number}")
            rounds = 0
            while loop.time() < deadline or rounds < min_rounds:
                rounds += 1
                draw = rng.random()
                key = None
                if draw < miss_share:
                    key = next(fresh, None)
                    if key is not None:
                        report.missed.add(key)
                        recent.append(key)
                elif draw < miss_share + recent_share and recent:
                    key = rng.choice(recent[-200:])
                if key is None:
                    key = rng.choice(hit_keys)
                began = time.perf_counter()
                try:
                    async with session.get(f"{base_url}/{key}") as response:
                        body = await response.read()
                        status = response.status
                        source = "origin" if response.headers.get("x-backorigin") else "s3"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    report.errors.append(f"{key}: {type(exc).__name__}: {exc}")
                    continue
                report.latencies.append(time.perf_counter() - began)
                report.sources[source] += 1
                if status != 200 or digest(body) != expected[key]:
                    report.errors.append(f"{key}: HTTP {status}, {len(body)} bytes from {source}")

        await asyncio.gather(*(viewer(n) for n in range(clients)))
        report.seconds = loop.time() - started
    return report


def lost_copies(
    stored: Callable[[str], bytes | None],
    keys: set[str],
    expected: dict[str, str],
    *,
    timeout: float = 120.0,
) -> list[str]:
    """Keys served from the origin that did not end up in S3 with the right bytes.

    Args:
        stored: Key → the bytes S3 holds (None if nothing).
    """
    pending = set(keys)
    deadline = time.monotonic() + timeout
    problems: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for key in sorted(pending):
            data = stored(key)
            if data is None:
                problems[key] = "not in S3"
                continue
            if digest(data) != expected[key]:
                problems[key] = f"wrong bytes in S3 ({len(data)})"
            else:
                problems.pop(key, None)
            pending.discard(key)
        if pending:
            time.sleep(0.5)
    return [f"{key}: {why}" for key, why in sorted(problems.items())]


def dataset(
    count: int, *, seed: int, sizes: tuple[int, int] = (1024, 64 * 1024)
) -> dict[str, bytes]:
    """``count`` objects of random sizes and bytes, keyed ``load/NNNNN-xxxx.bin``."""
    rng = random.Random(f"{seed}:dataset")
    return {
        f"load/{n:05d}-{rng.getrandbits(16):04x}.bin": rng.randbytes(rng.randint(*sizes))
        for n in range(count)
    }


def run(coroutine: Any) -> LoadReport:
    result: LoadReport = asyncio.run(coroutine)
    return result
