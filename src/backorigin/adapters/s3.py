"""The S3-compatible origin adapter: a bucket in another account or region, or any store that
speaks the S3 API (``endpoint_url``), read with boto3.

The adapter

* builds one boto3 client per adapter, on first use (importing boto3 costs ~100 ms, which the
  edge function only pays on a miss), with botocore's *standard* retry mode, the configured
  timeouts, a connection pool sized for parallel ranged reads, and checksums computed and
  validated only where S3 requires them (many S3-compatible stores reject the newer defaults);
* authenticates with the default credential chain, a static key pair from secret references,
  or an assumed IAM role whose credentials botocore refreshes itself
  (:class:`botocore.credentials.DeferredRefreshableCredentials`);
* pins reads to one version of the object with ``If-Match`` and checks the answer's ETag and
  VersionId (see :func:`version_token`), so a replaced object fails with
  :class:`PreconditionFailed` instead of mixing bytes of two versions;
* streams bodies raw (``Content-Encoding`` is never decoded);
* reads public buckets unsigned (auth mode ``anonymous``), the one mode that works at the
  edge: CloudFront adds ``X-Amz-Cf-Id`` after the edge function, and S3 refuses a signed
  request that carries an ``x-amz-*`` header it did not sign (:meth:`S3Adapter.sign`).

botocore's exceptions are translated into :mod:`backorigin.errors` in :func:`_translate` and
nowhere else, with the shared S3 status and error-code table
(:func:`backorigin.adapters.read.status_error`).
"""

from __future__ import annotations

__all__ = ["S3Adapter", "checksums_from_head", "version_token"]

import base64
import binascii
import re
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal, cast
from urllib.parse import urlsplit

from backorigin import __version__
from backorigin.adapters.base import OriginAdapter
from backorigin.adapters.headers import retry_after_seconds
from backorigin.adapters.read import RawGet, content_range, status_error
from backorigin.config.origins import (
    OriginConfig,
    S3AccessKeyAuth,
    S3AnonymousAuth,
    S3AssumeRoleAuth,
    S3DefaultAuth,
    S3Origin,
)
from backorigin.config.secrets import SecretResolver
from backorigin.errors import (
    OriginError,
    PermissionDenied,
    TransientOriginError,
    Unauthenticated,
)
from backorigin.keys import validate_key
from backorigin.types import (
    AWS_PARTITION,
    Checksums,
    DeploymentNeeds,
    FunctionRole,
    GetOptions,
    IamStatement,
    ObjectInfo,
    OriginRequest,
    OriginSpec,
)

if TYPE_CHECKING:
    from botocore.credentials import CredentialProvider, Credentials, ReadOnlyCredentials
    from botocore.response import StreamingBody
    from botocore.session import Session as BotocoreSession
    from mypy_boto3_s3 import S3Client

CHUNK_SIZE = 256 * 1024
"""Bytes per chunk of a streamed read."""
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
"""The ``x-amz-content-sha256`` of a signed origin request: CloudFront sends no body."""
DEFAULT_REGION = "us-east-1"
"""The region requests are signed for when the config names none."""
_POOL_SIZE = 32  # connections kept per client; the copy engine reads ranges in parallel

_MD5_ETAG = re.compile(r'^"?([0-9A-Fa-f]{32})"?$')
_READ_SIZE = 1024 * 1024  # bytes one readinto of a body asks for at most
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# (response field, Checksums attribute, digest size) of S3's additional checksums.
_ADDITIONAL_CHECKSUMS = (
    ("ChecksumCRC32C", "crc32c", 4),
    ("ChecksumCRC32", "crc32", 4),
    ("ChecksumSHA1", "sha1", 20),
    ("ChecksumSHA256", "sha256", 32),
)
# SSE modes whose ETag is still the MD5 of the plaintext; SSE-KMS and SSE-C ETags are not.
_MD5_ETAG_SSE = frozenset({None, "AES256"})


# --- error mapping --------------------------------------------------------------------------


def _retry_after(headers: Mapping[str, str]) -> float | None:
    return retry_after_seconds(headers.get("retry-after"))


def _certificate_failure(exc: BaseException) -> bool:
    """Whether a botocore SSLError was caused by certificate verification (not retryable)."""
    seen: list[object] = [exc, getattr(exc, "kwargs", {}).get("error")]
    while seen:
        item = seen.pop()
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        if isinstance(item, BaseException):
            seen.extend(a for a in item.args if isinstance(a, BaseException))
            if item.__cause__ is not None:
                seen.append(item.__cause__)
    return False


