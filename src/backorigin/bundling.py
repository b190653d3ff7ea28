"""Lambda bundles: handler code, the baked config and only the dependencies it needs.

Lambda@Edge has no environment variables, so the validated config is baked into the bundle
(secret *references* only, never values) together with the deployment facts the function
cannot look up (queue name and region). Dependencies are installed for the Lambda platform
with pip's cross-platform options, without Docker.
"""

from __future__ import annotations

__all__ = [
    "BAKED_DIR",
    "EDGE_PLAN_FORMAT",
    "BundleError",
    "bundle",
    "deployment_needs",
    "edge_origin",
    "edge_origin_name",
    "edge_plan",
    "requirements_for",
]

import compileall
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from backorigin.config import Config, load_config
from backorigin.errors import BackoriginError
from backorigin.plugins import adapter_plugins
from backorigin.types import DeploymentNeeds, FunctionRole, OriginRequest, OriginSpec

Role = FunctionRole
Arch = Literal["x86_64", "arm64"]

BAKED_DIR = "_baked"
"""Directory inside the bundled ``backorigin`` package that holds the baked files."""

EDGE_PLAN_FORMAT = 2
"""Layout version of :func:`edge_plan` (``backorigin.handlers.plan`` reads this version)."""

# Auth modes that send nothing: an adapter in such a mode may still override ``sign``, so the
# plan also checks that signing a probe request leaves it as it was.
_UNSIGNED_MODES = frozenset({"anonymous", "none"})

# The core packages the edge imports (the rest of the core is the fetcher's). boto3 and
# botocore come with the Lambda runtime and are not bundled for the edge; what each origin
# needs beyond the core, its adapter declares (OriginAdapter.deployment).
_EDGE_CORE = ("pydantic", "pyyaml", "urllib3")
# Core dependencies only the command line uses.
_CLI_ONLY = frozenset({"click", "rich"})
# backorigin subpackages that never run in Lambda.
_NOT_IN_LAMBDA = ("cdk", "cli", "local", "prewarm", "testing")
_PLATFORMS: dict[Arch, list[str]] = {
    "x86_64": ["manylinux_2_28_x86_64", "manylinux2014_x86_64"],
    "arm64": ["manylinux_2_28_aarch64", "manylinux2014_aarch64"],
}


class BundleError(BackoriginError):
    """A bundle could not be built (the message says which step failed)."""


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return (match.group(0) if match else requirement).lower().replace("_", "-")


def _adapter_targets(config: Config) -> dict[str, str]:
    """``type → module:Class`` for every configured origin type, built-ins included."""
    adapters: dict[str, str] = {}
    for origin in config.origins:
        target = adapter_plugins.target(origin.type)
        if target is None:
            raise BundleError(f"no adapter is registered for origin type {origin.type!r}")
        adapters[origin.type] = target
    return adapters


def deployment_needs(config: Config, role: Role) -> dict[str, DeploymentNeeds]:
    """What each origin the ``role`` function reads needs there, as its adapter declares it.

    The fetcher reads every origin; the edge function only those CloudFront reaches through
    it (:meth:`Config.edge_origin_roles`): a route's fallback origins are the fetcher's alone.
    Built-in and third-party adapters alike answer through
    :meth:`~backorigin.adapters.OriginAdapter.deployment`, a class method: no SDK is
    imported and no secret is resolved, so this is safe at synth time.

    Returns:
        Origin name → its needs, in the config's order.

    Raises:
        RegistryError: an origin's type has no registered adapter.
        BundleError: an adapter's declaration is not a ``DeploymentNeeds``.
    """
    # Deferred: the CDK construct imports this module and must not load adapters before
    # it asks for their declarations.
    from backorigin.adapters import adapter_class

    read = config.edge_origin_roles() if role == "edge" else None
    needs: dict[str, DeploymentNeeds] = {}
    for origin in config.origins:
        if read is not None and origin.name not in read:
            continue
        cls = adapter_class(origin.type)
        declared = cls.deployment(origin, role)
        if not isinstance(declared, DeploymentNeeds):
            raise BundleError(
                f"{cls.__name__}.deployment() returned {declared!r}, not a DeploymentNeeds"
            )
        needs[origin.name] = declared
    return needs


