"""The Google Cloud Storage origin adapter.

Three auth modes (see :mod:`backorigin.config.origins`), one read path:

* every mode reads objects (HEAD and GET) through the XML API, ``storage.googleapis.com``,
  which is what CloudFront reads at the edge: the metadata a copy records, its ETag above
  all, is the one viewers were served (the JSON API states other ETags). ``hmac`` signs each
  request with :class:`~backorigin.adapters.gcs.signing.V4Signer` (``GOOG4-HMAC-SHA256``),
  ``service_account`` sends ``Authorization: Bearer`` with a token minted by google-auth
  (:mod:`backorigin.adapters.gcs.credentials`), ``anonymous`` sends nothing;
* ``anonymous`` and ``service_account`` list through google-cloud-storage (the JSON API),
  ``hmac`` through the XML API.

A read is one GET pinned to the object's *generation* (``x-goog-if-generation-match``); the
shared read path (:mod:`backorigin.adapters.read`) checks the generation the answer states,
cuts the window and resumes a dropped body from its first missing byte, pinned again.
Objects are read raw (``Content-Encoding`` is never decoded).

Retries happen only inside the SDK's own machinery: google-cloud-storage's
``DEFAULT_RETRY`` (a :class:`google.api_core.retry.Retry`), configured from the origin's
``retries`` and ``backoff``, wraps every JSON call and every XML request. SDK and transport
exceptions are translated into :mod:`backorigin.errors` by
:func:`backorigin.adapters.gcs.errors.origin_error`, and nowhere else.

Importing this module imports no SDK. At the edge, the function signs from the adapter's
recipe (:meth:`GcsAdapter.edge_recipe`) and never loads this module.
"""

from __future__ import annotations

__all__ = ["CHUNK_SIZE", "EMULATOR_ENV", "PAGE_SIZE", "STORAGE_HOST", "GcsAdapter"]

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from backorigin.adapters.base import (
    OriginAdapter,
    extra_requirements,
    require,
    secret_reference,
)
from backorigin.adapters.gcs.api import JsonApi, XmlApi, host_header
from backorigin.adapters.gcs.credentials import ServiceAccountTokens
from backorigin.adapters.gcs.errors import translated, translating
from backorigin.adapters.gcs.signing import RsaV4Signer, V4Signer, canonical_path
from backorigin.adapters.read import RawGet
from backorigin.config.origins import (
    GcsHmacAuth,
    GcsOrigin,
    GcsServiceAccountAuth,
    OriginConfig,
)
from backorigin.config.secrets import SecretResolver
from backorigin.keys import validate_key
from backorigin.types import (
    DeploymentNeeds,
    FunctionRole,
    GetOptions,
    ObjectInfo,
    OriginRequest,
    OriginSpec,
)

STORAGE_HOST = "storage.googleapis.com"
"""The host of the XML API (and of public object URLs)."""
CHUNK_SIZE = 1024 * 1024
"""The most bytes one ``readinto`` of a body takes from the connection, and the size of the
chunks an iterated read yields."""
PAGE_SIZE = 1000
"""Objects per listing page."""
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
"""The variable google-cloud-storage (and gcloud, and fake-gcs-server's docs) read an emulator's
URL from, e.g. ``http://127.0.0.1:4443``; a bare ``host:port`` is taken as http."""


