"""A fixed pool of part buffers, reused for every part of a copy.

Each buffer is its own anonymous memory mapping, made once and returned to the system when
the pool closes. Fresh buffers per part are what made a copy's memory grow with the object's
size: the allocator kept the freed ones in per-thread arenas that fragment and never shrink,
and each new buffer paid its page faults again. A pool makes memory ``count x size`` by
construction, whatever the object's size, and touches each page once per copy.
"""

from __future__ import annotations

__all__ = ["Body", "BufferPool"]

import contextlib
import io
import mmap
import threading
from typing import Any


class BufferPool:
    """Up to ``count`` buffers of ``size`` bytes, made on first need and then reused.

    Args:
        size: Bytes per buffer (the part size).
        count: The most buffers that ever exist at once.
    """

    def __init__(self, size: int, count: int) -> None:
        if size < 1 or count < 1:
            raise ValueError("a buffer pool needs a positive size and count")
        self.size = size
        self.count = count
        self._free: list[memoryview] = []
        self._maps: list[mmap.mmap] = []
        self._views: list[memoryview] = []
        self._lock = threading.Lock()

    @property
    def available(self) -> int:
        """Buffers that :meth:`take` can hand out now (free or not made yet)."""
        with self._lock:
            return len(self._free) + self.count - len(self._maps)

    def take(self) -> memoryview:
        """A free buffer.

        Raises:
            RuntimeError: every buffer is in use (callers check :attr:`available` first).
        """
        with self._lock:
            if self._free:
                return self._free.pop()
            if len(self._maps) >= self.count:
                raise RuntimeError("every buffer of the pool is in use")
            mapping = mmap.mmap(-1, self.size)
            view = memoryview(mapping)
            self._maps.append(mapping)
            self._views.append(view)
            return view

    def give(self, buffer: memoryview) -> None:
        """Return a buffer taken from this pool."""
        with self._lock:
            self._free.append(buffer)

    def close(self) -> None:
        """Unmap every buffer; a buffer still referenced elsewhere is left to the collector."""
        with self._lock:
            for view in self._views:
                with contextlib.suppress(BufferError):
                    view.release()
            for mapping in self._maps:
                with contextlib.suppress(BufferError):  # a slice of it is still alive
                    mapping.close()
            self._free.clear()
            self._views.clear()
            self._maps.clear()

    def __enter__(self) -> BufferPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Body(io.RawIOBase):
    """A read-only, seekable file over a caller's buffer: a request body sent without a copy.

    botocore hands a body that is not a file to its signer wrapped in ``io.BytesIO`` (a copy of
    every part), while a seekable file is read in place: the signer hashes it through
    ``readinto``, urllib3 sends it in ``read`` blocks, and a retry rewinds it with ``seek``.
    ``read`` returns views of the buffer, so sending copies nothing either; the buffer must
    stay unchanged until the request has returned.

    Args:
        data: The bytes to send (a ``memoryview`` of a pooled part buffer, typically).
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        chunk = self._view[self._position : self._position + len(target)]
        target[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def read(self, size: int | None = -1) -> Any:
        """The next ``size`` bytes (all that is left when negative), as a view of the buffer."""
        end = len(self._view) if size is None or size < 0 else self._position + size
        chunk = self._view[self._position : end]
        self._position += len(chunk)
        return chunk

    def readall(self) -> bytes:
        return bytes(self.read())
