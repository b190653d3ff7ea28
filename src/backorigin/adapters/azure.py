"""The Azure Blob Storage origin adapter, on azure-storage-blob (extra ``azure``).

A container (``account_url`` + ``container``, plus the origin's key prefix) is read through one
:class:`~azure.storage.blob.ContainerClient`, built on first use so that building the adapter
for its edge face (:meth:`AzureAdapter.cloudfront_origin`) needs neither the SDK nor a secret.
The adapter

* authenticates as the config says: ``anonymous`` (public container), ``sas``, ``account_key``
  (Shared Key) or ``connection_string`` (its ``AccountKey`` or ``SharedAccessSignature``);
  secrets are re-resolved on use, so a rotated secret rebuilds the client;
* retries only through the SDK's own :class:`~azure.storage.blob.ExponentialRetry`, configured
  from the origin's ``retries`` and ``backoff``;
* pins reads to the blob's ETag (``If-Match``; the SDK pins every later chunk to it too);
* passes bytes through raw: ``Content-Encoding`` is never decoded (``decompress=False``).

At the edge, :meth:`AzureAdapter.sign` appends a SAS to the origin request: the configured
one, or, with an account key, a short-lived read-only SAS for exactly the requested blob.

The SDK's exceptions are mapped to :mod:`backorigin.errors` in :func:`_translate`, nowhere else,
with the shared Azure status and error-code table (:func:`backorigin.adapters.read.status_error`).
"""

from __future__ import annotations

__all__ = ["AccountEndpoint", "AzureAdapter", "account_endpoint", "parse_connection_string"]

import base64
import binascii
import contextlib
import importlib
import logging
import re
import threading
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from backorigin import __version__
from backorigin.adapters.base import (
    OriginAdapter,
    extra_requirements,
    require,
    secret_reference,
)
from backorigin.adapters.headers import retry_after_seconds
from backorigin.adapters.read import ChunkBody, RawGet, content_range, status_error
from backorigin.config.origins import (
    AzureAccountKeyAuth,
    AzureConnectionStringAuth,
    AzureOrigin,
    AzureSasAuth,
)
from backorigin.config.secrets import SecretRef, SecretResolver
from backorigin.errors import (
    InvalidKey,
    InvalidRange,
    ObjectNotFound,
    OriginError,
    PreconditionFailed,
    TransientOriginError,
    Unauthenticated,
)
from backorigin.keys import decode_uri, validate_key
from backorigin.types import (
    ByteRange,
    Checksums,
    DeploymentNeeds,
    FunctionRole,
    GetOptions,
    ObjectInfo,
    OriginRequest,
    OriginSpec,
)

if TYPE_CHECKING:
    from azure.core.exceptions import AzureError
    from azure.storage.blob import BlobClient, BlobProperties, ContainerClient

CHUNK_SIZE = 4 * 1024 * 1024
"""Bytes per ranged GET of a streamed read (the SDK's first GET and every later chunk)."""
LIST_PAGE_SIZE = 1000
"""Blobs per page of a listing (the service allows up to 5000)."""
EDGE_SAS_LIFETIME = timedelta(minutes=15)
"""How long a SAS made at the edge stays valid: a SAS is checked when a request starts, so this
only needs to cover CloudFront's connection attempts, not the download."""
EDGE_SAS_SKEW = timedelta(minutes=5)
"""A SAS made at the edge starts this long in the past, for clocks that run behind ours."""
_RETRY_INCREMENT_BASE = 2  # ExponentialRetry: the n-th retry waits backoff + 2**n seconds

# Error codes Azure uses for credentials it could not verify (bad signature, expired SAS,
# missing or malformed auth). Other 403 codes (AuthorizationFailure, …PermissionMismatch,
# …ResourceTypeMismatch, …SourceIPMismatch, …ProtocolMismatch) refuse valid credentials.
_UNAUTHENTICATED_CODES = frozenset(
    {"AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation"}
)
# Query parameters that select another Azure operation or representation than "read this
# blob" (listing, block lists, snapshots, versions): never forwarded from a viewer with our SAS.
_OPERATION_PARAMS = frozenset(
    {"comp", "restype", "snapshot", "versionid", "prevsnapshot", "blockid", "blocklisttype"}
)