class GcsAdapter(OriginAdapter[GcsOrigin]):
    """Reads a Google Cloud Storage bucket and tells CloudFront how to reach it.

    Where each auth mode works:

    * ``anonymous``: copy path and edge (requests go out unsigned);
    * ``service_account`` with a key: copy path (``Authorization: Bearer``, the token
      minted from the key by google-auth and cached until shortly before expiry) and edge
      (a ``GOOG4-RSA-SHA256`` signed URL, signed with the key: no token to mint there);
      without a key (Application Default Credentials): copy path only;
    * ``hmac``: copy path (``GOOG4-HMAC-SHA256`` signed headers, XML API) and edge (the
      same signature in the query string: a signed URL, no ``x-goog-*`` header).

    A key rotated in its secret takes effect when the adapter is built again (a new
    Lambda container); HMAC secrets are re-read through the resolver's cache.

    Args:
        config: The origin's validated config.
        secrets: Resolves the config's secret references.
        chunk_size: The most bytes one ``readinto`` of a read's body takes at once.
        page_size: Objects per listing request.
    """

    config_model: ClassVar[type[GcsOrigin]] = GcsOrigin
    EDGE_URL_SECONDS: ClassVar[int] = 300
    """How long a signed URL made at the edge (hmac) stays valid: CloudFront sends it at once."""

    @classmethod
    def deployment(cls, config: GcsOrigin, role: FunctionRole) -> DeploymentNeeds:
        """The ``gcs`` extra for the fetcher; at the edge, ``cryptography`` for a service account.

        The edge signs HMAC URLs with the standard library and sends anonymous requests as
        they are; a service account's URLs are signed with its RSA key, which takes
        ``cryptography``.
        """
        if role == "fetcher":
            return DeploymentNeeds(packages=extra_requirements("gcs"))
        if isinstance(config.auth, GcsServiceAccountAuth):
            return DeploymentNeeds(packages=extra_requirements("gcs", "cryptography"))
        return DeploymentNeeds()

    @classmethod
    def edge_recipe(cls, config: GcsOrigin) -> Mapping[str, Any] | None:
        """The signed URL of :meth:`sign`: ``gcs_hmac`` or ``gcs_rsa`` (a service account key).

        Neither needs the config models, the adapter or an SDK at the edge: HMAC is the
        standard library's, and the RSA signature is ``cryptography``'s.
        """
        auth = config.auth
        spec = cls(config, secrets=SecretResolver(environ={})).cloudfront_origin()
        where = {"host": host_header(spec), "path": spec.path, "expires": cls.EDGE_URL_SECONDS}
        if isinstance(auth, GcsHmacAuth):
            return {
                "kind": "gcs_hmac",
                "access_id": secret_reference(auth.access_id),
                "secret": secret_reference(auth.secret),
                **where,
            }
        if isinstance(auth, GcsServiceAccountAuth) and auth.credentials is not None:
            return {"kind": "gcs_rsa", "key": secret_reference(auth.credentials), **where}
        return None

    def __init__(
        self,
        config: GcsOrigin,
        *,
        secrets: SecretResolver | None = None,
        chunk_size: int = CHUNK_SIZE,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(config, secrets=secrets)
        if chunk_size <= 0 or page_size <= 0:
            raise ValueError("chunk_size and page_size must be positive")
        self.chunk_size = chunk_size
        self.page_size = page_size
        # Reentrant: building the JSON client asks for the service account's credentials.
        self._lock = threading.RLock()
        self._xml: XmlApi | None = None
        self._json: JsonApi | None = None
        self._service_account: ServiceAccountTokens | None = None

    # --- data plane -------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key`` as the XML API serves it: size, generation, the edge's ETag,
        checksums (crc32c; md5 when stated), ..."""
        name = self._name(key)
        what = f"HEAD {key!r} at origin {self.name!r}"
        with translating(what):
            return self._xml_api().stat(name, key)

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        """One GET of ``key`` (or ``options.range`` of it) through the XML API, raw, pinned
        to the generation of ``options.pin`` (or ``options.version``)."""
        name = self._name(key)
        range = options.range
        what = f"GET {key!r}{f' ({range})' if range else ''} at origin {self.name!r}"
        with translating(what):
            return self._xml_api().get_once(name, key, options, what)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under the configured prefix + ``prefix``, paged lazily."""
        base = self.config.prefix
        what = f"LIST {prefix!r} at origin {self.name!r}"

        def listing() -> Iterator[ObjectInfo]:
            api: JsonApi | XmlApi = (
                self._xml_api() if isinstance(self.config.auth, GcsHmacAuth) else self._json_api()
            )
            for info in api.list(base + prefix):
                if info.key.startswith(base):
                    yield info.with_key(info.key[len(base) :])

        return translated(listing(), what)

    def close(self) -> None:
        """Close the APIs' and the token endpoint's pooled connections."""
        with self._lock:
            xml, self._xml = self._xml, None
            json_api, self._json = self._json, None
            tokens = self._service_account
        for api in (xml, json_api):
            if api is not None:
                api.close()
        if tokens is not None:
            tokens.close()

    @classmethod
    def environment_endpoint(
        cls, config: OriginConfig, environ: Mapping[str, str]
    ) -> tuple[str, str] | None:
        """``STORAGE_EMULATOR_HOST``, as google-cloud-storage reads it, when no endpoint is set."""
        value = environ.get(EMULATOR_ENV, "").strip()
        if getattr(config, "endpoint_url", None) is not None or not value:
            return None
        return EMULATOR_ENV, value if "://" in value else "http://" + value

    # --- edge plane -------------------------------------------------------------------------

    def cloudfront_origin(self) -> OriginSpec:
        """``storage.googleapis.com`` with origin path ``/BUCKET`` (or the endpoint's)."""
        bucket_path = "/" + self.config.bucket
        if self.config.endpoint_url is None:
            return OriginSpec(domain=STORAGE_HOST, path=bucket_path, protocol="https", port=443)
        parts = urlsplit(self.config.endpoint_url)
        protocol: Literal["https", "http"] = "https" if parts.scheme == "https" else "http"
        return OriginSpec(
            domain=parts.hostname or "",
            path=parts.path.rstrip("/") + bucket_path,
            protocol=protocol,
            port=parts.port or (443 if protocol == "https" else 80),
        )

    def sign(self, request: OriginRequest) -> OriginRequest:
        """Authenticate CloudFront's request to the XML API.

        CloudFront adds ``X-Amz-Cf-Id`` to every origin request after this function has run,
        and Cloud Storage refuses a request that carries ``x-amz-*`` and ``x-goog-*`` headers
        together ("Requests cannot specify both x-amz and x-goog headers"). So no mode sends
        an ``x-goog-*`` header, and the viewer's own ``x-goog-*`` / ``x-amz-*`` headers (and
        ``authorization``) are dropped; the returned headers are the whole set to send.

        anonymous: nothing added. hmac and service_account with a key: a signed URL, the
        signature in the query string, ``host`` signed, valid for :attr:`EDGE_URL_SECONDS`:
        ``GOOG4-HMAC-SHA256`` (:meth:`V4Signer.presign`; the header form would have needed
        ``x-goog-date`` and ``x-goog-content-sha256``) or ``GOOG4-RSA-SHA256`` signed with
        the account's key (:meth:`RsaV4Signer.presign`; no access token to mint). The URI is
        returned in the canonical encoding that was signed, so what CloudFront sends is
        exactly what was signed. service_account without a key (copy path only):
        ``Authorization: Bearer <token>``.
        """
        kept = {
            name: value
            for name, value in request.headers.items()
            if not name.startswith(("x-goog-", "x-amz-")) and name != "authorization"
        }
        request = replace(request, headers=MappingProxyType(kept))
        auth = self.config.auth
        if isinstance(auth, GcsServiceAccountAuth) and auth.credentials is None:
            token = self._tokens().token(f"signing for origin {self.name!r}")
            return request.with_headers({"authorization": f"Bearer {token}"})
        if isinstance(auth, GcsServiceAccountAuth | GcsHmacAuth):
            spec = self.cloudfront_origin()
            uri = canonical_path(request.uri)
            query = self._url_signer().presign(
                request.method,
                host_header(spec),
                spec.path + uri,
                request.querystring,
                expires=self.EDGE_URL_SECONDS,
            )
            return replace(request, uri=uri, querystring=query)
        return request

    # --- internals --------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return validate_key(self.config.prefix + key)

    def _timeout(self) -> tuple[float, float]:
        return (float(self.config.connect_timeout), float(self.config.read_timeout))

    def _retry(self) -> Callable[[], Any] | None:
        """A maker of google-cloud-storage's DEFAULT_RETRY (429, 5xx, timeouts, resets), configured.

        The SDK's Retry bounds retrying by time only; ``retries`` is a count, so each call
        gets its own Retry whose predicate allows that many retries and then lets the last
        error through as it is.
        """
        retries = self.config.retries
        if retries <= 0:
            return None
        module = require("google.cloud.storage.retry", "gcs")
        backoff = float(self.config.backoff)
        base = module.DEFAULT_RETRY.with_timeout(None).with_delay(
            initial=backoff, maximum=max(backoff, 32.0), multiplier=2.0
        )
        retryable: Callable[[Exception], bool] = base._predicate

        def make() -> Any:
            left = retries

            def predicate(exc: Exception) -> bool:
                nonlocal left
                if not retryable(exc) or left <= 0:
                    return False
                left -= 1
                return True

            return base.with_predicate(predicate)

        return make

    def _xml_api(self) -> XmlApi:
        with self._lock:
            if self._xml is None:
                self._xml = XmlApi(
                    self.cloudfront_origin(),
                    self._authorize,
                    retry=self._retry(),
                    timeout=self._timeout(),
                    chunk_size=self.chunk_size,
                    page_size=self.page_size,
                )
            return self._xml

    def _json_api(self) -> JsonApi:
        with self._lock:
            if self._json is None:
                self._json = self._build_json()
            return self._json

    def _authorize(
        self, method: str, path: str, query: str, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        """What authenticates one XML API request in the configured mode."""
        auth = self.config.auth
        if isinstance(auth, GcsHmacAuth):
            host = host_header(self.cloudfront_origin())
            return self._signer().sign(method, host, path, query, headers)
        if isinstance(auth, GcsServiceAccountAuth):
            return {"authorization": f"Bearer {self._tokens().token(f'origin {self.name!r}')}"}
        return {}

    def _build_json(self) -> JsonApi:
        auth = self.config.auth
        storage = require("google.cloud.storage", "gcs")
        if isinstance(auth, GcsServiceAccountAuth):
            credentials, project = self._tokens().credentials()
            before_call: Callable[[], None] = self._refresh_for_data_plane
        else:
            credentials_module = require("google.auth.credentials", "gcs")
            credentials, project = credentials_module.AnonymousCredentials(), None
            before_call = _nothing
        endpoint = self.config.endpoint_url
        options = {"api_endpoint": endpoint.rstrip("/")} if endpoint else None
        client = storage.Client(
            # The project only matters for creating buckets; a placeholder keeps the SDK from
            # probing the environment (and the metadata server) for one.
            project=self.config.project or project or "<none>",
            credentials=credentials,
            client_options=options,
        )
        # google-cloud-storage >= 3.x fetches the bucket's metadata in a background thread on
        # first use, to label OpenTelemetry spans. That is an extra request per client which
        # needs storage.buckets.get (a read-only object viewer lacks it) and nothing here
        # uses; the SDK skips it when its cache is unset.
        if getattr(client, "_bucket_metadata_cache", None) is not None:
            client._bucket_metadata_cache = None
        return JsonApi(
            client,
            self.config.bucket,
            retry=self._retry(),
            timeout=self._timeout(),
            page_size=self.page_size,
            before_call=before_call,
        )

    def _tokens(self) -> ServiceAccountTokens:
        auth = self.config.auth
        assert isinstance(auth, GcsServiceAccountAuth)
        with self._lock:
            if self._service_account is None:
                self._service_account = ServiceAccountTokens(
                    auth, self.secrets, origin=self.name, timeout=self._timeout()
                )
            return self._service_account

    def _refresh_for_data_plane(self) -> None:
        # Refreshing here, under the lock, keeps the SDK's session from refreshing the
        # shared credentials concurrently on its own.
        self._tokens().token(f"origin {self.name!r}")

    def _signer(self) -> V4Signer:
        auth = self.config.auth
        assert isinstance(auth, GcsHmacAuth)
        return V4Signer(
            access_id=self.secrets.resolve(auth.access_id).get_secret_value(),
            secret=self.secrets.resolve(auth.secret),
        )

    def _url_signer(self) -> V4Signer | RsaV4Signer:
        """The signer of edge URLs: the HMAC key's, or the service account key's."""
        if isinstance(self.config.auth, GcsHmacAuth):
            return self._signer()
        credentials, _ = self._tokens().credentials()
        return RsaV4Signer(credentials.service_account_email, credentials.sign_bytes)


def _nothing() -> None:
    return None
