"""The adapter registry: origin ``type`` → adapter class, through entry points."""

from __future__ import annotations

__all__ = [
    "adapter_class",
    "apply_environment_endpoints",
    "available_types",
    "create_adapter",
    "register_adapter",
]

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from backorigin.adapters.base import OriginAdapter
from backorigin.config.origins import OriginConfig, check_http_url
from backorigin.config.secrets import SecretResolver
from backorigin.errors import ConfigError, ConfigIssue, RegistryError
from backorigin.plugins import adapter_plugins

if TYPE_CHECKING:
    from backorigin.config.models import Config


def available_types() -> list[str]:
    """Every registered origin type, without importing any adapter."""
    return adapter_plugins.names()


def adapter_class(type_name: str) -> type[OriginAdapter[Any]]:
    """The adapter class registered for ``type_name``, imported on first use.

    Raises:
        RegistryError: no adapter is registered under that name, or it is not an adapter.
        MissingExtra: the adapter's module needs an extra that is not installed.
    """
    obj = adapter_plugins.load(type_name)
    if not (isinstance(obj, type) and issubclass(obj, OriginAdapter)):
        raise RegistryError(f"{type_name!r} is registered as {obj!r}, which is not an adapter")
    model = getattr(obj, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, OriginConfig)):
        raise RegistryError(f"adapter {obj.__name__} has no config_model (an OriginConfig)")
    return obj


def register_adapter(
    type_name: str, adapter: type[OriginAdapter[Any]] | str, *, replace: bool = False
) -> None:
    """Register an adapter class (or its ``module:Class`` path) for ``type_name``.

    Installed packages should rather declare an entry point in the ``backorigin.adapters``
    group; this is for adapters defined at run time (tests, notebooks).

    Raises:
        RegistryError: the name is taken and ``replace`` is false.
    """
    adapter_plugins.register(type_name, adapter, replace=replace)


def create_adapter(
    config: OriginConfig, *, secrets: SecretResolver | None = None
) -> OriginAdapter[Any]:
    """Build the adapter for one validated origin config."""
    cls = adapter_class(config.type)
    if not isinstance(config, cls.config_model):
        raise RegistryError(
            f"origin {config.name!r} was validated as {type(config).__name__}, "
            f"but adapter {cls.__name__} expects {cls.config_model.__name__}"
        )
    return cls(config, secrets=secrets)


def apply_environment_endpoints(
    config: Config, environ: Mapping[str, str] | None = None
) -> tuple[Config, list[str]]:
    """The config with each origin's endpoint from the environment, where its SDK has one.

    One rule for both faces of an adapter on this machine: ``endpoint_url`` from the config
    first, else the variable the origin type's SDK follows (``STORAGE_EMULATOR_HOST`` for
    gcs; ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for s3; see
    :meth:`OriginAdapter.environment_endpoint`). Written into the config, the endpoint is
    what the data plane reads *and* where the edge function sends the request, so ``serve``
    cannot read an emulator while routing viewers to the real service. Local commands call
    this; deployments do not, so a variable left set never changes what CloudFront reaches.

    Args:
        config: A validated config.
        environ: The environment (default ``os.environ``).

    Returns:
        The config (the same object when nothing changed) and one line per origin changed,
        e.g. ``origin 'old': endpoint http://127.0.0.1:4443 (from STORAGE_EMULATOR_HOST)``.

    Raises:
        ConfigError: a variable holds something that is not an http(s) URL.
    """
    from backorigin.config.loader import load_config

    env = os.environ if environ is None else environ
    data: dict[str, Any] | None = None
    notes: list[str] = []
    issues: list[ConfigIssue] = []
    for index, origin in enumerate(config.origins):
        if "endpoint_url" not in type(origin).model_fields:
            continue
        found = adapter_class(origin.type).environment_endpoint(origin, env)
        if found is None:
            continue
        variable, endpoint = found
        where = f" (from {variable})"
        try:
            check_http_url(endpoint)
        except ValueError as exc:
            issues.append(ConfigIssue(f"origins[{index}].endpoint_url", f"{exc}{where}"))
            continue
        if data is None:
            data = config.model_dump(by_alias=True)
        data["origins"][index]["endpoint_url"] = endpoint
        notes.append(f"origin {origin.name!r}: endpoint {endpoint}{where}")
    if issues:
        raise ConfigError(issues)
    return (config if data is None else load_config(data)), notes