# --- endpoint and credentials ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountEndpoint:
    """Where a storage account's blob service lives, parsed from ``account_url``.

    Attributes:
        account: The storage account name.
        protocol: ``https`` or ``http``.
        host: Host name (or IP address).
        port: TCP port.
        path: ``""`` for ``ACCOUNT.blob.core.windows.net``; ``/ACCOUNT`` for path-style URLs
            (emulators such as Azurite, IP-style endpoints).
    """

    account: str
    protocol: Literal["https", "http"]
    host: str
    port: int
    path: str


def account_endpoint(account_url: str) -> AccountEndpoint:
    """Parse an account URL: the account is the first path segment of a path-style URL
    (``http://127.0.0.1:10000/devstoreaccount1``), else the host's first label
    (``https://ACCOUNT.blob.core.windows.net``)."""
    parts = urlsplit(account_url)
    protocol: Literal["https", "http"] = "https" if parts.scheme == "https" else "http"
    host = parts.hostname or ""
    path = parts.path.rstrip("/")
    segments = [s for s in path.split("/") if s]
    account = unquote(segments[0]) if segments else host.split(".", 1)[0]
    return AccountEndpoint(
        account=account,
        protocol=protocol,
        host=host,
        port=parts.port or (443 if protocol == "https" else 80),
        path=path,
    )


def parse_connection_string(text: str) -> dict[str, str]:
    """The ``Name=value`` settings of a storage connection string, names lower-cased.

    Raises:
        ValueError: a segment is not ``Name=value`` (the message never quotes the text).
    """
    settings: dict[str, str] = {}
    for index, segment in enumerate(s for s in text.strip().split(";") if s.strip()):
        name, sep, value = segment.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"segment {index + 1} of the connection string is not Name=value")
        settings[name.strip().lower()] = value.strip()
    return settings


@dataclass(frozen=True, slots=True)
class _Credentials:
    """What the configured auth resolves to right now. Equality compares the secret values,
    which is how a rotated secret is noticed; ``repr`` masks them."""

    account: str
    account_key: SecretStr | None = None
    sas: SecretStr | None = None


def _query_names(query: str) -> set[str]:
    return {unquote(p.partition("=")[0]).lower() for p in query.split("&") if p}


def _query_value(query: str, name: str) -> str | None:
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key) == name:
            return unquote(value)
    return None


def _append_sas(querystring: str, sas: str) -> str:
    """``querystring`` with ``sas`` appended; viewer parameters that would clash with the SAS
    or select another operation than a plain read are dropped."""
    drop = _query_names(sas) | _OPERATION_PARAMS
    kept = [
        p
        for p in querystring.lstrip("?").split("&")
        if p and unquote(p.partition("=")[0]).lower() not in drop
    ]
    return "&".join([*kept, sas])