def _sdk_errors() -> tuple[type[BaseException], ...]:
    """The exception classes :func:`_translate` understands (imported on first use)."""
    import urllib3.exceptions
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, urllib3.exceptions.HTTPError)


def _translate(exc: BaseException, what: str) -> OriginError:
    """The error for a botocore / transport failure: the one exception mapping of this adapter.

    Messages carry the S3 error code, the operation and the HTTP status, never the server's
    message text or request details (which may echo credentials or signed URLs).
    """
    from botocore import exceptions as bce

    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "")
        status = int(meta.get("HTTPStatusCode") or 0)
        message = f"{what}: {exc.operation_name} failed with {code or 'an error'} (HTTP {status})"
        if code == "InvalidObjectState":
            return PermissionDenied(f"{message}: the object is archived; restore it first")
        if status in (301, 307) or code == "AuthorizationHeaderMalformed":
            return OriginError(f"{message}: check the origin's region and endpoint_url")
        headers = meta.get("HTTPHeaders", {})
        return status_error(
            status or None,
            f"{what}: {exc.operation_name}",
            protocol="s3",
            code=code or None,
            retry_after=_retry_after(headers),
        )
    name = type(exc).__name__
    if isinstance(
        exc,
        bce.NoCredentialsError
        | bce.PartialCredentialsError
        | bce.CredentialRetrievalError
        | bce.TokenRetrievalError
        | bce.UnauthorizedSSOTokenError,
    ):
        return Unauthenticated(f"{what}: no usable credentials ({name})")
    if isinstance(exc, bce.SSLError) and _certificate_failure(exc):
        # Retrying cannot fix a certificate: say so instead of looping through the queue.
        return OriginError(f"{what}: TLS certificate verification failed")
    if isinstance(exc, bce.ConnectTimeoutError | bce.EndpointConnectionError):
        return TransientOriginError(f"{what}: cannot connect ({name})")
    if isinstance(exc, bce.ReadTimeoutError):
        return TransientOriginError(f"{what}: read timed out ({name})")
    if isinstance(
        exc, bce.HTTPClientError | bce.IncompleteReadError | bce.ResponseStreamingError
    ) or not isinstance(exc, bce.BotoCoreError):
        return TransientOriginError(f"{what}: connection broken ({name})")
    return OriginError(f"{what}: request failed ({name})")


# --- version tokens and metadata ---------------------------------------------------------------


def version_token(etag: str | None, version_id: str | None) -> str | None:
    """The version token of an S3 object: its VersionId in a versioned bucket, else its ETag.

    VersionId ``null`` (objects written while versioning was off or suspended) is not an
    identity, since the next write replaces that version in place, so such objects are
    known by their ETag. The token is compared, never taken apart: the read pins with the
    ETag (``If-Match``) and the shared read path compares the answer's token.
    """
    if version_id and version_id != "null":
        return version_id
    return etag or None


def _b64_digest(value: object, size: int) -> bytes | None:
    if not isinstance(value, str) or "-" in value:  # "-N": a checksum of part checksums
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def checksums_from_head(response: Mapping[str, Any]) -> Checksums:
    """The whole-object digests a HeadObject/GetObject answer states.

    * MD5 from the ETag, when it is one: 32 hex digits (a multipart ETag ends in ``-N``), and
      the object is not encrypted with SSE-KMS or SSE-C (whose ETags are not the MD5 of the
      data; only unencrypted and SSE-S3 objects are trusted).
    * The additional checksums (CRC32C, CRC32, SHA-1, SHA-256) asked for with
      ``ChecksumMode=ENABLED``, when they cover the whole object (type ``FULL_OBJECT``), not
      the parts of a multipart upload (``COMPOSITE``).
    """
    found: dict[str, bytes] = {}
    match = _MD5_ETAG.match(str(response.get("ETag") or ""))
    if (
        match
        and response.get("ServerSideEncryption") in _MD5_ETAG_SSE
        and not response.get("SSECustomerAlgorithm")
    ):
        found["md5"] = bytes.fromhex(match.group(1))
    if response.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        for field, name, size in _ADDITIONAL_CHECKSUMS:
            digest = _b64_digest(response.get(field), size)
            if digest is not None:
                found[name] = digest
    return Checksums(**found)


