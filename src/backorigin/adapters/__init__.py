"""Origin adapters: the contract, the registry and the built-in implementations.

Built-in adapters live in their own modules (``backorigin.adapters.http``, …) and are loaded
through the ``backorigin.adapters`` entry-point group like third-party ones; importing this
package imports no cloud SDK.
"""

from backorigin.adapters.base import (
    EDGE_SIGNING_KINDS,
    ObjectStream,
    OriginAdapter,
    extra_requirements,
    require,
    secret_reference,
)
from backorigin.adapters.read import GetResult, RawBody, RawGet
from backorigin.adapters.registry import (
    adapter_class,
    apply_environment_endpoints,
    available_types,
    create_adapter,
    register_adapter,
)

__all__ = [
    "EDGE_SIGNING_KINDS",
    "GetResult",
    "ObjectStream",
    "OriginAdapter",
    "RawBody",
    "RawGet",
    "adapter_class",
    "apply_environment_endpoints",
    "available_types",
    "create_adapter",
    "extra_requirements",
    "register_adapter",
    "require",
    "secret_reference",
]
