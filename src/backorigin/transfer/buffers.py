"""A fixed pool of part buffers, reused for every part of a copy.

Each buffer is its own anonymous memory mapping, made once and returned to the system when
the pool closes. Fresh buffers per part are what made a copy's memory grow with the object's
size: the allocator kept the freed ones in per-thread arenas that fragment and never shrink,
and each new buffer paid its page faults again. A pool makes memory ``count x size`` by
construction, whatever the object's size, and touches each page once per copy.
"""

from __future__ import annotations

__all__ = ["BufferPool"]

import contextlib
import mmap
import threading


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