def _expires(response: Mapping[str, Any]) -> str | None:
    """The raw ``Expires`` header: botocore parses it into a datetime (or drops an invalid
    one) and keeps the original text in ``ExpiresString``."""
    raw = response.get("ExpiresString")
    if isinstance(raw, str) and raw:
        return raw
    parsed = response.get("Expires")
    if isinstance(parsed, datetime):
        return format_datetime(parsed.astimezone(UTC), usegmt=True)
    return parsed if isinstance(parsed, str) and parsed else None


def _viewer_auth(name: str) -> bool:
    """Whether a (lower-case) request header is auth a viewer may not pass to the origin."""
    return name == "authorization" or name.startswith("x-amz-")


# --- credentials ---------------------------------------------------------------------------------


class _FixedCredentialProvider:
    """A botocore credential provider that hands out credentials made by the adapter.

    Registered as a session's only provider, so that clients of that session use exactly these
    credentials (refreshing ones included) and never fall back to the default chain.
    """

    METHOD = "backorigin"
    CANONICAL_NAME = "backorigin"

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


# --- the adapter ------------------------------------------------------------------------------


class S3Adapter(OriginAdapter[S3Origin]):
    """Reads objects from an S3 bucket or an S3-compatible store.

    Where each auth mode works (see their config classes):

    * ``default``: botocore's credential chain (the fetcher's role); copy path.
    * ``access_key``: both halves from secret references, resolved on first use; copy path.
    * ``assume_role``: STS AssumeRole with the chain's identity (role ARN, external id and
      session name from the config), refreshed by botocore shortly before expiry; copy path.
    * ``anonymous``: unsigned requests to a public bucket; copy path and edge.

    The signing modes cannot serve CloudFront: it adds ``X-Amz-Cf-Id`` to origin requests
    after the edge function ran, and S3 refuses a SigV4 request carrying an unsigned
    ``x-amz-*`` header. Config validation keeps them out of the edge (see
    :data:`backorigin.config.origins.S3_EDGE_SIGNING_PROBLEM`).

    Args:
        config: The origin's config.
        secrets: Resolves the access key's secret references.
        session: A botocore session to take the default credential chain (and, for
            ``assume_role``, the identity that assumes the role) from; a fresh one by
            default. For tests and for callers that manage credentials themselves.
    """

    config_model: ClassVar[type[S3Origin]] = S3Origin
    chunk_size: ClassVar[int] = CHUNK_SIZE

    @classmethod
    def deployment(cls, config: S3Origin, role: FunctionRole) -> DeploymentNeeds:
        """What reading an AWS S3 bucket needs from the function's own role.

        boto3 is part of the core (and of the Lambda runtime), so no package is declared.
        The role that signs needs the access: read on the bucket and prefix with the default
        chain, ``sts:AssumeRole`` on the role to assume. Static keys carry their own user's
        access, and an S3-compatible store (``endpoint_url``) is not governed by IAM.
        """
        del role  # the same access wherever the origin is read
        if config.endpoint_url is not None:
            return DeploymentNeeds()
        if isinstance(config.auth, S3AssumeRoleAuth):
            statement = IamStatement(actions=["sts:AssumeRole"], resources=[config.auth.role_arn])
            return DeploymentNeeds(statements=[statement])
        if not isinstance(config.auth, S3DefaultAuth):
            return DeploymentNeeds()
        bucket = f"arn:{AWS_PARTITION}:s3:::{config.bucket}"
        return DeploymentNeeds(
            statements=[
                IamStatement(
                    actions=["s3:GetObject"],
                    resources=[f"{bucket}/{config.prefix}*"],
                    wildcard_reason=(
                        f"reading legacy origin {config.name!r}: object keys are known only "
                        "at run time; only its bucket and prefix are granted"
                    ),
                ),
                # ListBucket: a missing key answers 404 rather than 403.
                IamStatement(actions=["s3:ListBucket"], resources=[bucket]),
            ]
        )

    def __init__(
        self,
        config: S3Origin,
        *,
        secrets: SecretResolver | None = None,
        session: BotocoreSession | None = None,
    ) -> None:
        super().__init__(config, secrets=secrets)
        self._base_session = session
        self._lock = threading.Lock()
        self._s3: S3Client | None = None
        self._credential_session: BotocoreSession | None = None

    # --- data plane ------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``, with the checksums S3 states (see :func:`checksums_from_head`)."""
        name = self._object_key(key)
        what = f"HEAD {key!r} at origin {self.name!r}"
        try:
            response = self._client(what).head_object(
                Bucket=self.config.bucket, Key=name, ChecksumMode="ENABLED"
            )
        except _sdk_errors() as exc:
            raise _translate(exc, what) from exc
        return _info(key, response, int(response.get("ContentLength", 0)))

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        """One GetObject of ``key`` (or ``options.range`` of it), raw.

        The pin is sent as ``If-Match`` (its ETag); the shared read path compares the
        answer's VersionId and size as well. The VersionId is deliberately not sent as
        ``VersionId``: S3 would serve that version even after the object was replaced, and
        the contract is to fail with :class:`PreconditionFailed` once the object is no longer
        that version. A whole-object read asks for the additional checksums
        (``ChecksumMode``), so its metadata is what :meth:`head` says.
        """
        name = self._object_key(key)
        range = options.range
        what = f"GET {key!r}{f' ({range})' if range else ''} at origin {self.name!r}"
        params: dict[str, Any] = {"Bucket": self.config.bucket, "Key": name}
        if range is not None:
            params["Range"] = range.header()
        else:
            params["ChecksumMode"] = "ENABLED"
        etag = options.etag_condition()
        if etag is not None:
            params["IfMatch"] = etag
        try:
            response = self._client(what).get_object(**params)
        except _sdk_errors() as exc:
            raise _translate(exc, what) from exc
        body = response["Body"]
        try:
            served: tuple[int, int] | None = None
            parsed = content_range(response.get("ContentRange"))
            if response.get("ContentRange"):
                first, last, total = parsed if parsed is not None else (None, None, None)
                if first is None or last is None or total is None:
                    raise OriginError(f"{what}: an answer with an unusable Content-Range")
                served, size = (first, last + 1), total
            else:
                length = response.get("ContentLength")
                if not isinstance(length, int):
                    raise OriginError(f"{what}: the answer states no length")
                size = length
            info = _info(key, response, size, whole_body=served is None)
        except BaseException:
            body.close()
            raise
        return RawGet(body=_S3Body(body, what), info=info, served=served)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, via ListObjectsV2 pages.

        Listings state no VersionId and no encryption, so the version tokens are ETag tokens
        and no checksums are given; :meth:`head` an object for those.
        """
        what = f"LIST {prefix!r} at origin {self.name!r}"
        strip = len(self.config.prefix)
        try:
            pages = (
                self._client(what)
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.config.bucket, Prefix=self.config.prefix + prefix)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    etag = item.get("ETag")
                    yield ObjectInfo(
                        key=item["Key"][strip:],
                        size=int(item.get("Size", 0)),
                        etag=etag,
                        version=version_token(etag, None),
                        last_modified=item.get("LastModified"),
                    )
        except _sdk_errors() as exc:
            raise _translate(exc, what) from exc

    def close(self) -> None:
        """Close the client's pooled connections."""
        with self._lock:
            client, self._s3 = self._s3, None
        if client is not None:
            client.close()

    @classmethod
    def environment_endpoint(
        cls, config: OriginConfig, environ: Mapping[str, str]
    ) -> tuple[str, str] | None:
        """``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, as botocore reads them.

        None when the config sets ``endpoint_url`` or ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``
        is true (botocore's "service-specific endpoints" rules).
        """
        if getattr(config, "endpoint_url", None) is not None:
            return None
        if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() == "true":
            return None
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
            value = environ.get(name, "").strip()
            if value:
                return name, value
        return None

    # --- edge plane ------------------------------------------------------------------------

    def addressing_style(self) -> Literal["path", "virtual"]:
        """How requests name the bucket: in the path, or in the host name.

        ``auto`` means path style with ``endpoint_url`` (what S3-compatible stores expect),
        and for AWS virtual-hosted style unless the bucket name is not a plain DNS label
        (dots break TLS with virtual-hosted names).
        """
        style = self.config.addressing_style
        if style != "auto":
            return style
        if self.config.endpoint_url is not None:
            return "path"
        return "virtual" if _DNS_BUCKET.match(self.config.bucket) else "path"

    def signing_region(self) -> str:
        """The region SigV4 signatures are made for."""
        return self.config.region or DEFAULT_REGION

    def cloudfront_origin(self) -> OriginSpec:
        """The bucket's endpoint: ``BUCKET.s3.REGION.amazonaws.com`` with path ``""`` on AWS
        (virtual-hosted), or ``endpoint_url``'s host, port and protocol with path ``/BUCKET``
        (path style)."""
        bucket = self.config.bucket
        protocol: Literal["https", "http"] = "https"
        port = 443
        base_path = ""
        if self.config.endpoint_url is None:
            region = self.signing_region()
            suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
            host = f"s3.{region}.{suffix}"
        else:
            parts = urlsplit(self.config.endpoint_url)
            protocol = "https" if parts.scheme == "https" else "http"
            port = parts.port or (443 if protocol == "https" else 80)
            host = parts.hostname or ""
            base_path = parts.path.rstrip("/")
        if self.addressing_style() == "virtual":
            return OriginSpec(f"{bucket}.{host}", base_path, protocol, port)
        return OriginSpec(host, f"{base_path}/{bucket}", protocol, port)

    def sign(self, request: OriginRequest) -> OriginRequest:
        """The request as CloudFront must send it, signed with SigV4 unless ``anonymous``.

        A viewer's own ``authorization`` and ``x-amz-*`` headers are dropped in every mode:
        they would be taken as credentials or break the signature. So the returned request's
        headers are the whole set to send, not additions.

        ``anonymous``: nothing is added; this is the mode that works behind CloudFront.

        The signing modes sign with botocore's S3 signer: the method, the full path (origin
        path + ``uri``), the query string, ``host`` and the ``x-amz-*`` headers added here
        (``x-amz-date``, ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` and, for temporary
        credentials, ``x-amz-security-token``). Such a request is right for any client that
        sends it as it is, but not for CloudFront, which adds ``X-Amz-Cf-Id`` afterwards (S3
        then refuses it); validation keeps these modes off the edge.
        """
        kept = {name: value for name, value in request.headers.items() if not _viewer_auth(name)}
        if isinstance(self.config.auth, S3AnonymousAuth):
            return replace(request, headers=MappingProxyType(kept))
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.config import Config

        spec = self.cloudfront_origin()
        default_port = 443 if spec.protocol == "https" else 80
        host = spec.domain if spec.port == default_port else f"{spec.domain}:{spec.port}"
        query = f"?{request.querystring}" if request.querystring else ""
        url = f"{spec.protocol}://{host}{spec.path}{request.uri}{query}"
        what = f"signing {request.method} {request.uri!r} for origin {self.name!r}"
        aws_request = AWSRequest(
            method=request.method,
            url=url,
            headers={"host": host, "x-amz-content-sha256": UNSIGNED_PAYLOAD},
        )
        # S3SigV4Auth signs the payload hash over http unless told not to; CloudFront sends
        # no body, and UNSIGNED-PAYLOAD is what its own origin access control sends.
        aws_request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        S3SigV4Auth(self._frozen_credentials(what), "s3", self.signing_region()).add_auth(
            aws_request
        )
        added = {k.lower(): v for k, v in aws_request.headers.items() if k.lower() != "host"}
        return replace(request, headers=MappingProxyType({**kept, **added}))

    # --- internals -------------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        return validate_key(self.config.prefix + key)

    def _client(self, what: str) -> S3Client:
        client = self._s3
        if client is not None:
            return client
        with self._lock:
            if self._s3 is None:
                self._s3 = self._make_client(what)
            return self._s3

    def _botocore_config(self, **extra: Any) -> Any:
        from botocore.config import Config

        return Config(
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            retries={"mode": "standard", "max_attempts": self.config.retries},
            user_agent_extra=f"backorigin/{__version__}",
            **extra,
        )

    def _make_client(self, what: str) -> S3Client:
        import boto3.session

        style = self.config.addressing_style
        if style == "auto" and self.config.endpoint_url is not None:
            style = "path"
        config = self._botocore_config(
            max_pool_connections=_POOL_SIZE,
            s3={"addressing_style": style},
            # Newer botocore sends and demands CRC checksums by default, which many
            # S3-compatible stores reject; ranged reads cannot be validated anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        if isinstance(self.config.auth, S3AnonymousAuth):
            from botocore import UNSIGNED

            # Unsigned requests: no credential lookup at all, so the environment's
            # credentials are never sent to a public bucket's owner.
            config = config.merge(self._botocore_config(signature_version=UNSIGNED))
        region = self.config.region
        if region is None and self.config.endpoint_url is not None:
            region = DEFAULT_REGION  # what sign() uses; not whatever AWS_REGION says
        session = boto3.session.Session(botocore_session=self._session_with_credentials(what))
        return session.client(
            "s3", region_name=region, endpoint_url=self.config.endpoint_url, config=config
        )

    def _session_with_credentials(self, what: str) -> BotocoreSession:
        """A botocore session whose credentials are the configured auth mode's."""
        if self._credential_session is not None:
            return self._credential_session
        import botocore.session
        from botocore.credentials import (
            AssumeRoleCredentialFetcher,
            CredentialResolver,
            DeferredRefreshableCredentials,
        )
        from botocore.credentials import Credentials as BotocoreCredentials

        auth = self.config.auth
        if isinstance(auth, S3AccessKeyAuth):
            session = botocore.session.Session()
            credentials: Credentials = BotocoreCredentials(
                self.secrets.resolve(auth.access_key_id).get_secret_value(),
                self.secrets.resolve(auth.secret_access_key).get_secret_value(),
                method="backorigin-secret",
            )
        elif isinstance(auth, S3AssumeRoleAuth):
            base = self._base_session or botocore.session.Session()
            try:
                source = base.get_credentials()
            except _sdk_errors() as exc:
                raise _translate(exc, what) from exc
            if source is None:
                raise Unauthenticated(
                    f"{what}: the default credential chain has no identity to assume "
                    f"role {auth.role_arn} with"
                )
            extra: dict[str, Any] = {"RoleSessionName": auth.session_name}
            if auth.external_id is not None:
                extra["ExternalId"] = auth.external_id
            sts_client: Callable[..., Any] = partial(
                base.create_client,
                region_name=self.signing_region(),
                endpoint_url=auth.sts_endpoint_url,
                config=self._botocore_config(),
            )
            fetcher = AssumeRoleCredentialFetcher(
                sts_client, source, auth.role_arn, extra_args=extra
            )
            session = botocore.session.Session()
            credentials = DeferredRefreshableCredentials(
                refresh_using=fetcher.fetch_credentials, method="assume-role"
            )
        else:
            self._credential_session = self._base_session or botocore.session.Session()
            return self._credential_session
        session.register_component(
            "credential_provider",
            # Duck-typed: a CredentialProvider subclass would import botocore with this module.
            CredentialResolver([cast("CredentialProvider", _FixedCredentialProvider(credentials))]),
        )
        self._credential_session = session
        return session

    def _frozen_credentials(self, what: str) -> ReadOnlyCredentials:
        """The current credentials (refreshed if due), for signing one request."""
        try:
            with self._lock:
                session = self._session_with_credentials(what)
            credentials = session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials is not None else None
        except _sdk_errors() as exc:
            raise _translate(exc, what) from exc
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise Unauthenticated(f"{what}: the default credential chain found no credentials")
        return frozen


class _S3Body:
    """A GetObject body for the shared read path; closing it releases the connection."""

    def __init__(self, body: StreamingBody, what: str) -> None:
        self._body: StreamingBody | None = body
        self._what = what

    def readinto(self, buffer: memoryview) -> int:
        body = self._body
        if body is None:
            return 0
        try:
            # At most _READ_SIZE per call: a read that times out loses what it had, and the
            # resume asks for it again.
            return int(body.readinto(cast("IO[bytes]", buffer[:_READ_SIZE])) or 0)
        except _sdk_errors() as exc:
            raise _translate(exc, self._what) from exc

    def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()


def _info(
    key: str, response: Mapping[str, Any], size: int, *, whole_body: bool = True
) -> ObjectInfo:
    """ObjectInfo from a HeadObject or GetObject answer (``size``: the whole object's)."""
    etag = response.get("ETag")
    return ObjectInfo(
        key=key,
        size=size,
        etag=etag,
        version=version_token(etag, response.get("VersionId")),
        last_modified=response.get("LastModified"),
        content_type=response.get("ContentType"),
        content_encoding=response.get("ContentEncoding"),
        cache_control=response.get("CacheControl"),
        content_disposition=response.get("ContentDisposition"),
        content_language=response.get("ContentLanguage"),
        expires=_expires(response),
        metadata=MappingProxyType(
            {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}
        ),
        # A part's answer states the part's checksums (or none): only whole answers count.
        checksums=checksums_from_head(response) if whole_body else _md5_only(response),
    )


def _md5_only(response: Mapping[str, Any]) -> Checksums:
    return Checksums(md5=checksums_from_head(response).md5)