def requirements_for(config: Config, role: Role) -> list[str]:
    """The pip requirements a bundle for ``role`` needs for this config.

    backorigin's core (for the edge, only what the edge imports), what each origin's adapter
    declares for the role, and the requirements of third-party adapters' distributions.
    """
    from backorigin.adapters.base import package_requirements  # deferred, as above

    core = package_requirements("backorigin")[0]
    needed: list[str] = []
    if role == "edge":
        needed += [r for r in core if _name(r) in _EDGE_CORE]
    else:
        needed += [r for r in core if _name(r) not in _CLI_ONLY]
    for declared in deployment_needs(config, role).values():
        needed += declared.packages
    for target in _adapter_targets(config).values():
        module = target.partition(":")[0]
        if module.startswith("backorigin."):
            continue
        dist = _distribution_of(module)
        if dist is not None:
            needed += [r for r in package_requirements(dist)[0] if _name(r) != "backorigin"]
    unique: dict[str, str] = {}
    for requirement in needed:
        unique.setdefault(requirement, requirement)
    return sorted(unique)


def _distribution_of(module: str) -> str | None:
    top = module.split(".")[0]
    names = importlib.metadata.packages_distributions().get(top)
    return names[0] if names else None


def _copy_package(module: str, target_dir: Path, *, exclude: tuple[str, ...] = ()) -> None:
    """Copy the top-level package (or module) of ``module`` into ``target_dir``."""
    top = module.split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise BundleError(f"cannot find the source of {top!r} to bundle it")
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *exclude)
        shutil.copytree(origin.parent, target_dir / top, ignore=ignore, dirs_exist_ok=True)
    else:
        shutil.copy2(origin, target_dir / origin.name)


