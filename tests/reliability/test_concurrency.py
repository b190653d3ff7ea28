"""Concurrency: a hundred copiers of one missing key, and a hundred viewers of one miss.

* 100 threads, each with a copy engine of its own (as in 100 fetcher workers of one process),
  copy one missing 64 MiB key at once; then 100 processes (forked from a server that loaded
  the code once, each with its own S3 client) do the same with another key. Either way the
  origin serves the object's bytes exactly once, one copier reports ``copied``, every other one
  ``in_progress`` or ``exists``, and S3 ends up with the exact bytes, no upload and no lease.
* 100 concurrent GETs of one missing key through ``LocalCloudFront`` all get the correct body,
  and exactly one copy is made.
"""

from __future__ import annotations

import base64
import hashlib
import queue
import random
import threading
from collections import Counter

import urllib3
from reliability_support import SEED, Lab, MiB, child_copy, forkserver_context

from backorigin.local import LocalCloudFront
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.lease import lease_key

COPIERS = 100
SIZE = 64 * MiB
ALLOWED = {CopyOutcome.COPIED.value, CopyOutcome.IN_PROGRESS.value, CopyOutcome.EXISTS.value}


def hot_object(lab: Lab, key: str) -> bytes:
    data = random.Random(f"{SEED}:concurrency:{key}").randbytes(SIZE)
    md5 = hashlib.md5(data).digest()  # stated, so the single copier also checks it whole
    lab.origin.put(key, data, headers={"Content-MD5": base64.b64encode(md5).decode()})
    return data


def check_one_copy(lab: Lab, key: str, data: bytes, outcomes: list[str]) -> None:
    counted = Counter(outcomes)
    assert len(outcomes) == COPIERS, counted
    assert counted["copied"] == 1, counted
    assert set(counted) <= ALLOWED, counted
    assert lab.origin.bytes_served(key) == len(data), (
        f"the origin served {lab.origin.bytes_served(key)} bytes of a {len(data)}-byte object"
    )
    pinned = [r for r in lab.origin.requests(key) if r.method == "GET" and "if-match" in r.headers]
    assert len(pinned) == -(-len(data) // (16 * MiB)), "each part was read once"
    stored = lab.checker.stored(key)
    assert stored is not None
    assert stored[0] == data
    assert lab.checker.open_uploads(key) == []
    assert lab.checker.lease(key) is None


def test_a_hundred_threads_copy_one_missing_key_once(lab: Lab) -> None:
    key = "concurrency/threads.bin"
    data = hot_object(lab, key)
    config = lab.config(copy={"part_size": "16MiB", "concurrency": 4})
    client = lab.client(lab.s3_url, max_pool_connections=COPIERS + 16)
    engines = [CopyEngine(config, s3_client=client) for _ in range(COPIERS)]
    barrier = threading.Barrier(COPIERS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def copier(engine: CopyEngine) -> None:
        barrier.wait(timeout=60)
        result = engine.copy(key)
        with lock:
            outcomes.append(result.outcome.value)

    threads = [threading.Thread(target=copier, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for engine in engines:
        engine.close()
    check_one_copy(lab, key, data, outcomes)


def test_a_hundred_processes_copy_one_missing_key_once(lab: Lab) -> None:
    key = "concurrency/processes.bin"
    data = hot_object(lab, key)
    text = lab.text(copy={"part_size": "16MiB", "concurrency": 4})
    with forkserver_context() as context:
        barrier = context.Barrier(COPIERS)
        results = context.Queue()
        processes = [
            context.Process(
                target=child_copy,
                args=(text, key, lab.access_key, lab.secret_key, barrier, results),
            )
            for _ in range(COPIERS)
        ]
        for process in processes:
            process.start()
        outcomes: list[str] = []
        pids: set[int] = set()
        try:
            for _ in range(COPIERS):
                pid, outcome, reason = results.get(timeout=300)
                pids.add(pid)
                outcomes.append(outcome if outcome in ALLOWED else f"{outcome}: {reason}")
        except queue.Empty:
            pass
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()
    assert len(pids) == COPIERS, "every copier is a process of its own"
    check_one_copy(lab, key, data, outcomes)


def test_a_hundred_concurrent_gets_through_serve_make_one_copy(lab: Lab) -> None:
    """One missing 8 MiB key (two parts); the viewers' requests collapse into one origin GET
    (CloudFront's request collapsing), every viewer gets the whole body, one copy is made."""
    key = "concurrency/serve.bin"
    data = random.Random(f"{SEED}:serve").randbytes(8 * MiB)
    lab.origin.put(key, data)
    config = lab.config()
    viewers = 100
    bodies: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    pool = urllib3.PoolManager(maxsize=viewers)
    with LocalCloudFront(config, s3_client=lab.direct, port=0, workers=2) as server:
        barrier = threading.Barrier(viewers)

        def viewer() -> None:
            barrier.wait(timeout=60)
            response = pool.request("GET", f"{server.url}/{key}", retries=False, timeout=120)
            with lock:
                bodies.append((response.status, response.data))

        threads = [threading.Thread(target=viewer) for _ in range(viewers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert server.queue.join(timeout=120), "the copy did not finish"
        copies = [c for c in server.copies if c.key == key]
    assert len(bodies) == viewers
    wrong = [(status, len(body)) for status, body in bodies if (status, body) != (200, data)]
    assert wrong == [], wrong[:5]
    assert [c.outcome for c in copies] == [CopyOutcome.COPIED], copies
    stored = lab.checker.stored(key)
    assert stored is not None
    assert stored[0] == data
    assert lab.checker.open_uploads(key) == []
    assert lab.s3.list_objects_v2(Bucket=lab.bucket, Prefix=lease_key("", key)).get("KeyCount") in (
        0,
        None,
    )
    # Viewers' misses collapsed into few origin GETs; the copy read each part once more.
    viewer_gets = [r for r in lab.origin.requests(key) if "if-match" not in r.headers]
    print(f"{len(viewer_gets)} origin GETs served {viewers} viewers")
    assert len(viewer_gets) < viewers / 2, f"{len(viewer_gets)} viewer GETs reached the origin"
