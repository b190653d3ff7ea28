"""The Google Cloud Storage origin adapter, split by job.

* :mod:`~backorigin.adapters.gcs.adapter`: :class:`GcsAdapter`, the two faces;
* :mod:`~backorigin.adapters.gcs.api`: the XML API (every read) and JSON API (listings)
  clients, and the metadata they describe objects with;
* :mod:`~backorigin.adapters.gcs.signing`: ``GOOG4-HMAC-SHA256`` request signing and V4
  signed URLs (HMAC or a service account's RSA key);
* :mod:`~backorigin.adapters.gcs.credentials`: service-account keys and access tokens;
* :mod:`~backorigin.adapters.gcs.errors`: the one translation of SDK exceptions.

Importing the package imports no SDK.
"""

from backorigin.adapters.gcs.adapter import (
    CHUNK_SIZE,
    EMULATOR_ENV,
    PAGE_SIZE,
    STORAGE_HOST,
    GcsAdapter,
)
from backorigin.adapters.gcs.api import xml_etag
from backorigin.adapters.gcs.credentials import READ_ONLY_SCOPE
from backorigin.adapters.gcs.signing import (
    UNSIGNED_PAYLOAD,
    RsaV4Signer,
    V4Signer,
    canonical_path,
    canonical_query,
)

__all__ = [
    "CHUNK_SIZE",
    "EMULATOR_ENV",
    "PAGE_SIZE",
    "READ_ONLY_SCOPE",
    "STORAGE_HOST",
    "UNSIGNED_PAYLOAD",
    "GcsAdapter",
    "RsaV4Signer",
    "V4Signer",
    "canonical_path",
    "canonical_query",
    "xml_etag",
]
