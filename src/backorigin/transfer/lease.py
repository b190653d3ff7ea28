"""Single-flight leases kept in the bucket itself.

A lease is a small JSON object under the reserved prefix, created with ``If-None-Match: *`` so
exactly one copier wins a key. It carries an expiry, renewed by a heartbeat while the copy runs,
so a crashed copier blocks the key for at most one TTL; whoever takes over an expired lease
(with ``If-Match`` on its ETag, so only one can) inherits the state recorded in it — notably the
multipart upload id — and resumes the interrupted copy instead of starting over.
"""

from __future__ import annotations

__all__ = ["Lease", "LeaseLost", "LeaseState", "lease_key"]

import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from backorigin.errors import BackoriginError
from backorigin.keys import RESERVED_PREFIX
from backorigin.transfer.bucket import Bucket


class LeaseLost(BackoriginError):
    """Another copier took the lease over (ours expired): stop without touching the upload."""


def lease_key(bucket_prefix: str, s3_key: str) -> str:
    """Where the lease for ``s3_key`` lives (hashed, so any key length fits)."""
    digest = hashlib.sha256(s3_key.encode("utf-8")).hexdigest()
    return f"{bucket_prefix}{RESERVED_PREFIX}leases/{digest}.json"


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What a lease records about the copy it guards, for a successor to resume."""

    key: str
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    expires: float = 0.0
    origin: str | None = None
    version: str | None = None
    size: int | None = None
    part_size: int | None = None
    upload_id: str | None = None
    parts: list[tuple[int, str]] = field(default_factory=list)
    """Finished parts as ``(number, base64 CRC32C)``: not every S3 server lists part checksums."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def decode(cls, body: bytes) -> LeaseState | None:
        try:
            data = json.loads(body)
            data["parts"] = [(int(n), str(crc)) for n, crc in data.get("parts", [])]
            return cls(**data)
        except (ValueError, TypeError):
            return None


class Lease:
    """A held lease. Use :meth:`acquire`; renew with :meth:`start_heartbeat` or :meth:`update`.

    Attributes:
        previous: The state of the expired lease this one took over, if any.
    """

    def __init__(
        self,
        bucket: Bucket,
        key: str,
        state: LeaseState,
        etag: str,
        ttl: float,
        previous: LeaseState | None,
        clock: Callable[[], float],
    ) -> None:
        self._bucket = bucket
        self._key = key
        self._state = state
        self._etag = etag
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[tuple[int, str]] = []
        self._pending_bytes = 0
        self.flush_bytes = 0
        """Bytes of noted parts that trigger a lease write (0: every part is written at once)."""
        self.previous = previous

    @classmethod
    def acquire(
        cls,
        bucket: Bucket,
        bucket_prefix: str,
        s3_key: str,
        *,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> Lease | None:
        """Take the lease for ``s3_key``, or None if another copier holds a live one."""
        key = lease_key(bucket_prefix, s3_key)
        for _ in range(3):  # the holder may release between our two requests
            state = LeaseState(key=s3_key, expires=clock() + ttl)
            etag = bucket.create_document(key, state.encode())
            if etag is not None:
                return cls(bucket, key, state, etag, ttl, None, clock)
            found = bucket.read_document(key)
            if found is None:
                continue
            body, current = found
            previous = LeaseState.decode(body)
            if previous is not None and previous.expires > clock():
                return None
            etag = bucket.replace_document(key, state.encode(), current)
            if etag is None:
                return None  # someone else took the expired lease first
            return cls(bucket, key, state, etag, ttl, previous, clock)
        return None

    @property
    def state(self) -> LeaseState:
        """The state as last written."""
        return self._state

    def update(self, **changes: object) -> None:
        """Record ``changes`` (e.g. ``upload_id``) and extend the expiry.

        Raises:
            LeaseLost: another copier took the lease over.
        """
        with self._lock:
            self._write(replace(self._state, **changes))  # type: ignore[arg-type]

    def record_part(self, number: int, crc32c_b64: str, size: int = 0) -> None:
        """Note a finished part (safe to call from several threads at once).

        Parts are written to the lease in batches: when the bytes noted since the last write
        reach :attr:`flush_bytes`, and with every other write (the heartbeat, :meth:`update`,
        :meth:`suspend`). So a copy pays a number of lease writes that does not grow with its
        part count, and a copier killed now leaves at most ``flush_bytes`` of finished parts
        unrecorded (plus the parts in flight) for its successor to read again.

        Raises:
            LeaseLost: another copier took the lease over.
        """
        with self._lock:
            self._pending.append((number, crc32c_b64))
            self._pending_bytes += size
            if self._pending_bytes >= self.flush_bytes:
                self._write(self._state)

    def _write(self, state: LeaseState, *, expires: float | None = None) -> None:
        """Write ``state`` plus the parts noted since it."""
        if self._lost:
            raise LeaseLost("the copy lease was taken over by another copier")
        pending = self._pending
        state = replace(
            state,
            parts=[*state.parts, *pending],
            expires=self._clock() + self._ttl if expires is None else expires,
        )
        etag = self._bucket.replace_document(self._key, state.encode(), self._etag)
        if etag is None:
            self._lost = True
            raise LeaseLost("the copy lease was taken over by another copier")
        self._state, self._etag = state, etag
        self._pending = []
        self._pending_bytes = 0

    def check(self) -> None:
        """Raise :class:`LeaseLost` if a heartbeat found the lease taken over."""
        if self._lost:
            raise LeaseLost("the copy lease was taken over by another copier")

    def start_heartbeat(self) -> None:
        """Renew the lease in the background every third of its TTL until released."""

        def beat() -> None:
            while not self._stop.wait(self._ttl / 3):
                try:
                    self.update()
                except LeaseLost:
                    return
                except BackoriginError:
                    continue  # a failed renewal is retried at the next beat

        self._thread = threading.Thread(target=beat, name="backorigin-lease", daemon=True)
        self._thread.start()

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def release(self) -> None:
        """Give the lease up (the copy finished, for better or worse)."""
        self._stop_heartbeat()
        with self._lock:
            if not self._lost:
                self._bucket.delete_document(self._key, self._etag)

    def suspend(self) -> None:
        """Leave the lease expired but in place, so the next copier resumes from its state."""
        self._stop_heartbeat()
        with self._lock:
            if not self._lost:
                # Best effort, as before: a lease that is not written expires on its own.
                with contextlib.suppress(LeaseLost, BackoriginError):
                    self._write(self._state, expires=0.0)
