"""Secret references resolved with the standard library, for signing at the edge.

The edge plan (:mod:`backorigin.handlers.plan`) carries an origin's signing recipe with its
secrets as *references* in plain JSON, never values: ``{"env": NAME}``, ``{"file": PATH}`` or
``{"aws_secretsmanager": ARN_OR_NAME, "key": FIELD}`` (``key`` optional), the fields of
:class:`backorigin.config.secrets.SecretSource`. :class:`EdgeSecrets` reads them the way
:class:`backorigin.config.secrets.SecretResolver` does (same values, same five-minute cache,
``key`` picks a field of a JSON secret), without pydantic or boto3: Secrets Manager's
``GetSecretValue`` is sent over its JSON protocol, signed by :mod:`backorigin.handlers.sigv4`.
"""

from __future__ import annotations

__all__ = ["EdgeSecretUnavailable", "EdgeSecrets", "SecretsManagerClient"]

import json
import os
import threading
import time
from collections.abc import Callable, Mapping

from backorigin.errors import BackoriginError
from backorigin.handlers import awsjson, sigv4
from backorigin.handlers.awsjson import Connections, Transport

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    from typing import Any

SECRET_TTL = 300.0
"""Seconds a resolved value is reused, as the full path's resolver does at the edge."""


class EdgeSecretUnavailable(BackoriginError):
    """A referenced secret could not be read (the message names the reference, not a value)."""


def describe(ref: Mapping[str, Any]) -> str:
    """A description of a reference that is safe to log (the models' ``describe()``)."""
    if "env" in ref:
        return f"environment variable {ref['env']}"
    if "file" in ref:
        return f"file {ref['file']}"
    field = f" (key {ref['key']})" if ref.get("key") else ""
    return f"AWS Secrets Manager secret {ref.get('aws_secretsmanager')}{field}"


class SecretsManagerClient:
    """``GetSecretValue`` over Secrets Manager's JSON protocol, signed with SigV4.

    A secret given by ARN is read in the ARN's region, one given by name in the function's
    own (``AWS_REGION``), as boto3 would. ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` (or
    ``AWS_ENDPOINT_URL``) points it elsewhere, as it does boto3 (tests use moto's server;
    Lambda@Edge has no environment variables to set them).

    Args:
        environ: Where credentials, region and endpoint are read, at every call.
        timeout: Seconds for connecting and for the answer.
        attempts: Tries in all, for connection failures, 5xx and throttling.
        transport: Sends one request (default: kept-alive ``http.client`` connections).
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] = os.environ,
        timeout: float = 2.0,
        attempts: int = 2,
        transport: Transport | None = None,
    ) -> None:
        self._environ = environ
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._transport: Transport = transport if transport is not None else Connections()

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:  # noqa: N803
        """The secret's current value (boto3's argument name and answer shape).

        Raises:
            EdgeSecretUnavailable: no credentials or region, refused, or unreachable; the
                message holds the error's kind, never a value.
        """
        environ = self._environ
        credentials = sigv4.Credentials.from_environ(environ)
        if credentials is None:
            raise EdgeSecretUnavailable("no AWS credentials in the environment")
        region = SecretId.split(":")[3] if SecretId.startswith("arn:") else ""
        region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or ""
        if not region:
            raise EdgeSecretUnavailable("no region: give the secret's ARN or set AWS_REGION")
        endpoint = (
            environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER")
            or environ.get("AWS_ENDPOINT_URL")
            or f"https://secretsmanager.{region}.amazonaws.com"
        )
        try:
            return awsjson.call(
                self._transport,
                endpoint.rstrip("/") + "/",
                target="secretsmanager.GetSecretValue",
                content_type="application/x-amz-json-1.1",
                payload=json.dumps({"SecretId": SecretId}).encode(),
                credentials=credentials,
                region=region,
                service="secretsmanager",
                attempts=self._attempts,
                timeout=self._timeout,
            )
        except awsjson.CallFailed as failed:
            if failed.unreachable is not None:
                raise EdgeSecretUnavailable("Secrets Manager could not be reached") from None
            raise EdgeSecretUnavailable(failed.kind or f"HTTP {failed.status}") from None


class EdgeSecrets:
    """Resolves plain-JSON secret references, caching each value for ``ttl`` seconds.

    Call it with a reference; it returns the value. Only successful reads are cached, and a
    value is reused for ``ttl`` seconds from when its read began, so rotated secrets are
    picked up without a new container.

    Args:
        ttl: Seconds a value is reused.
        environ: The environment ``env`` references (and the Secrets Manager client's
            credentials) are read from.
        secretsmanager: Anything with boto3's ``get_secret_value(SecretId=)`` (default:
            :class:`SecretsManagerClient`, built on first use).
        clock: Monotonic clock for the cache.
    """

    def __init__(
        self,
        *,
        ttl: float = SECRET_TTL,
        environ: Mapping[str, str] = os.environ,
        secretsmanager: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._environ = environ
        self._client = secretsmanager
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}

    def __call__(self, ref: Mapping[str, Any]) -> str:
        """The value ``ref`` names.

        Raises:
            EdgeSecretUnavailable: it cannot be read.
        """
        cache_key = json.dumps(ref, sort_keys=True)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        value = self._read(ref)
        with self._lock:
            self._cache[cache_key] = (now, value)
        return value

    def _read(self, ref: Mapping[str, Any]) -> str:
        what = describe(ref)
        if "env" in ref:
            if ref["env"] not in self._environ:
                raise EdgeSecretUnavailable(f"{what} is not set")
            return self._environ[ref["env"]]
        if "file" in ref:
            try:
                with open(ref["file"], encoding="utf-8") as file:
                    return file.read().rstrip("\r\n")
            except OSError as exc:
                raise EdgeSecretUnavailable(f"cannot read {what}: {exc.strerror}") from None
        secret_id = ref.get("aws_secretsmanager")
        if not isinstance(secret_id, str):
            raise EdgeSecretUnavailable(f"not a secret reference: {sorted(ref)}")
        try:
            answer = self._secretsmanager().get_secret_value(SecretId=secret_id)
        except EdgeSecretUnavailable as exc:
            raise EdgeSecretUnavailable(f"cannot read {what}: {exc}") from None
        except Exception as exc:
            raise EdgeSecretUnavailable(f"cannot read {what}: {type(exc).__name__}") from None
        text = answer.get("SecretString")
        if text is None:
            raise EdgeSecretUnavailable(f"{what} holds binary data; store it as a string")
        key = ref.get("key")
        if key is None:
            return str(text)
        try:
            document = json.loads(text)
        except ValueError:
            raise EdgeSecretUnavailable(f"{what} is not a JSON object, so it has no keys") from None
        if not isinstance(document, dict) or key not in document:
            raise EdgeSecretUnavailable(f"{what} has no field {key!r}")
        return str(document[key])

    def _secretsmanager(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = SecretsManagerClient(environ=self._environ)
            return self._client
