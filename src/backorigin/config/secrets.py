"""Secret references and their resolution.

A config never holds a secret value. It holds a *reference* — an environment variable, a file,
or an AWS Secrets Manager secret (optionally one JSON field of it) — and the value is fetched
when an adapter needs it, cached for a bounded time, and carried as :class:`pydantic.SecretStr`
so that it never shows up in ``repr``, logs or error messages.
"""

from __future__ import annotations

__all__ = ["SecretRef", "SecretResolver", "SecretSource", "SecretUnavailable"]

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from backorigin.errors import BackoriginError

_FORMS = (
    "{secret: {env: NAME}}, {secret: {file: PATH}} or "
    "{secret: {aws_secretsmanager: ARN_OR_NAME, key: FIELD}}"
)


class SecretUnavailable(BackoriginError):
    """A referenced secret could not be read (the message names the reference, not a value)."""


class SecretSource(BaseModel):
    """Where a secret lives: exactly one of ``env``, ``file`` or ``aws_secretsmanager``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, defer_build=True
    )

    env: str | None = Field(default=None, description="Name of an environment variable.")
    file: str | None = Field(default=None, description="Path of a file holding the secret.")
    aws_secretsmanager: str | None = Field(
        default=None, description="ARN or name of an AWS Secrets Manager secret."
    )
    key: str | None = Field(
        default=None,
        description="With aws_secretsmanager: the field of a JSON secret to use.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        given = [n for n in ("env", "file", "aws_secretsmanager") if getattr(self, n) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "secret_source",
                "give exactly one of env, file or aws_secretsmanager (got {given})",
                {"given": ", ".join(given) or "none"},
            )
        if self.key is not None and self.aws_secretsmanager is None:
            raise PydanticCustomError(
                "secret_source", "key is only valid with aws_secretsmanager", {}
            )
        return self

    def describe(self) -> str:
        """A human description of the reference, safe to log."""
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        field = f" (key {self.key})" if self.key else ""
        return f"AWS Secrets Manager secret {self.aws_secretsmanager}{field}"


class SecretRef(BaseModel):
    """A reference to a secret: ``{secret: {env: NAME}}`` and friends. Never a literal value."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, defer_build=True
    )

    secret: SecretSource

    @model_validator(mode="before")
    @classmethod
    def _no_literals(cls, data: Any) -> Any:
        if not isinstance(data, dict | BaseModel):
            # Deliberately generic: the offending value must not be echoed anywhere.
            raise PydanticCustomError(
                "inline_secret",
                "a literal secret is not allowed here; reference it instead: {forms}",
                {"forms": _FORMS},
            )
        return data


class SecretsManagerClient(Protocol):
    """The one Secrets Manager call the resolver needs (a boto3 client satisfies it)."""

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]: ...  # noqa: N803


class SecretResolver:
    """Resolves :class:`SecretRef` values, caching each for ``ttl`` seconds.

    Args:
        ttl: How long a resolved value is reused before it is read again, so rotated
            secrets are picked up without a restart.
        secretsmanager_client: A Secrets Manager client used for every secret. Default:
            one client per region, built from boto3's default session on first use; a
            secret given by ARN is read in the ARN's region, one given by name in the
            session's region.
        environ: The environment to read ``env`` references from (default ``os.environ``).
    """

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        secretsmanager_client: SecretsManagerClient | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self._ttl = ttl
        self._client = secretsmanager_client
        self._environ = environ
        self._lock = threading.Lock()
        self._cache: dict[SecretSource, tuple[float, SecretStr]] = {}
        self._regional: dict[str | None, SecretsManagerClient] = {}

    def resolve(self, ref: SecretRef) -> SecretStr:
        """The secret's value.

        Raises:
            SecretUnavailable: the referenced variable, file or secret cannot be read.
        """
        source = ref.secret
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(source)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        value = SecretStr(self._read(source))
        with self._lock:
            self._cache[source] = (now, value)
        return value

    def _read(self, source: SecretSource) -> str:
        if source.env is not None:
            environ = os.environ if self._environ is None else self._environ
            if source.env not in environ:
                raise SecretUnavailable(f"{source.describe()} is not set")
            return environ[source.env]
        if source.file is not None:
            try:
                return Path(source.file).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretUnavailable(f"cannot read {source.describe()}: {exc.strerror}") from exc
        assert source.aws_secretsmanager is not None
        return self._read_aws(source.aws_secretsmanager, source.key, source.describe())

    def _read_aws(self, secret_id: str, key: str | None, what: str) -> str:
        try:
            response = self._secretsmanager(secret_id).get_secret_value(SecretId=secret_id)
        except Exception as exc:
            # Only the error class goes into the message: SDK messages are safe, but keeping
            # the surface small means nothing secret can ever slip through here.
            raise SecretUnavailable(f"cannot read {what}: {type(exc).__name__}") from exc
        text = response.get("SecretString")
        if text is None:
            raise SecretUnavailable(f"{what} holds binary data; store it as a string")
        if key is None:
            return str(text)
        try:
            document = json.loads(text)
        except ValueError:
            raise SecretUnavailable(f"{what} is not a JSON object, so it has no keys") from None
        if not isinstance(document, dict) or key not in document:
            raise SecretUnavailable(f"{what} has no field {key!r}")
        return str(document[key])

    def _secretsmanager(self, secret_id: str) -> SecretsManagerClient:
        if self._client is not None:
            return self._client
        # A secret lives in one region: each ARN is read through a client of its own region
        # (secrets of one config may be spread over several).
        region = (secret_id.split(":")[3] or None) if secret_id.startswith("arn:") else None
        with self._lock:
            client = self._regional.get(region)
            if client is None:
                import boto3  # deferred: only configs that use Secrets Manager pay for boto3

                client = boto3.client("secretsmanager", region_name=region)
                self._regional[region] = client
        return client