class _RedactSignatures(logging.Filter):
    """Masks SAS signatures in urllib3's request lines: it logs every URL it requests at
    DEBUG, and with a SAS credential the URL carries ``sig=``."""

    _SIG = re.compile(r"(?i)(\bsig=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._SIG.sub(r"\1REDACTED", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._SIG.sub(r"\1REDACTED", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


_REDACTION = _RedactSignatures()


def _redact_transport_logs() -> None:
    # Idempotent: addFilter ignores a filter that is already installed.
    logging.getLogger("urllib3.connectionpool").addFilter(_REDACTION)


# --- error mapping --------------------------------------------------------------------------


def _error_code(exc: AzureError) -> str | None:
    code = getattr(exc, "error_code", None)
    if code is not None:
        return str(getattr(code, "value", code))
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("x-ms-error-code")
    return str(value) if value else None


def _retry_after(exc: AzureError) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    millis = headers.get("x-ms-retry-after-ms")
    if millis and millis.strip().isdigit():
        return int(millis) / 1000
    return retry_after_seconds(headers.get("retry-after"))


def _translate(exc: AzureError, what: str) -> OriginError:
    """The error for an SDK exception: the one place Azure failures are mapped.

    Messages carry the status and Azure's error code, never the SDK's text (it can quote the
    request URL with its SAS, or the signature the service computed).
    """
    from azure.core import exceptions as sdk  # already loaded: an SDK call raised `exc`

    response = getattr(exc, "response", None)
    status: int | None = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    code = _error_code(exc)
    if status is None and isinstance(exc, sdk.ResourceModifiedError):
        return PreconditionFailed(f"{what}: the blob changed")
    if status is None and isinstance(exc, sdk.ResourceNotFoundError):
        return ObjectNotFound(f"{what}: {type(exc).__name__}")
    if status is None and isinstance(exc, sdk.ClientAuthenticationError):
        # Raised before any request, e.g. an account key the SDK cannot sign with.
        return Unauthenticated(f"{what}: cannot sign the request ({type(exc).__name__})")
    if status is not None or code is not None:
        return status_error(
            status, what, protocol="azure", code=code, retry_after=_retry_after(exc)
        )
    if isinstance(exc, sdk.ServiceRequestError | sdk.ServiceResponseError | sdk.HttpResponseError):
        # Connection refused or reset, timeouts, a body cut short: worth a later retry.
        return TransientOriginError(f"{what}: connection failed ({type(exc).__name__})")
    return OriginError(f"{what}: {type(exc).__name__}")


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Run SDK calls, raising :func:`_translate`'s error for any SDK exception."""
    sdk = require("azure.core.exceptions", "azure")
    try:
        yield
    except sdk.AzureError as exc:
        raise _translate(exc, what) from exc


# --- the adapter ----------------------------------------------------------------------------


def _stream(chunks: Iterator[bytes], what: str) -> Generator[bytes]:
    with _translated(what):
        for chunk in chunks:
            if chunk:
                yield chunk


def _total_size(content_range: str | None) -> int | None:
    """``N`` of a ``bytes a-b/N`` Content-Range."""
    _, _, total = (content_range or "").rpartition("/")
    return int(total) if total.strip().isdigit() else None


def _resolve(range: ByteRange, size: int, what: str) -> tuple[int, int]:
    try:
        return range.resolve(size)
    except InvalidRange as exc:
        raise InvalidRange(f"{what}: {exc}") from None


def _quoted(etag: str | None) -> str | None:
    # Listings state ETags without quotes, HEAD/GET with them; versions must compare equal.
    if etag is None or etag.startswith(('"', 'W/"')):
        return etag
    return f'"{etag}"'


class AzureAdapter(OriginAdapter[AzureOrigin]):
    """Reads blobs from one Azure Blob Storage container and signs CloudFront's requests.

    Every auth mode works both in the copy path and at the edge (see the auth classes in
    :mod:`backorigin.config.origins`).

    Args:
        config: The origin's config.
        secrets: Resolves the auth secrets.
        chunk_size: Bytes per GET of a streamed read (default :data:`CHUNK_SIZE`).
        list_page_size: Blobs per page of a listing (default :data:`LIST_PAGE_SIZE`).
    """

    config_model: ClassVar[type[AzureOrigin]] = AzureOrigin

    @classmethod
    def deployment(cls, config: AzureOrigin, role: FunctionRole) -> DeploymentNeeds:
        """The ``azure`` extra for the fetcher; at the edge, only when no recipe can be made.

        The edge signs from :meth:`edge_recipe` with the standard library: a SAS token is
        appended, and an account key (alone or in a connection string) signs a per-blob SAS.
        Only an account key whose recipe cannot be made here (the SDK, which names the REST
        version to sign for, is not installed where the bundle is built) leaves the edge to
        the SDK's Shared Key policy, and then the bundle needs it.
        """
        if role == "fetcher":
            return DeploymentNeeds(packages=extra_requirements("azure"))
        keyed = isinstance(config.auth, AzureAccountKeyAuth | AzureConnectionStringAuth)
        if keyed and cls.edge_recipe(config) is None:
            return DeploymentNeeds(packages=extra_requirements("azure"))
        return DeploymentNeeds()

    @classmethod
    def edge_recipe(cls, config: AzureOrigin) -> Mapping[str, Any] | None:
        """Every mode but ``anonymous``: a SAS appended (``azure_sas``).

        With an account key (alone or in a connection string) the edge signs the per-blob
        SAS itself, for the REST version the installed SDK signs with (read from a SAS it
        makes with a dummy key); without the SDK at bundle time only ``sas`` is lean.
        """
        auth = config.auth
        if isinstance(auth, AzureSasAuth):
            source, ref = "sas", auth.token
        elif isinstance(auth, AzureAccountKeyAuth):
            source, ref = "account_key", auth.account_key
        elif isinstance(auth, AzureConnectionStringAuth):
            source, ref = "connection_string", auth.connection_string
        else:
            return None
        endpoint = account_endpoint(config.account_url)
        recipe: dict[str, Any] = {
            "kind": "azure_sas",
            "source": source,
            "secret": secret_reference(ref),
            "account": endpoint.account,
            "container": config.container,
            "prefix": config.prefix,
            "https": endpoint.protocol == "https",
        }
        if source != "sas":
            version = _sdk_sas_version()
            if version is None:
                return None
            recipe["version"] = version
        return recipe

    def __init__(
        self,
        config: AzureOrigin,
        *,
        secrets: SecretResolver | None = None,
        chunk_size: int = CHUNK_SIZE,
        list_page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        super().__init__(config, secrets=secrets)
        if chunk_size <= 0 or not 0 < list_page_size <= 5000:
            raise ValueError("chunk_size must be > 0 and list_page_size in 1..5000")
        self.chunk_size = chunk_size
        self.list_page_size = list_page_size
        self.endpoint = account_endpoint(config.account_url)
        self._lock = threading.Lock()
        self._client: ContainerClient | None = None
        self._client_credentials: _Credentials | None = None

    # --- data plane ------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``: size, ETag (also the version), content headers, metadata, and
        the MD5 when the blob has one (blobs committed from staged blocks often do not)."""
        blob = self._blob(key)
        with _translated(f"HEAD {key!r} at origin {self.name!r}"):
            properties = blob.get_blob_properties()
        return self._info(key, properties)

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        """One download of ``key`` (or ``options.range`` of it), raw, pinned to the ETag.

        The SDK fetches the window in GETs of ``chunk_size`` bytes, every one after the
        first pinned to the ETag the first one saw. Azure's ``x-ms-range`` has no suffix
        form, so a suffix range costs a properties request first (the copy engine never
        asks for one).
        """
        blob = self._blob(key)
        range = options.range
        what = f"GET {key!r}{f' ({range})' if range else ''} at origin {self.name!r}"
        with _translated(what):
            pin = self._pin(options.etag_condition())
            offset = length = None
            if range is not None and range.kind == "suffix":
                properties = blob.get_blob_properties(**pin)
                start, stop = _resolve(range, properties.size, what)
                pin = self._pin(_quoted(properties.etag))
                offset, length = start, stop - start
            elif range is not None:
                offset = range.start
                length = None if range.stop is None else range.stop - range.start
            downloader = blob.download_blob(
                offset=offset, length=length, max_concurrency=1, decompress=False, **pin
            )
            properties = downloader.properties
            chunks = downloader.chunks()
        first, last, total = content_range(properties.content_range) or (None, None, None)
        served: tuple[int, int] | None = None
        if first is not None and last is not None and total is not None:
            # The SDK writes the requested end here, not the service's: clamp it at EOF.
            size, served = total, (first, min(last + 1, total))
        elif offset:
            raise OriginError(f"{what}: the answer states no usable Content-Range")
        else:
            size = int(properties.size)
        info = replace(self._info(key, properties), size=size)
        return RawGet(body=ChunkBody(_stream(chunks, what)), info=info, served=served)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every blob whose key starts with ``prefix``, a page at a time, keys relative to the
        configured prefix. Directory markers of hierarchical-namespace accounts are skipped."""
        base = self.config.prefix
        what = f"LIST {prefix!r} at origin {self.name!r}"
        container = self._container()
        with _translated(what):
            pages = container.list_blobs(
                name_starts_with=(base + prefix) or None,
                include=["metadata"],
                results_per_page=self.list_page_size,
            ).by_page()
            for page in pages:
                for properties in page:
                    if (properties.metadata or {}).get("hdi_isfolder") == "true":
                        continue
                    yield self._info(properties.name[len(base) :], properties)

    def close(self) -> None:
        """Close the SDK client's connections."""
        with self._lock:
            client, self._client = self._client, None
            self._client_credentials = None
        if client is not None:
            client.close()

    # --- edge plane ------------------------------------------------------------------------

    def cloudfront_origin(self) -> OriginSpec:
        """``ACCOUNT.blob.core.windows.net`` with origin path ``/CONTAINER`` (for path-style
        URLs such as Azurite's, ``/ACCOUNT/CONTAINER`` on the emulator's host and port)."""
        endpoint = self.endpoint
        return OriginSpec(
            domain=endpoint.host,
            path=f"{endpoint.path}/{self.config.container}",
            protocol=endpoint.protocol,
            port=endpoint.port,
        )

    def sign(self, request: OriginRequest) -> OriginRequest:
        """Append a SAS to the origin request's query string (and ``x-ms-version``).

        ``anonymous``: the request is returned unchanged. ``sas`` (or a connection string
        with a SAS): the configured token. ``account_key`` (or a connection string with a
        key): a read-only SAS for exactly the blob ``request.uri`` names, valid from
        :data:`EDGE_SAS_SKEW` ago for :data:`EDGE_SAS_LIFETIME`, HTTPS-only for an https
        endpoint. Viewer query parameters that would clash with the SAS, or select another
        operation than a read (``comp``, ``snapshot``, ``versionid``, …), are dropped.

        Raises:
            InvalidKey: ``request.uri`` is not a valid key below the origin's prefix.
            Unauthenticated: the account key or connection string cannot be used.
        """
        credentials = self._credentials()
        if credentials.account_key is not None:
            sas = self._blob_sas(credentials, self._blob_name_of(request.uri))
        elif credentials.sas is not None:
            sas = credentials.sas.get_secret_value()
        else:
            return request
        signed = request.with_query(_append_sas(request.querystring, sas))
        version = _query_value(sas, "sv")
        # Pin the REST version to the one the SAS was made for, as the SDK does.
        return signed.with_headers({"x-ms-version": version}) if version else signed

    # --- internals -------------------------------------------------------------------------

    def _blob_name(self, key: str) -> str:
        return validate_key(self.config.prefix + key)

    def _blob(self, key: str) -> BlobClient:
        name = self._blob_name(key)  # refuse a bad key before building a client
        return self._container().get_blob_client(name)

    def _blob_name_of(self, uri: str) -> str:
        name = decode_uri(uri)
        if not name.startswith(self.config.prefix):
            raise InvalidKey(f"the URI is not below the origin's prefix {self.config.prefix!r}")
        return name

    @staticmethod
    def _pin(etag: str | None) -> dict[str, Any]:
        if etag is None:
            return {}
        from azure.core import MatchConditions  # loaded with the client

        return {"etag": etag, "match_condition": MatchConditions.IfNotModified}

    def _secret(self, ref: SecretRef) -> SecretStr:
        return self.secrets.resolve(ref)

    def _credentials(self) -> _Credentials:
        """Resolve the configured auth (the resolver caches; rotation is picked up)."""
        auth = self.config.auth
        account = self.endpoint.account
        if isinstance(auth, AzureSasAuth):
            token = self._secret(auth.token).get_secret_value().strip().lstrip("?")
            return _Credentials(account, sas=SecretStr(token))
        if isinstance(auth, AzureAccountKeyAuth):
            key = self._secret(auth.account_key)
            return _Credentials(account, account_key=_checked_key(key, auth.account_key))
        if isinstance(auth, AzureConnectionStringAuth):
            ref = auth.connection_string
            try:
                settings = parse_connection_string(self._secret(ref).get_secret_value())
            except ValueError as exc:
                raise Unauthenticated(f"{ref.secret.describe()}: {exc}") from None
            account = settings.get("accountname") or account
            if settings.get("accountkey"):
                key = _checked_key(SecretStr(settings["accountkey"]), ref)
                return _Credentials(account, account_key=key)
            if settings.get("sharedaccesssignature"):
                sas = settings["sharedaccesssignature"].lstrip("?")
                return _Credentials(account, sas=SecretStr(sas))
        return _Credentials(account)

    def _container(self) -> ContainerClient:
        credentials = self._credentials()
        with self._lock:
            if self._client is None or self._client_credentials != credentials:
                # A replaced client is left to the garbage collector: another thread may
                # still be streaming through it.
                self._client = self._build(credentials)
                self._client_credentials = credentials
            return self._client

    def _build(self, credentials: _Credentials) -> ContainerClient:
        blob = require("azure.storage.blob", "azure")
        config = self.config
        credential: Any = None
        if credentials.account_key is not None:
            credential = {
                "account_name": credentials.account,
                "account_key": credentials.account_key.get_secret_value(),
            }
        elif credentials.sas is not None:
            _redact_transport_logs()
            azure_credentials = require("azure.core.credentials", "azure")
            credential = azure_credentials.AzureSasCredential(credentials.sas.get_secret_value())
        retry = blob.ExponentialRetry(
            initial_backoff=config.backoff,
            increment_base=_RETRY_INCREMENT_BASE,
            retry_total=config.retries,
            retry_connect=config.retries,
            retry_read=config.retries,
            retry_status=config.retries,
            random_jitter_range=min(config.backoff, 1.0),
        )
        client: ContainerClient = blob.ContainerClient(
            account_url=config.account_url,
            container_name=config.container,
            credential=credential,
            retry_policy=retry,
            connection_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            max_single_get_size=self.chunk_size,
            max_chunk_get_size=self.chunk_size,
            user_agent=f"backorigin/{__version__}",
        )
        return client

    def _blob_sas(self, credentials: _Credentials, blob_name: str) -> str:
        blob = require("azure.storage.blob", "azure")
        assert credentials.account_key is not None
        now = datetime.now(UTC)
        sas: str = blob.generate_blob_sas(
            account_name=credentials.account,
            container_name=self.config.container,
            blob_name=blob_name,
            account_key=credentials.account_key.get_secret_value(),
            permission=blob.BlobSasPermissions(read=True),
            start=now - EDGE_SAS_SKEW,
            expiry=now + EDGE_SAS_LIFETIME,
            protocol="https" if self.endpoint.protocol == "https" else None,
        )
        return sas

    def _info(self, key: str, properties: BlobProperties) -> ObjectInfo:
        settings = properties.content_settings
        md5 = settings.content_md5
        etag = _quoted(properties.etag)
        metadata: Mapping[str, str] = MappingProxyType(
            {name.lower(): value for name, value in (properties.metadata or {}).items()}
        )
        return ObjectInfo(
            key=key,
            size=int(properties.size),
            etag=etag,
            version=etag,
            last_modified=properties.last_modified,
            content_type=settings.content_type,
            content_encoding=settings.content_encoding,
            cache_control=settings.cache_control,
            content_disposition=settings.content_disposition,
            content_language=settings.content_language,
            metadata=metadata,
            checksums=Checksums(md5=bytes(md5) if md5 and len(md5) == 16 else None),
        )


def _sdk_sas_version() -> str | None:
    """The ``sv`` the installed SDK writes into the SAS it makes, or None without the SDK."""
    try:
        blob = importlib.import_module("azure.storage.blob")
    except ImportError:
        return None
    sas = blob.generate_blob_sas(
        account_name="account",
        container_name="container",
        blob_name="blob",
        account_key=base64.b64encode(b"not a key").decode(),
        permission="r",
        expiry=datetime.now(UTC) + EDGE_SAS_LIFETIME,
    )
    return _query_value(sas, "sv")


def _checked_key(key: SecretStr, ref: SecretRef) -> SecretStr:
    """The account key, if it is base64 (the SDK would fail later with a vaguer error)."""
    try:
        base64.b64decode(key.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthenticated(
            f"the account key in {ref.secret.describe()} is not valid base64"
        ) from None
    return key
