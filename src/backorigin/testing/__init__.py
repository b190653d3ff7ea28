"""Test support shipped with backorigin, for its own tests and for third-party adapters.

* :mod:`backorigin.testing.memory` — :class:`MemoryAdapter`, an in-memory reference origin;
* :mod:`backorigin.testing.http_origin` — :class:`HttpOriginServer`, a real local HTTP origin
  with fault hooks (needs ``backorigin[local]``);
* :mod:`backorigin.testing.strict` — :class:`StrictS3Proxy` and :class:`StrictGcsProxy`,
  proxies that put back rules of S3 and Cloud Storage the emulators skip (standard library);
* :mod:`backorigin.testing.service_account` — throwaway GCS service account keys (needs
  ``cryptography``);
* :mod:`backorigin.testing.conformance` — :class:`AdapterConformance`, the pytest suite every
  adapter runs (needs pytest).

Only the memory adapter is imported here, so importing this package needs neither aiohttp
nor pytest.
"""

from backorigin.testing.memory import MemoryAdapter, MemoryOrigin

__all__ = ["MemoryAdapter", "MemoryOrigin"]
