"""What every server this package runs on 127.0.0.1 shares, defined once.

The embedded S3 server of ``backorigin serve`` and the test servers of
:mod:`backorigin.testing` all pick free ports on the loopback interface, wait until a process
answers HTTP, stop a process group gently and are used as context managers. This module sits
at the bottom of the package (standard library only) so that :mod:`backorigin.local` and
:mod:`backorigin.testing`, which may not import each other, both use it.
"""

from __future__ import annotations

__all__ = ["Service", "free_port", "port_is_free", "stop_process_group", "wait_until_answers"]

import abc
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Literal, Self


class Service(abc.ABC):
    """Something started by :meth:`start` and stopped by :meth:`stop`; a context manager."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Start it and return it once it can be used."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop it and release what it holds; safe to call more than once."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def port_is_free(port: int) -> bool:
    """Whether a TCP socket can bind ``port`` on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, also_free_at: tuple[int, ...] = ()) -> int:
    """A free TCP port on 127.0.0.1 (and free at ``port + offset`` for each offset given).

    Raises:
        RuntimeError: no such port turned up.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if all(port + off < 65536 and port_is_free(port + off) for off in also_free_at):
            return port
    raise RuntimeError("no free port found on 127.0.0.1")


def wait_until_answers(
    url: str, process: subprocess.Popen[bytes], timeout: float
) -> Literal["ready", "exited", "timeout"]:
    """Poll ``url`` until the server answers, ``process`` exits or ``timeout`` seconds pass.

    Any HTTP answer, an error status included, means the server is serving.

    Returns:
        ``"ready"``, ``"exited"`` (the process ended first) or ``"timeout"``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return "exited"
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a loopback URL
                return "ready"
        except urllib.error.HTTPError:
            return "ready"
        except OSError:
            time.sleep(0.1)  # not listening yet: poll again, as a readiness probe does
    return "timeout"


def stop_process_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a process started with ``start_new_session=True``, and its children.

    SIGTERM to its process group first, so it can finish writing; SIGKILL once ``grace``
    seconds have passed. Nothing happens if it has already exited.
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
