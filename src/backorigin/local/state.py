"""Where a running ``backorigin serve`` says which bucket it serves, for ``fetch --local``.

``serve`` writes one small JSON file per config file while it runs: the bucket, the S3
endpoint and, for the embedded S3 server, the credentials it made up for this run. The file
is private to the user (mode 0600, in ``$XDG_RUNTIME_DIR`` when set, else
``~/.cache/backorigin``) and removed when ``serve`` stops; a file left by a ``serve`` that
was killed is recognised by its dead PID and ignored. ``fetch --local`` and
``prewarm --local`` read it, so copying into the local bucket takes no copied keys and no
environment variables.
"""

from __future__ import annotations

__all__ = [
    "ServeState",
    "find_serve_state",
    "remove_serve_state",
    "serve_state_path",
    "write_serve_state",
]

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServeState:
    """What a running ``serve`` tells the other commands.

    Attributes:
        config: The absolute path of the config file it serves.
        pid: The ``serve`` process.
        url: Where it serves viewers.
        bucket: The bucket it serves.
        endpoint: The bucket's S3 endpoint.
        access_key: The embedded S3 server's access key (None: boto3's usual chain).
        secret_key: Its secret key.
    """

    config: str
    pid: int
    url: str
    bucket: str
    endpoint: str
    access_key: str | None = None
    secret_key: str | None = None


def _state_dir(environ: Mapping[str, str]) -> Path:
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "backorigin"
    return Path(environ.get("HOME") or Path.home()) / ".cache" / "backorigin"


def serve_state_path(
    config: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> Path:
    """The state file of a ``serve`` of ``config`` (named after its absolute path)."""
    absolute = str(Path(config).resolve())
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:16]
    return _state_dir(os.environ if environ is None else environ) / f"serve-{digest}.json"


def write_serve_state(state: ServeState, environ: Mapping[str, str] | None = None) -> Path:
    """Write ``state`` where :func:`find_serve_state` looks, readable by this user only."""
    path = serve_state_path(state.config, environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".serve-")
    try:
        with os.fdopen(fd, "w") as file:  # mkstemp creates it 0600
            json.dump(asdict(state), file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone's process; not ours to judge
    return True


def find_serve_state(
    config: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> ServeState | None:
    """The state of the ``serve`` running ``config``, or None when none is running."""
    path = serve_state_path(config, environ)
    try:
        data = json.loads(path.read_text())
        state = ServeState(**data)
    except (OSError, ValueError, TypeError):
        return None
    if not _alive(state.pid):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return state


def remove_serve_state(state: ServeState, environ: Mapping[str, str] | None = None) -> None:
    """Remove the state file, if it is still this ``serve``'s."""
    path = serve_state_path(state.config, environ)
    with contextlib.suppress(OSError, ValueError, TypeError):
        if ServeState(**json.loads(path.read_text())).pid == state.pid:
            path.unlink()
