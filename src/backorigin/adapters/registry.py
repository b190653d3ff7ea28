"""The adapter registry: origin ``type`` → adapter class, through entry points."""

from __future__ import annotations

__all__ = ["adapter_class", "available_types", "create_adapter", "register_adapter"]

from typing import Any

from backorigin.adapters.base import OriginAdapter
from backorigin.config.origins import OriginConfig
from backorigin.config.secrets import SecretResolver
from backorigin.errors import RegistryError
from backorigin.plugins import adapter_plugins


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
