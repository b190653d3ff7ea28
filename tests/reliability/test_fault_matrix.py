"""The fault matrix: the copy path under seeded, reproducible faults, one trial per test id.

Every trial draws its object (size, bytes, digest headers) and its fault from
``random.Random("<seed>:<category>:<index>")`` and ends with the same invariant, checked on the
real S3 server: S3 holds exactly the bytes of the version the copy reports (the origin's, or a
competing writer's when the copy says ``exists``) or nothing; no multipart upload is left
open; no lease is left behind; and where the copy resumes, the origin served at most 1.1 x
the object's size. Set ``BACKORIGIN_RELIABILITY_SEED`` to explore other trials.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import zlib
from typing import Any

import pytest
from reliability_support import (
    PART,
    Fault,
    Invariant,
    Lab,
    MiB,
    child_copy,
    forkserver_context,
    object_size,
    origin_etag,
    trial,
    wait_for_expiry,
    wait_until,
)

from backorigin.testing.http_origin import Hold
from backorigin.transfer import CopyEngine, CopyOutcome, CopyResult
from backorigin.transfer.digest import crc32c
from backorigin.transfer.plan import plan_parts

COPIED = frozenset({CopyOutcome.COPIED})
FAILED = frozenset({CopyOutcome.FAILED})
WRITTEN = frozenset({CopyOutcome.COPIED, CopyOutcome.EXISTS})
# The copier's read timeout in the stall trials. A stall lasts until the copier gives up, so
# this only needs to be short for speed and long enough that a healthy read on a busy machine
# never hits it.
STALL_TIMEOUT = "1s"


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def digest_headers(data: bytes, rng: Any) -> dict[str, str]:
    """True digest headers, in one of the forms origins use (or none)."""
    form = rng.choice(["none", "content-md5", "repr-digest", "digest", "all"])
    md5 = hashlib.md5(data).digest()
    sha = hashlib.sha256(data).digest()
    headers: dict[str, str] = {}
    if form in ("content-md5", "all"):
        headers["Content-MD5"] = b64(md5)
    if form in ("repr-digest", "all"):
        headers["Repr-Digest"] = f"sha-256=:{b64(sha)}:, md5=:{b64(md5)}:"
    if form in ("digest", "all"):
        headers["Digest"] = f"crc32c={crc32c(data):08x},SHA-256={b64(sha)}"
    return headers


def start(lab: Lab, category: str, index: int, *, multipart_share: float = 0.3) -> Any:
    """A fresh object at the origin for one trial: (rng, tag, key, data, etag)."""
    rng, tag = trial(category, index)
    size = object_size(rng, multipart_share=multipart_share)
    data = rng.randbytes(size)
    key = f"{category}/{index}-{rng.getrandbits(32):08x}.bin"
    lab.origin.put(key, data, headers=digest_headers(data, rng))
    return rng, tag, key, data, origin_etag(lab.origin.url, key)


def outcome_of_cuts(size: int, offset: int, attempts: int) -> frozenset[CopyOutcome]:
    """The outcome when every response breaks off after ``offset`` body bytes.

    Each resumed read gets ``offset`` more bytes before the next break, so a part of L bytes
    fails ceil(L / offset) - 1 times; the copy fails only if that reaches ``read_attempts``.
    """
    lengths = [p.size for p in plan_parts(size, PART)] if size > PART else [size]
    cuts = max(-(-length // offset) - 1 if offset else attempts for length in lengths)
    return FAILED if cuts >= attempts else COPIED


def run(engine: CopyEngine, key: str) -> CopyResult:
    try:
        return engine.copy(key)
    finally:
        engine.close()


# --- origin faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(50))
def test_drop_at_a_random_offset(lab: Lab, index: int) -> None:
    """The origin hangs up mid-body, once or a few times (the copy resumes) or every time."""
    rng, tag, key, data, etag = start(lab, "drop", index)
    persistent = len(data) > 0 and rng.random() < 0.25
    first_body = min(len(data), PART)
    offset = rng.randrange(max(first_body, 1))
    if persistent and rng.random() < 0.6:
        offset = rng.randrange(max(first_body // 8, 1))  # mostly short reads: these fail
    # The engine backs off 0.2 s, 0.4 s, ... between resumes of one read: few drops in a row
    # keep the suite fast, and a smaller read_attempts makes "drops forever" fail sooner.
    attempts = rng.choice([3, 3, 4])
    times = None if persistent else rng.choice([1, 1, 2, attempts - 1])
    lab.origin.drop_after(key, offset, times=times)
    result = run(lab.engine(read_attempts=attempts), key)
    lab.origin.clear_faults(key)
    expect = outcome_of_cuts(len(data), offset, attempts) if persistent else COPIED
    invariant = Invariant({etag: data}, expect=expect, resume_limit=1.1 * len(data))
    lab.checker.check(tag, key, result, invariant, served=lab.origin.bytes_served(key))


@pytest.mark.parametrize("index", range(40))
def test_5xx_and_429_bursts(lab: Lab, index: int) -> None:
    """Bursts of 500/502/503/504/429 up front or starting mid-copy; endless ones fail cleanly."""
    rng, tag, key, data, etag = start(lab, "burst", index)
    retries = rng.randint(1, 4)
    status = rng.choice([500, 502, 503, 504, 429, 429, 503])
    retry_after = rng.choice([None, "0"]) if status in (429, 503) else None
    endless = rng.random() < 0.2
    times = 1000 if endless else rng.randint(1, retries)
    if rng.random() < 0.5 or endless:
        lab.origin.fail(key, times=times, status=status, retry_after=retry_after)
    else:  # the burst starts when the k-th GET arrives (mid-copy for multipart objects)
        k = rng.randint(1, max(1, -(-len(data) // PART)))

        def burst(n: int) -> None:
            if n == k:
                lab.origin.fail(key, times=times, status=status, retry_after=retry_after)

        lab.origin.on_get(key, burst)
    result = run(lab.engine(http={"retries": retries}), key)
    lab.origin.clear_faults(key)
    invariant = Invariant(
        {etag: data},
        expect=FAILED if endless else COPIED,
        resume_limit=None if endless else len(data),  # failed requests serve no bytes
    )
    lab.checker.check(tag, key, result, invariant, served=lab.origin.bytes_served(key))


@pytest.mark.parametrize("index", range(12))
def test_stall_past_the_read_timeout(lab: Lab, index: int) -> None:
    """The origin goes quiet before the headers or mid-body, until the copier gives up on it.

    A stalled response waits at a gate that never opens: only the copier's read timeout ends
    it, so the timeout has fired whenever the copy gets past a stall.
    """
    rng, tag, key, data, etag = start(lab, "stall", index, multipart_share=0.25)
    kinds = ["headers", "headers", "body", "body", "body", "endless"]
    kind = rng.choice(kinds) if data else "headers"
    offset = 0
    if kind == "headers":
        stalled = set(rng.sample(range(1, 4), rng.randint(1, 2)))
        gate = lab.origin.hold(key, which=lambda n: n in stalled)
    elif kind == "body":
        offset = rng.randrange(min(len(data), PART))
        times = rng.randint(1, 2)
        gate = lab.origin.hold(key, which=lambda n: n <= times, after_bytes=offset)
    else:  # every response goes quiet, mostly early on
        offset = rng.randrange(max(min(len(data), PART) // rng.choice([1, 8]), 1))
        gate = lab.origin.hold(key, after_bytes=offset)
    engine = lab.engine(http={"read_timeout": STALL_TIMEOUT, "retries": 3}, read_attempts=3)
    result = run(engine, key)
    # The copier let go of every stalled response: the origin saw each connection close.
    emptied = gate.wait_empty()
    lab.origin.clear_faults(key)
    assert emptied, f"{tag}: {gate.waiting} stalled response(s) still held by the copier"
    assert gate.abandoned == gate.caught, tag
    expect = outcome_of_cuts(len(data), offset, 3) if kind == "endless" else COPIED
    invariant = Invariant({etag: data}, expect=expect, resume_limit=1.1 * len(data))
    lab.checker.check(tag, key, result, invariant, served=lab.origin.bytes_served(key))


@pytest.mark.parametrize("index", range(24))
def test_object_changed_mid_copy(lab: Lab, index: int) -> None:
    """Before the k-th GET the object is replaced (same or other size) or deleted."""
    rng, tag, key, data, etag = start(lab, "changed", index, multipart_share=0.5)
    if rng.random() < 0.3:
        lab.origin.weak_etag(key)  # pinned by Last-Modified and size instead of If-Match
        etag = "W/" + etag
    parts = max(1, -(-len(data) // PART))
    k = rng.randint(1, parts)
    change = rng.choice(["same-size", "other-size", "same-bytes", "deleted"])
    newer = {
        "same-size": rng.randbytes(len(data)),
        "other-size": rng.randbytes(rng.randint(0, len(data) + 1000)),
        "same-bytes": data,  # a new version with identical bytes still changes the validators
    }.get(change)

    changed: list[int] = []

    def change_it(n: int) -> None:
        if n == k:
            changed.append(n)
            if newer is None:
                lab.origin.delete(key)
            else:
                lab.origin.replace(key, newer)

    lab.origin.on_get(key, change_it)
    result = run(lab.engine(), key)
    lab.origin.clear_faults(key)
    if changed:
        expect = frozenset({CopyOutcome.NOT_FOUND if newer is None else CopyOutcome.FAILED})
    else:
        # The copy needed no k-th GET (an empty object is described by its HEAD and has no
        # bytes to read): the origin never changed while it was copied.
        assert not data, f"{tag}: the copy of a non-empty object read nothing"
        expect = COPIED
    lab.checker.check(tag, key, result, Invariant({etag: data}, expect=expect))
    assert result.outcome is not CopyOutcome.FAILED or "changed" in (result.reason or ""), tag


@pytest.mark.parametrize("index", range(24))
def test_lying_checksum_header(lab: Lab, index: int) -> None:
    """Content-MD5, Repr-Digest or Digest that do not match the bytes; a few true controls."""
    rng, tag, key, data, etag = start(lab, "lying", index)
    other = rng.randbytes(16) + data[:100]
    wrong_md5 = b64(hashlib.md5(other).digest())
    wrong_sha = b64(hashlib.sha256(other).digest())
    true_md5 = b64(hashlib.md5(data).digest())
    lie = rng.choice(["content-md5", "repr-sha256", "repr-md5", "digest-crc32c", "digest-sha256"])
    truthful = rng.random() < 0.2
    headers = {
        "content-md5": {"Content-MD5": wrong_md5},
        "repr-sha256": {"Repr-Digest": f"sha-256=:{wrong_sha}:, md5=:{true_md5}:"},
        "repr-md5": {"Repr-Digest": f"md5=:{wrong_md5}:"},
        "digest-crc32c": {"Digest": f"crc32c={(crc32c(data) ^ 1):08x}"},
        "digest-sha256": {"Digest": f"SHA-256={wrong_sha},crc32={zlib.crc32(data):08x}"},
    }[lie]
    if truthful:
        headers = digest_headers(data, rng)
    lab.origin.replace(key, data, headers=headers)
    etag = origin_etag(lab.origin.url, key)
    result = run(lab.engine(), key)
    lab.checker.check(
        tag, key, result, Invariant({etag: data}, expect=COPIED if truthful else FAILED)
    )
    if not truthful:
        named = {"content-md5": "md5", "repr-md5": "md5", "digest-crc32c": "crc32c"}
        assert named.get(lie, "sha256") in (result.reason or ""), (tag, result.reason)


# --- S3 faults (through the fault proxy) ---------------------------------------------------------


@pytest.mark.parametrize("index", range(24))
def test_s3_5xx_on_writes(lab: Lab, index: int) -> None:
    """UploadPart / PutObject / Create / Complete answered with 5xx (or lost after S3 applied
    them); botocore's standard retries run for real."""
    rng, tag, key, data, etag = start(lab, "s3-5xx", index, multipart_share=0.6)
    multipart = len(data) > PART
    operation = (
        rng.choice(["UploadPart", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload"])
        if multipart
        else "PutObject"
    )
    mode = rng.choice(["transient", "transient", "exhausted", "lost-response"])
    status, code = rng.choice([(503, "ServiceUnavailable"), (500, "InternalError")])
    if mode == "transient" and rng.random() < 0.2:
        status, code = 503, "SlowDown"  # throttling: botocore backs off for up to seconds
    part = rng.randint(1, -(-len(data) // PART)) if operation == "UploadPart" else None
    fault = lab.proxy.inject(
        Fault(
            operation,
            key,
            status=status,
            code=code,
            times={"transient": rng.randint(1, 2), "exhausted": 100, "lost-response": 1}[mode],
            part=part,
            after_apply=mode == "lost-response",
        )
    )
    result = run(lab.engine(via_proxy=True), key)
    lab.proxy.clear()
    expect = {
        "transient": COPIED,
        "exhausted": FAILED,
        # The write happened; the retry finds the key taken (412) or the upload gone.
        "lost-response": WRITTEN
        if operation in ("PutObject", "CompleteMultipartUpload")
        else COPIED,
    }[mode]
    lab.checker.check(tag, key, result, Invariant({etag: data}, expect=expect))
    assert fault.fired >= 1, f"{tag}: the fault never fired ({fault})"


@pytest.mark.parametrize("index", range(24))
def test_s3_412_and_409_races(lab: Lab, index: int) -> None:
    """A competing writer creates the key mid-copy (412 on our create-only write), S3 answers
    409 ConditionalRequestConflict, or a second copier with a skewed clock takes the lease."""
    rng, tag, key, data, etag = start(lab, "race", index, multipart_share=0.5)
    kind = rng.choice(["competitor", "competitor", "conflict", "skewed-copier"])
    if kind == "competitor":
        foreign = data if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 5000))
        k = rng.randint(1, max(1, -(-len(data) // PART)))

        competed: list[int] = []

        def compete(n: int) -> None:
            if n == k:
                competed.append(n)
                lab.s3.put_object(Bucket=lab.bucket, Key=key, Body=foreign)

        lab.origin.on_get(key, compete)
        result = run(lab.engine(), key)
        lab.origin.clear_faults(key)
        if competed:
            expect = frozenset({CopyOutcome.EXISTS})
            invariant = Invariant({etag: data}, foreign=foreign, expect=expect)
        else:
            # An empty object needs no GET: nobody competed before its create-only write.
            assert not data, f"{tag}: the copy of a non-empty object read nothing"
            invariant = Invariant({etag: data}, expect=COPIED)
        lab.checker.check(tag, key, result, invariant)
        assert lab.checker.stored(key) is not None, tag
        return
    if kind == "conflict":
        multipart = len(data) > PART
        operation = "CompleteMultipartUpload" if multipart else "PutObject"
        times = rng.randint(1, 5)
        lab.proxy.inject(
            Fault(operation, key, status=409, code="ConditionalRequestConflict", times=times)
        )
        result = run(lab.engine(via_proxy=True), key)
        lab.proxy.clear()
        # S3 says "retry" on 409; the engine retries a conflicting write up to three times.
        expect = COPIED if times <= 3 else FAILED
        lab.checker.check(tag, key, result, Invariant({etag: data}, expect=expect))
        return
    # Two copiers at once; the second one's clock runs an hour ahead, so it takes the first
    # one's live lease for an expired one: both may read and write the same key.
    results: list[CopyResult] = []
    engines = [lab.engine(), lab.engine(clock=lambda: time.time() + 3600)]
    barrier = threading.Barrier(2)

    def copier(engine: CopyEngine) -> None:
        barrier.wait()
        results.append(run(engine, key))

    threads = [threading.Thread(target=copier, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(r.outcome.value for r in results)
    journal = os.environ.get("BACKORIGIN_RELIABILITY_JOURNAL")
    if journal:
        with open(journal, "a") as out:
            pair = [(r.outcome.value, r.reason) for r in results]
            out.write(json.dumps({"tag": tag + ":pair", "pair": pair}) + "\n")
    # Judge the pair by its best outcome: the other copier may have lost the race any way.
    best = min(
        results, key=lambda r: [CopyOutcome.COPIED, CopyOutcome.EXISTS].count(r.outcome) * -1
    )
    lab.checker.check(tag, key, best, Invariant({etag: data}))
    assert outcomes.count("copied") <= 1 or lab.checker.stored(key) is not None, (tag, outcomes)
    # Whatever the interleaving, a retry ends the job: exact bytes, nothing left over.
    again = run(lab.engine(), key)
    lab.checker.check(tag, key, again, Invariant({etag: data}, expect=WRITTEN))


# --- the copier SIGKILLed mid-copy, and run again -----------------------------------------------


@pytest.mark.parametrize("index", range(10))
def test_sigkill_mid_copy_then_resume(lab: Lab, index: int) -> None:
    """A copier process is SIGKILLed mid-copy; the next copy resumes the upload it left.

    Each trial picks where the kill lands, and the copier is brought exactly there by a gate,
    never by sleeping: at the origin, while a read waits before its response or partway
    through its body, or between two parts (part k uploaded and recorded, part k+1 not yet
    read); at the S3 proxy, while part k's UploadPart waits before or after S3 stored it.
    """
    rng, tag = trial("sigkill", index)
    kind = ["random"] * 5 + ["boundary", "boundary", "single", "single", "changed"]
    kind = kind[index % len(kind)]
    if kind == "single":
        size, concurrency = rng.randint(1 * MiB, 4 * MiB), 3
    elif kind == "boundary":
        size, concurrency = rng.randint(11 * MiB, 20 * MiB), 3
    else:  # one part in flight at a time: a kill can waste at most one part (5 MiB, < 10%)
        size, concurrency = rng.randint(51 * MiB, 60 * MiB), 1
    data = rng.randbytes(size)
    key = f"sigkill/{index}-{rng.getrandbits(32):08x}.bin"
    lab.origin.put(key, data, headers=digest_headers(data, rng))
    etag = origin_etag(lab.origin.url, key)
    parts = -(-size // PART)
    k = rng.randint(2, max(2, parts - 4))  # several parts remain when the kill comes
    gate: Hold | None = None  # a gate at the origin
    upload: Fault | None = None  # or one in front of S3
    phase = kind
    if kind == "single":  # its only read: before the response, or partway through the body
        gate = lab.origin.hold(key, after_bytes=rng.choice([None, rng.randrange(size)]))
    elif kind == "boundary":  # every part from the k-th on waits: the kill comes in between
        gate = lab.origin.hold(key, which=lambda n: n >= k)
    else:  # each phase once under the default seed
        phase = ("before", "mid-body", "between", "upload", "upload-applied")[index % 5]
        if phase.startswith("upload"):
            # Part k is read; its UploadPart waits at the S3 proxy, before S3 sees it or
            # after S3 stored it (the copier dies before it hears so, nothing is recorded).
            upload = lab.proxy.inject(
                Fault("UploadPart", key, part=k, hold=True, after_apply=phase != "upload")
            )
        elif phase == "between":
            gate = lab.origin.hold(key, which=lambda n: n == k + 1)
        else:
            offset = rng.randrange(PART) if phase == "mid-body" else None
            gate = lab.origin.hold(key, which=lambda n: n == k, after_bytes=offset)
    # A held read must not time out and be retried past the gate before the kill.
    text = lab.text(
        copy={"concurrency": concurrency, "lease_ttl": "2s"},
        http={"read_timeout": "300s"},
        via_proxy=upload is not None,
    )
    recorded = True
    with forkserver_context() as context:
        child = context.Process(target=child_copy, args=(text, key, lab.access_key, lab.secret_key))
        child.start()
        try:
            if gate is not None:
                reached = gate.wait_held(1, timeout=120)
            else:
                assert upload is not None
                reached = upload.arrived.wait(120)
            if reached and kind == "boundary":
                recorded = wait_until(
                    lambda: len((lab.checker.lease(key) or {}).get("parts", [])) >= k - 1
                )
        finally:
            child.kill()
            child.join()
            # The gate opens only once the origin has seen the dead copier's connections
            # close, so nothing is sent to it.
            emptied = gate is None or gate.wait_empty()
            lab.origin.clear_faults(key)
            lab.proxy.clear()
    assert reached, f"{tag}: the copier never reached the gate"
    assert recorded, f"{tag}: the copier never recorded the parts before part {k}"
    assert emptied, f"{tag}: the origin never saw the killed copier's connections close"
    assert lab.checker.stored(key) is None, f"{tag}: the killed copier stored an object"
    versions = {etag: data}
    if kind == "changed":  # the object changes while nobody copies it
        newer = rng.randbytes(size)
        lab.origin.replace(key, newer, headers=digest_headers(newer, rng))
        versions = {origin_etag(lab.origin.url, key): newer}
    # The killed copier's lease expires within lease_ttl (2 s); every other trial lets the
    # next copier's clock run ahead instead of waiting for it.
    skew = 0.0 if index < 2 else 10.0
    if skew == 0.0:
        lease = lab.checker.lease(key)
        if lease is not None:
            wait_for_expiry(lease)
    resumed = run(lab.engine(clock=lambda: time.time() + skew), key)
    limit = None if kind in ("single", "changed") else 1.1 * size
    lab.checker.check(
        tag,
        key,
        resumed,
        Invariant(versions, expect=COPIED, resume_limit=limit),
        served=lab.origin.bytes_served(key),
    )
    if kind in ("random", "boundary"):
        # Exactly the parts recorded before the kill are taken over; a part S3 stored but
        # the copier never recorded counts too where S3 lists part checksums.
        recorded_before = k if phase == "between" else k - 1
        allowed = {recorded_before, k} if phase == "upload-applied" else {recorded_before}
        assert resumed.resumed_parts in allowed, f"{tag}: {phase}, part {k}: {resumed}"
