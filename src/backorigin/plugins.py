"""A lazy registry of named plugins backed by a Python entry-point group.

Entry points are only *listed* at first use; each target is imported when it is first asked
for. Built-in origin adapters are registered through the same ``backorigin.adapters`` group as
third-party ones, so there is one discovery path for both. This module knows nothing about what
the plugins are; ``backorigin.adapters`` builds the adapter registry on top of it.
"""

from __future__ import annotations

__all__ = ["ADAPTER_GROUP", "PluginRegistry", "adapter_plugins", "load_dotted"]

import importlib
import threading
from typing import Any

from backorigin.errors import MissingExtra, RegistryError

ADAPTER_GROUP = "backorigin.adapters"
"""The entry-point group origin adapters register in."""


def load_dotted(target: str) -> Any:
    """Import ``package.module:attribute`` (or ``package.module.attribute``)."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class PluginRegistry:
    """Named plugins from an entry-point group plus explicit registrations.

    Args:
        group: The entry-point group to read.
        extras: Install hints: module name prefix → extra that provides it. An ``ImportError``
            for such a module while loading a plugin becomes :class:`MissingExtra`.
    """

    def __init__(self, group: str, extras: dict[str, str] | None = None) -> None:
        self.group = group
        self._extras = dict(extras or {})
        self._lock = threading.RLock()
        self._targets: dict[str, str | Any] | None = None
        self._loaded: dict[str, Any] = {}

    def _discover(self) -> dict[str, str | Any]:
        with self._lock:
            if self._targets is None:
                # Deferred: importlib.metadata costs tens of milliseconds at a cold start.
                from importlib.metadata import entry_points

                targets: dict[str, str | Any] = {}
                found = list(entry_points(group=self.group))
                for ep in found:
                    previous = targets.get(ep.name)
                    if previous is not None and previous != ep.value:
                        raise RegistryError(
                            f"{self.group}: {ep.name!r} is registered twice "
                            f"({previous} and {ep.value}); uninstall one of them"
                        )
                    targets[ep.name] = ep.value
                self._targets = targets
            return self._targets

    def use_only(self, targets: dict[str, str]) -> None:
        """Use exactly these ``name → module:attribute`` targets and skip entry points.

        For environments without package metadata, such as a Lambda bundle, whose
        adapters were resolved when it was built.
        """
        with self._lock:
            self._targets = dict(targets)
            self._loaded.clear()

    def names(self) -> list[str]:
        """Every registered name, sorted, without importing anything."""
        return sorted(self._discover())

    def __contains__(self, name: object) -> bool:
        return name in self._discover()

    def register(self, name: str, target: str | Any, *, replace: bool = False) -> None:
        """Register ``target`` (an object or a ``module:attr`` string) under ``name``.

        Raises:
            RegistryError: ``name`` is taken and ``replace`` is false.
        """
        with self._lock:
            targets = self._discover()
            if name in targets and not replace:
                raise RegistryError(
                    f"{self.group}: {name!r} is already registered; pass replace=True to override"
                )
            targets[name] = target
            self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        """Forget ``name`` (mainly for tests)."""
        with self._lock:
            self._discover().pop(name, None)
            self._loaded.pop(name, None)

    def target(self, name: str) -> str | None:
        """The ``module:attribute`` path registered as ``name`` (None if nothing is)."""
        target = self._discover().get(name)
        if target is None or isinstance(target, str):
            return target
        return f"{target.__module__}:{target.__qualname__}"

    def load(self, name: str) -> Any:
        """The plugin registered as ``name``, imported on first use.

        Raises:
            RegistryError: nothing is registered as ``name``; the message lists what is.
            MissingExtra: the plugin needs an optional dependency that is not installed.
        """
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            targets = self._discover()
            if name not in targets:
                known = ", ".join(sorted(targets)) or "none"
                raise RegistryError(f"unknown {self.group} plugin {name!r}; registered: {known}")
            target = targets[name]
            if isinstance(target, str):
                try:
                    obj = load_dotted(target)
                except ImportError as exc:
                    missing = exc.name or ""
                    for prefix, extra in self._extras.items():
                        if missing.startswith(prefix):
                            raise MissingExtra(extra, missing) from exc
                    raise
            else:
                obj = target
            self._loaded[name] = obj
            return obj

    def reset(self) -> None:
        """Forget discoveries and registrations; the next use reads entry points again."""
        with self._lock:
            self._targets = None
            self._loaded.clear()


adapter_plugins = PluginRegistry(
    ADAPTER_GROUP,
    extras={"google": "gcs", "azure": "azure", "aws_cdk": "cdk", "aiohttp": "local"},
)
"""The registry of origin adapter classes (group ``backorigin.adapters``)."""
