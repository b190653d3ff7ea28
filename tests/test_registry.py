"""The adapter registry: entry points for built-ins and third parties, lazy imports, hints."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from backorigin.adapters import (
    OriginAdapter,
    adapter_class,
    available_types,
    create_adapter,
    register_adapter,
    require,
)
from backorigin.config import HttpOrigin, config_json_schema, load_config
from backorigin.errors import ConfigError, MissingExtra, RegistryError
from backorigin.plugins import adapter_plugins

pytestmark = pytest.mark.usefixtures("clean_registry")

PLUGIN_MODULE = """
from collections.abc import Iterator
from typing import Literal

from backorigin.adapters import OriginAdapter
from backorigin.config import OriginConfig
from backorigin.types import ByteRange, ObjectInfo, OriginSpec


class FtpOrigin(OriginConfig):
    type: Literal["ftp"]
    host: str


class FtpAdapter(OriginAdapter[FtpOrigin]):
    config_model = FtpOrigin

    def head(self, key: str) -> ObjectInfo:
        return ObjectInfo(key=key, size=0)

    def get_once(self, key, options):
        raise NotImplementedError

    def cloudfront_origin(self) -> OriginSpec:
        return OriginSpec(domain=self.config.host)
"""


def install_distribution(root: Path, dist: str, module: str, entry_points: str) -> None:
    """Lay out an installed distribution (dist-info with entry points) under ``root``."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (root / f"{module}.py").write_text(PLUGIN_MODULE)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path that acts as an extra site-packages for plugin distributions."""
    sys.path.insert(0, str(tmp_path))
    adapter_plugins.reset()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]


def test_builtin_http_is_registered_through_its_entry_point() -> None:
    assert "http" in available_types()
    cls = adapter_class("http")
    assert cls.__module__ == "backorigin.adapters.http"
    assert cls.config_model is HttpOrigin


def test_unknown_type_lists_the_registered_ones() -> None:
    with pytest.raises(RegistryError, match=r"registered: .*http"):
        adapter_class("ftp")


def test_third_party_adapter_via_entry_point(site: Path) -> None:
    install_distribution(
        site,
        "backorigin_ftp",
        "thirdparty_ftp",
        """\
        [backorigin.adapters]
        ftp = thirdparty_ftp:FtpAdapter
        """,
    )
    assert "ftp" in available_types()
    assert "thirdparty_ftp" not in sys.modules, "listing must not import the plugin"
    config = load_config(
        "bucket: {name: abc}\norigins:\n  - {name: old, type: ftp, host: ftp.example.com}\n"
    )
    adapter = create_adapter(config.origins[0])
    assert type(adapter).__name__ == "FtpAdapter"
    assert adapter.cloudfront_origin().domain == "ftp.example.com"
    schema = config_json_schema()
    assert "FtpOrigin" in schema["$defs"]


def test_third_party_config_errors_carry_paths(site: Path) -> None:
    install_distribution(
        site,
        "backorigin_ftp",
        "thirdparty_ftp",
        "[backorigin.adapters]\nftp = thirdparty_ftp:FtpAdapter\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config("bucket: {name: abc}\norigins:\n  - {name: old, type: ftp, hots: x}\n")
    paths = {issue.path for issue in info.value.issues}
    assert paths == {"origins[0].host", "origins[0].hots"}


def test_two_distributions_claiming_one_name_are_refused(site: Path) -> None:
    install_distribution(
        site,
        "backorigin_ftp",
        "thirdparty_ftp",
        "[backorigin.adapters]\nftp = thirdparty_ftp:FtpAdapter\n",
    )
    install_distribution(
        site,
        "other_ftp",
        "thirdparty_ftp2",
        "[backorigin.adapters]\nftp = thirdparty_ftp2:FtpAdapter\n",
    )
    with pytest.raises(RegistryError, match="registered twice"):
        available_types()


def test_registering_a_taken_name_needs_replace() -> None:
    with pytest.raises(RegistryError, match="already registered"):
        register_adapter("http", "somewhere:Else")
    register_adapter("http", "backorigin.adapters.http:HttpAdapter", replace=True)
    assert adapter_class("http").__name__ == "HttpAdapter"


def test_a_missing_extra_names_the_extra(site: Path) -> None:
    (site / "thirdparty_needs_gcs.py").write_text("import google.cloud.not_a_real_module\n")
    register_adapter("needs-gcs", "thirdparty_needs_gcs:Adapter")
    with pytest.raises(MissingExtra, match=r"backorigin\[gcs\]"):
        adapter_class("needs-gcs")


def test_require_names_the_extra() -> None:
    with pytest.raises(MissingExtra, match=r"pip install 'backorigin\[azure\]'"):
        require("azure.not_a_real_module", "azure")


def test_a_registered_non_adapter_is_refused() -> None:
    register_adapter("bogus", "backorigin.keys:Router")
    with pytest.raises(RegistryError, match="not an adapter"):
        adapter_class("bogus")


def test_adapter_classes_subclass_the_contract() -> None:
    for name in available_types():
        assert issubclass(adapter_class(name), OriginAdapter)
