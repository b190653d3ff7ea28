"""The key-list format of ``--keys`` and ``--failed-out``: one viewer key per line, UTF-8.

A key cannot contain a line break or any other control character (see
:func:`backorigin.keys.validate_key`), so one key per line is unambiguous. Only the line end
(``\\n`` or ``\\r\\n``) is removed; spaces are part of the key. Empty lines are skipped.
"""

from __future__ import annotations

__all__ = ["KeyWriter", "count_keys", "read_keys"]

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO


def read_keys(lines: Iterable[str]) -> Iterator[str]:
    """The keys in ``lines`` (an open text file or any iterable of lines), lazily."""
    for line in lines:
        key = line.removesuffix("\n").removesuffix("\r")
        if key:
            yield key


def count_keys(path: str | Path) -> int:
    """How many keys the file holds (for a progress total), without decoding it."""
    with open(path, "rb") as file:
        return sum(1 for line in file if line.rstrip(b"\r\n"))


class KeyWriter:
    """Appends keys to a file in the :func:`read_keys` format, safely from many threads.

    Each key is flushed as it is written, so a run that is killed leaves a usable file.

    Args:
        path: The file to (over)write; nothing is created when None.
    """

    def __init__(self, path: str | Path | None) -> None:
        self._file: IO[str] | None = (
            open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in close()
            if path is not None
            else None
        )
        self._lock = threading.Lock()
        self.count = 0

    def write(self, key: str) -> None:
        """Add ``key``."""
        with self._lock:
            self.count += 1
            if self._file is not None:
                self._file.write(key + "\n")
                self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> KeyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