def bundle(
    config: Config | str | Path,
    target_dir: str | Path,
    *,
    role: Role = "edge",
    python: str = "3.12",
    arch: Arch = "x86_64",
    queue_name: str | None = None,
    queue_region: str | None = None,
    install: bool = True,
    cache_dir: str | Path | None = None,
    include: tuple[str, ...] = (),
) -> Path:
    """Write a Lambda bundle for ``role`` into ``target_dir`` and return it.

    The bundle holds the ``backorigin`` package (without the CLI, CDK, local and testing
    parts), any third-party adapter packages the config uses, their dependencies for the
    Lambda platform, and the baked config. The handler is
    ``backorigin.handlers.lambda_entry.edge`` or ``….fetcher``.

    Args:
        config: The configuration (or a path to it).
        target_dir: An empty or missing directory.
        role: ``edge`` (Lambda@Edge, x86_64 only) or ``fetcher``.
        python: The Lambda runtime's Python version.
        arch: The function's architecture.
        queue_name: Name of the copy queue (baked for the edge function).
        queue_region: Region of the copy queue.
        install: Install dependencies with pip (tests may skip this step). When ``python`` is
            this interpreter's version, the bundle is also precompiled to bytecode.
        cache_dir: Keep the installed dependencies here, one directory per set of
            requirements, Python version and architecture, and link them into later bundles
            instead of running pip again (default: no cache). Delete it to pick up newer
            releases within the requirements' ranges.
        include: backorigin subpackages to bundle that Lambda functions otherwise go
            without: ``("prewarm",)`` for the scheduled reconciler (handler
            ``backorigin.prewarm.scheduled.reconciler``, in a ``fetcher`` bundle: it reads the
            origins as the fetcher does).

    Raises:
        BundleError: a step failed; pip's output is in the message.
    """
    loaded = load_config(config) if not isinstance(config, Config) else config
    if role == "edge" and arch != "x86_64":
        raise BundleError("Lambda@Edge functions run on x86_64 only")
    target = Path(target_dir)
    if target.exists() and any(target.iterdir()):
        raise BundleError(f"{target} is not empty")
    target.mkdir(parents=True, exist_ok=True)
    adapters = _adapter_targets(loaded)
    _copy_package(
        "backorigin", target, exclude=tuple(p for p in _NOT_IN_LAMBDA if p not in include)
    )
    for module_target in adapters.values():
        module = module_target.partition(":")[0]
        if not module.startswith("backorigin."):
            _copy_package(module, target)
    baked = target / "backorigin" / BAKED_DIR
    baked.mkdir()
    (baked / "config.json").write_text(
        json.dumps(loaded.model_dump(mode="json", by_alias=True), indent=2, sort_keys=True)
    )
    facts: dict[str, Any] = {
        "role": role,
        "adapters": adapters,
        "queue_name": queue_name,
        "queue_region": queue_region,
    }
    (baked / "bundle.json").write_text(json.dumps(facts, indent=2, sort_keys=True))
    if role == "edge":
        plan = edge_plan(loaded)
        (baked / "edge-plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True))
    if install:
        requirements = requirements_for(loaded, role)
        if cache_dir is None:
            _pip_install(requirements, target, python=python, arch=arch)
        else:
            _install_cached(requirements, target, Path(cache_dir), python=python, arch=arch)
    if python == f"{sys.version_info.major}.{sys.version_info.minor}":
        _precompile(target)
    return target


def _precompile(target: Path) -> None:
    """Compile the bundle's modules, as the runtime's own Python would.

    A Lambda bundle is read-only, so modules that ship without bytecode are compiled again at
    every cold start. Bytecode is only valid for the interpreter that wrote it, hence only when
    it matches the runtime. Hash-based ``.pyc`` files do not depend on file times, which the
    deployment package does not keep.
    """
    ok = compileall.compile_dir(
        str(target),
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise BundleError(f"some modules in {target} do not compile")


def edge_plan(config: Config) -> dict[str, Any]:
    """The edge function's view of ``config`` as plain JSON data (the "edge plan").

    It holds the routes, each origin's CloudFront origin and key prefix, and the edge
    settings, so the edge function can serve the S3 primary and route misses without
    pydantic or the config models. An origin is ``lean`` when its adapter uses the contract's
    default ``origin_uri`` and either signs nothing in its configured auth mode or declares an
    edge signing recipe (:meth:`~backorigin.adapters.OriginAdapter.edge_recipe`, carried as
    ``signing``: plain JSON with secret references, never values); other origins are reached
    through their adapter, built from the baked config on first use. No secret is resolved to
    build the plan, and no cloud SDK is loaded, except that an Azure origin signing with an
    account key asks the installed SDK which REST version its SAS are made for.

    Raises:
        RegistryError: an origin's type has no registered adapter.
        MissingExtra: an adapter's module needs an extra that is not installed.
    """
    from backorigin.adapters import OriginAdapter, create_adapter
    from backorigin.config.secrets import SecretResolver

    nothing = SecretResolver(environ={})  # a probe must not read any real secret
    origins: dict[str, Any] = {}
    for origin in config.origins:
        adapter = create_adapter(origin, secrets=nothing)
        try:
            spec = adapter.cloudfront_origin()
            origins[origin.name] = {
                "domain": spec.domain,
                "path": spec.path,
                "protocol": spec.protocol,
                "port": spec.port,
                "prefix": origin.prefix,
                **_edge_reach(adapter, OriginAdapter),
            }
        finally:
            adapter.close()
    return {
        "format": EDGE_PLAN_FORMAT,
        "origins": origins,
        "default_origin": config.default_origin,
        "routes": [
            {
                "prefix": route.prefix,
                "suffix": list(route.suffix),
                "origin": route.origin,
                "fallback": list(route.fallback),
                "strip_prefix": route.rewrite.strip_prefix,
                "add_prefix": route.rewrite.add_prefix,
            }
            for route in config.routes
        ],
        "negative_ttl": int(config.edge.negative_ttl),
        "forward_query": list(config.edge.forward_query),
    }


def _edge_reach(adapter: Any, base: type[Any]) -> dict[str, Any]:
    """``lean`` (the edge needs no adapter) and ``signing`` (the recipe it signs with, if any).

    Raises:
        BundleError: the adapter's recipe is of an unknown kind or is not JSON data.
    """
    if _reached_without_adapter(adapter, base):
        return {"lean": True, "signing": None}
    cls = type(adapter)
    if cls.origin_uri is not base.origin_uri:
        return {"lean": False, "signing": None}
    recipe = cls.edge_recipe(adapter.config)
    if recipe is None:
        return {"lean": False, "signing": None}
    from backorigin.adapters import EDGE_SIGNING_KINDS

    kind = recipe.get("kind") if isinstance(recipe, Mapping) else None
    if kind not in EDGE_SIGNING_KINDS:
        raise BundleError(
            f"{cls.__name__}.edge_recipe() is of kind {kind!r}; the edge applies "
            f"{', '.join(sorted(EDGE_SIGNING_KINDS))}"
        )
    try:
        # Through JSON, as the bundle carries it: only plain data survives unchanged.
        signing = json.loads(json.dumps(recipe, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{cls.__name__}.edge_recipe() is not JSON data: {exc}") from None
    return {"lean": True, "signing": signing}


def _reached_without_adapter(adapter: Any, base: type[Any]) -> bool:
    """Whether the edge can reach this origin with the contract's defaults alone."""
    cls = type(adapter)
    if cls.origin_uri is not base.origin_uri:
        return False
    if cls.sign is base.sign:
        return True
    mode = getattr(getattr(adapter.config, "auth", None), "mode", None)
    if mode not in _UNSIGNED_MODES:
        return False
    probe = OriginRequest(
        method="GET", uri="/probe", querystring="a=1", headers={"host": "origin.invalid"}
    )
    try:
        signed = adapter.sign(probe)
    except Exception:  # any failure means the adapter is needed at run time
        return False
    return bool(
        signed.uri == probe.uri
        and signed.querystring == probe.querystring
        and dict(signed.headers) == dict(probe.headers)
    )


def edge_origin_name(config: Config) -> str:
    """The origin CloudFront's origin group falls back to before the edge function re-routes.

    That is :attr:`Config.default_origin <backorigin.config.Config.default_origin>`.
    """
    return config.default_origin


def edge_origin(config: Config) -> OriginSpec:
    """How CloudFront reaches :func:`edge_origin_name`: its adapter's ``cloudfront_origin()``.

    Building an adapter and asking for its CloudFront origin loads no cloud SDK and resolves
    no secret, so this is safe at synth time.

    Raises:
        RegistryError: the origin's type has no registered adapter.
        MissingExtra: the adapter's module needs an extra that is not installed.
    """
    # Deferred: bundling is imported by the CDK construct, which must not load adapters
    # (or their SDKs) unless it really needs an adapter's edge face.
    from backorigin.adapters import create_adapter

    adapter = create_adapter(config.origin(edge_origin_name(config)))
    try:
        return adapter.cloudfront_origin()
    finally:
        adapter.close()


def _install_cached(
    requirements: list[str], target: Path, cache_dir: Path, *, python: str, arch: Arch
) -> None:
    """Install ``requirements`` into ``target`` through a cache of installed trees."""
    if not requirements:
        return
    facts = {"requirements": sorted(requirements), "python": python, "arch": arch, "layout": 1}
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]
    cached = cache_dir / f"deps-{key}"
    if not cached.is_dir():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache_dir))
        try:
            _pip_install(requirements, staging, python=python, arch=arch)
            # A rename is atomic: a concurrent build either wins or finds the complete tree.
            try:
                staging.rename(cached)
            except OSError:
                if not cached.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(cached, target, symlinks=True, dirs_exist_ok=True, copy_function=_link)


def _link(source: str, destination: str) -> None:
    """Hard-link a cached file into a bundle (copy it where links are impossible)."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _pip_install(requirements: list[str], target: Path, *, python: str, arch: Arch) -> None:
    if not requirements:
        return
    platforms = [flag for platform in _PLATFORMS[arch] for flag in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # .pyc files would be compiled for this interpreter, not Lambda's
        "--target",
        str(target),
        *platforms,
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BundleError(f"pip could not install {requirements}:\n{result.stderr[-4000:]}")
