"""Config models of the built-in origin types (``gcs``, ``azure``, ``http``, ``s3``).

Third-party origin types subclass :class:`OriginConfig` with their own ``type`` literal and
register an adapter whose ``config_model`` is that subclass (see ``backorigin.adapters``).
"""

from __future__ import annotations

__all__ = [
    "S3_EDGE_SIGNING_PROBLEM",
    "AuthMode",
    "AzureAccountKeyAuth",
    "AzureAnonymousAuth",
    "AzureConnectionStringAuth",
    "AzureOrigin",
    "AzureSasAuth",
    "GcsAnonymousAuth",
    "GcsHmacAuth",
    "GcsOrigin",
    "GcsServiceAccountAuth",
    "HttpBasicAuth",
    "HttpBearerAuth",
    "HttpHeadersAuth",
    "HttpNoAuth",
    "HttpOrigin",
    "OriginConfig",
    "S3AccessKeyAuth",
    "S3AnonymousAuth",
    "S3AssumeRoleAuth",
    "S3DefaultAuth",
    "S3Origin",
    "S3SigningAuth",
    "Strict",
    "bare_bucket_name",
    "origin_setting",
]

import re
import warnings
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from backorigin.config.secrets import SecretRef
from backorigin.config.units import Duration, parse_duration

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Strict(BaseModel):
    """Base of every config model: unknown fields are errors, inputs never echoed."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, defer_build=True
    )


class AuthMode(Strict):
    """Base of auth settings. Says where the mode can work: at the edge, in the copy path."""

    def edge_problem(self) -> str | None:
        """Why this mode cannot authenticate CloudFront's origin requests, or None if it can.

        The edge function signs requests inside Lambda@Edge: no environment variables, no
        instance metadata of another cloud, only what the config references.
        """
        return None


def check_key_prefix(value: str) -> str:
    """Validate a key prefix: relative, no ``.``/``..`` segments, no backslash or controls."""
    if value.startswith("/"):
        raise ValueError("a prefix must not start with '/'")
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("a prefix must not contain backslashes or control characters")
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError("a prefix must not contain '.' or '..' segments")
    return value


KeyPrefix = Annotated[str, AfterValidator(check_key_prefix)]
"""A key prefix such as ``media/`` (may be empty)."""


def check_http_url(value: str) -> str:
    """Validate an absolute http(s) URL without credentials, query or fragment."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; put them in auth")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return value


HttpUrl = Annotated[str, AfterValidator(check_http_url)]
"""An absolute ``http``/``https`` URL."""


def bare_bucket_name(value: object, scheme: str) -> object:
    """Refuse a bucket written as a URL (``gs://name``), naming the bare name to write.

    Args:
        value: The configured value (validated further by the field's own rules).
        scheme: The URL scheme people copy from their tools, e.g. ``gs`` or ``s3``.
    """
    if isinstance(value, str) and "://" in value:
        bare = value.split("://", 1)[1].split("/", 1)[0]
        raise ValueError(f"write a bucket name, without {scheme}:// or a path: {bare}")
    return value


_SETTINGS: dict[str, dict[str, Any]] = {
    "connect_timeout": {"gt": 0, "description": "TCP connect timeout."},
    "read_timeout": {
        "gt": 0,
        "description": "Longest wait for the next bytes of a response.",
    },
    "retries": {
        "ge": 0,
        "le": 20,
        "description": "Retries of a request that failed with 429, 5xx, a timeout or a reset "
        "(0 turns retries off).",
    },
    "backoff": {
        "ge": 0,
        "description": "Wait before the first retry; each later wait is about twice the one "
        "before, with jitter.",
    },
}


def origin_setting(name: str, default: float) -> Any:
    """The field of a shared origin setting, with an origin type's own default.

    The settings every origin has (``connect_timeout``, ``read_timeout``, ``retries``,
    ``backoff``) are declared on :class:`OriginConfig`; an origin type whose SDK wants
    another default redeclares the field with this, so the name, bounds and description
    stay the same everywhere::

        class MyOrigin(OriginConfig):
            type: Literal["mine"]
            read_timeout: Duration = origin_setting("read_timeout", 120.0)

    Args:
        name: One of ``connect_timeout``, ``read_timeout``, ``retries``, ``backoff``.
        default: The origin type's default.
    """
    return Field(default=default, **_SETTINGS[name])


class OriginConfig(Strict):
    """Fields every origin has. Subclasses add ``type: Literal[...]`` and their own fields.

    The connection settings (timeouts, retries, backoff) are shared: every adapter reads
    these names, and an origin type changes only their defaults (see :func:`origin_setting`).
    """

    name: str = Field(description="Unique name of the origin, used by routes.")
    type: str = Field(description="Origin type; selects the adapter.")
    prefix: KeyPrefix = Field(default="", description="Prepended to the key at the origin.")
    connect_timeout: Duration = origin_setting("connect_timeout", 5.0)
    read_timeout: Duration = origin_setting("read_timeout", 30.0)
    retries: int = origin_setting("retries", 4)
    backoff: Duration = origin_setting("backoff", 1.0)

    def edge_problem(self) -> str | None:
        """Why CloudFront cannot be sent to this origin by the edge function, or None.

        The default asks the ``auth`` settings, if the origin type has any.
        """
        auth = getattr(self, "auth", None)
        return auth.edge_problem() if isinstance(auth, AuthMode) else None

    def cloudfront_urls(self) -> dict[str, str]:
        """The configured URLs whose host and port CloudFront connects to, by field name.

        Used to check, before deploy, what CloudFront refuses at run time (IP-literal hosts,
        ports other than 80, 443 and 1024-65535). The default is none: an origin type whose
        CloudFront origin comes from a URL setting overrides this.
        """
        return {}

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                "must be 1-64 characters of letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value


# --- HTTP -------------------------------------------------------------------------------------


# Headers backorigin sets itself on origin requests; auth headers must not override them.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "accept-encoding",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class HttpNoAuth(AuthMode):
    """No credentials (a public web server)."""

    mode: Literal["none"] = "none"


class HttpBasicAuth(AuthMode):
    """HTTP Basic authentication."""

    mode: Literal["basic"]
    username: str
    password: SecretRef


class HttpBearerAuth(AuthMode):
    """``Authorization: Bearer <token>``."""

    mode: Literal["bearer"]
    token: SecretRef


class HttpHeadersAuth(AuthMode):
    """Arbitrary request headers whose values are secrets (e.g. an API key header)."""

    mode: Literal["headers"]
    headers: dict[str, SecretRef] = Field(min_length=1)

    @field_validator("headers")
    @classmethod
    def _check_names(cls, value: dict[str, SecretRef]) -> dict[str, SecretRef]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by backorigin and cannot be overridden")
        return value


HttpAuth = Annotated[
    HttpNoAuth | HttpBasicAuth | HttpBearerAuth | HttpHeadersAuth, Field(discriminator="mode")
]


class HttpOrigin(OriginConfig):
    """Any HTTP(S) server; objects live below ``base_url``."""

    type: Literal["http"]
    base_url: HttpUrl = Field(description="Objects are read from base_url + prefix + key.")
    auth: HttpAuth = Field(default_factory=HttpNoAuth)
    backoff: Duration = origin_setting("backoff", 0.5)
    max_redirects: int = Field(default=5, ge=0, le=20)
    redirect_hosts: list[str] = Field(
        default_factory=list,
        description="Other host names redirects may lead to (the base URL's host always may).",
    )
    metadata_header_prefix: str | None = Field(
        default=None,
        description="Response headers with this prefix (e.g. 'x-amz-meta-') are user metadata.",
    )

    def cloudfront_urls(self) -> dict[str, str]:
        return {"base_url": self.base_url}

    @field_validator("base_url")
    @classmethod
    def _directory(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("redirect_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for host in value:
            if not _HOSTNAME_RE.match(host):
                raise ValueError(
                    f"{host!r} is not a bare host name (no scheme, port or path), "
                    "e.g. cdn.example.com"
                )
        return [host.lower() for host in value]

    @field_validator("metadata_header_prefix")
    @classmethod
    def _header_prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError("must be the start of a header name, e.g. 'x-amz-meta-'")
        return value.lower() if value is not None else None


def _retries_within(budget: float, backoff: float) -> int:
    """How many retries, waiting ``backoff`` doubling up to 32 s, fit in ``budget`` seconds."""
    retries, waited, delay = 0, 0.0, max(backoff, 0.001)
    while retries < 20 and waited + delay <= budget:
        waited += delay
        retries += 1
        delay = min(delay * 2, 32.0)
    return retries


# --- Google Cloud Storage -----------------------------------------------------------------------


class GcsAnonymousAuth(AuthMode):
    """A public bucket, read without credentials.

    Works in the copy path and at the edge (CloudFront's request goes out unsigned).
    """

    mode: Literal["anonymous"] = "anonymous"


class GcsServiceAccountAuth(AuthMode):
    """A service account key (JSON) from a secret; Application Default Credentials without one.

    With ``credentials``: works in the copy path (an OAuth access token minted from the key
    through google-auth, cached until shortly before it expires, sent as ``Authorization:
    Bearer``) and at the edge (a ``GOOG4-RSA-SHA256`` signed URL, signed with the key
    itself: no token endpoint is called there). Without: Application Default Credentials,
    which exist only in the copy path (a machine or workload identity), never in
    Lambda@Edge, so an origin CloudFront reaches is rejected by validation.
    """

    mode: Literal["service_account"]
    credentials: SecretRef | None = None

    def edge_problem(self) -> str | None:
        if self.credentials is None:
            return (
                "service_account without credentials uses Application Default Credentials, "
                "which do not exist in Lambda@Edge; reference the key JSON in credentials"
            )
        return None


class GcsHmacAuth(AuthMode):
    """HMAC keys for the XML API (SigV4-style signatures).

    Works in the copy path and at the edge: both sign their requests with
    ``GOOG4-HMAC-SHA256`` (the XML API's form of AWS Signature Version 4). The copy path
    signs headers; the edge signs a URL (the signature in the query string, only ``host``
    signed), because CloudFront adds ``X-Amz-Cf-Id`` after the edge function and Cloud
    Storage refuses a request carrying ``x-amz-*`` and ``x-goog-*`` headers together.
    """

    mode: Literal["hmac"]
    access_id: SecretRef
    secret: SecretRef


GcsAuth = Annotated[
    GcsAnonymousAuth | GcsServiceAccountAuth | GcsHmacAuth, Field(discriminator="mode")
]


class GcsOrigin(OriginConfig):
    """A Google Cloud Storage bucket."""

    type: Literal["gcs"]
    bucket: str = Field(
        min_length=3,
        max_length=222,
        pattern=r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$",
        description="Bucket name (lower-case letters, digits, '-', '_' and '.').",
    )
    auth: GcsAuth = Field(default_factory=GcsAnonymousAuth)

    @field_validator("bucket", mode="before")
    @classmethod
    def _bare_bucket(cls, value: object) -> object:
        return bare_bucket_name(value, "gs")

    endpoint_url: HttpUrl | None = Field(
        default=None, description="Emulator or private endpoint instead of storage.googleapis.com."
    )
    project: str | None = None
    read_timeout: Duration = origin_setting("read_timeout", 60.0)
    retries: int = origin_setting("retries", 6)

    @model_validator(mode="before")
    @classmethod
    def _retry_timeout_is_retries(cls, data: Any) -> Any:
        """Read the deprecated ``retry_timeout`` (a time budget) as ``retries`` (a count)."""
        if not isinstance(data, dict) or "retry_timeout" not in data:
            return data
        data = dict(data)
        budget = parse_duration(data.pop("retry_timeout"))
        if "retries" in data:
            raise ValueError("retry_timeout is the deprecated name of retries; set only retries")
        backoff = parse_duration(data.get("backoff", 1.0))
        retries = _retries_within(budget, backoff)
        warnings.warn(
            f"origin {data.get('name', '?')!r}: retry_timeout is deprecated and will be removed "
            f"in the next release; write retries: {retries} (the number of retries that fit "
            f"in {budget:g}s of backoff) instead",
            FutureWarning,
            stacklevel=2,
        )
        data["retries"] = retries
        return data

    def cloudfront_urls(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}


# --- Azure Blob ---------------------------------------------------------------------------------


class AzureAnonymousAuth(AuthMode):
    """A container with public read access.

    Works in the copy path and at the edge (CloudFront requests go out unsigned).
    """

    mode: Literal["anonymous"] = "anonymous"


class AzureSasAuth(AuthMode):
    """A SAS token (query string) from a secret.

    Works in the copy path and at the edge: the edge appends the token to the origin
    request's query string. The token needs read permission on the container's blobs
    (``sp`` containing ``r``; ``l`` too for ``list``/prewarm) for as long as it is in use.
    """

    mode: Literal["sas"]
    token: SecretRef


class AzureAccountKeyAuth(AuthMode):
    """The storage account key from a secret (account name taken from ``account_url``).

    Works in the copy path (Shared Key) and at the edge, where each origin request gets a
    short-lived, read-only SAS for exactly the blob it asks for. The account name is the first
    label of the host (``ACCOUNT.blob.core.windows.net``) or, for path-style URLs such as
    Azurite's ``http://127.0.0.1:10000/devstoreaccount1``, the first path segment.
    """

    mode: Literal["account_key"]
    account_key: SecretRef


class AzureConnectionStringAuth(AuthMode):
    """A storage connection string from a secret.

    Only its credentials are used (``AccountName`` + ``AccountKey``, or
    ``SharedAccessSignature``); the endpoint is always ``account_url``. Works in the copy path
    and at the edge: an account key is turned into a short-lived read-only SAS per request, a
    SAS is appended as it is.
    """

    mode: Literal["connection_string"]
    connection_string: SecretRef


AzureAuth = Annotated[
    AzureAnonymousAuth | AzureSasAuth | AzureAccountKeyAuth | AzureConnectionStringAuth,
    Field(discriminator="mode"),
]


class AzureOrigin(OriginConfig):
    """An Azure Blob Storage container."""

    type: Literal["azure"]
    account_url: HttpUrl = Field(
        description=(
            "The account's blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net, or a "
            "path-style emulator URL such as http://127.0.0.1:10000/devstoreaccount1."
        )
    )
    container: str = Field(
        min_length=3,
        max_length=63,
        pattern=r"^(\$root|\$web|[a-z0-9][a-z0-9-]*[a-z0-9])$",
        description="Container name (lower-case letters, digits, single hyphens; or $web/$root).",
    )
    auth: AzureAuth = Field(default_factory=AzureAnonymousAuth)

    def cloudfront_urls(self) -> dict[str, str]:
        return {"account_url": self.account_url}

    @field_validator("container")
    @classmethod
    def _no_double_hyphen(cls, value: str) -> str:
        if "--" in value:
            raise ValueError("a container name must not contain consecutive hyphens")
        return value


# --- S3-compatible ------------------------------------------------------------------------------


S3_EDGE_SIGNING_PROBLEM = (
    "S3 refuses a Signature Version 4 request that carries an x-amz-* header it did not "
    "sign, and CloudFront adds X-Amz-Cf-Id to every origin request after the edge function "
    "has signed it, so no request signed at the edge can reach this bucket; instead put the "
    "origin in a route's fallback (the fetcher copies from it with these credentials), make "
    "the bucket publicly readable and use auth mode anonymous, or serve it as a static S3 "
    "origin with CloudFront origin access control"
)
"""Why a signing S3 auth mode cannot be used at the edge, and what to do instead.

Sources: Amazon CloudFront Developer Guide, "Request and response behavior for custom
origins" (CloudFront adds ``X-Amz-Cf-Id``) and "Restrictions on edge functions" (a function
can neither see nor set ``X-Amz-Cf-*`` headers); Amazon S3 API Reference, "Signature
Calculations for the Authorization Header" and "Authenticating Requests: Using Query
Parameters" (every ``x-amz-*`` header sent must be signed)."""


class S3SigningAuth(AuthMode):
    """Base of the S3 modes that sign requests (SigV4): copy path only.

    At the edge CloudFront adds ``X-Amz-Cf-Id`` after the function signed the request, which
    S3 then refuses (see :data:`S3_EDGE_SIGNING_PROBLEM`), whether the signature is in the
    ``Authorization`` header or in the query string.
    """

    def edge_problem(self) -> str | None:
        return S3_EDGE_SIGNING_PROBLEM


class S3AnonymousAuth(AuthMode):
    """A publicly readable bucket, read without credentials.

    Works in the copy path and at the edge: an unsigned request is not refused for carrying
    CloudFront's ``X-Amz-Cf-Id``. The bucket policy must allow ``s3:GetObject`` to everyone
    (``s3:ListBucket`` too for prewarm).
    """

    mode: Literal["anonymous"]


class S3DefaultAuth(S3SigningAuth):
    """boto3's default credential chain (environment, profile, container or instance role).

    Works in the copy path (the fetcher's role, which the bucket must grant read access).
    A store that is not AWS does not know that role, so give such stores ``access_key``.
    """

    mode: Literal["default"] = "default"


class S3AccessKeyAuth(S3SigningAuth):
    """A static access key pair from secrets. Works in the copy path."""

    mode: Literal["access_key"]
    access_key_id: SecretRef
    secret_access_key: SecretRef


class S3AssumeRoleAuth(S3SigningAuth):
    """Credentials from assuming an IAM role with STS, refreshed before they expire.

    The role is assumed with the default credential chain's identity (the fetcher's
    execution role, which must be allowed ``sts:AssumeRole``). Works in the copy path.
    """

    mode: Literal["assume_role"]
    role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    external_id: str | None = None
    session_name: str = Field(default="backorigin", pattern=r"^[\w+=,.@-]{2,64}$")
    sts_endpoint_url: HttpUrl | None = Field(
        default=None,
        description="STS endpoint to assume the role at (default: AWS STS of the origin's region).",
    )


S3Auth = Annotated[
    S3DefaultAuth | S3AccessKeyAuth | S3AssumeRoleAuth | S3AnonymousAuth,
    Field(discriminator="mode"),
]


class S3Origin(OriginConfig):
    """A bucket in another account or region, or on any S3-compatible store.

    CloudFront can reach it through the edge function only with auth mode ``anonymous`` (a
    public bucket); a private bucket belongs in a route's ``fallback``, where the fetcher
    copies from it.
    """

    type: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63)
    region: str | None = Field(
        default=None,
        description="The bucket's region; needed when CloudFront reaches an AWS bucket.",
    )
    endpoint_url: HttpUrl | None = Field(
        default=None, description="An S3-compatible store's endpoint instead of AWS S3."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto",
        description=(
            "path: ENDPOINT/BUCKET/KEY; virtual: BUCKET.ENDPOINT/KEY; auto: path style "
            "with endpoint_url (most S3-compatible stores), else virtual-hosted."
        ),
    )
    auth: S3Auth = Field(default_factory=S3DefaultAuth)

    @field_validator("bucket", mode="before")
    @classmethod
    def _bare_bucket(cls, value: object) -> object:
        return bare_bucket_name(value, "s3")

    @field_validator("backoff")
    @classmethod
    def _botocore_backoff(cls, value: float) -> float:
        # botocore's standard retry mode waits random(0, 1) * 2**attempt seconds (at most
        # 20 s) and offers no setting for it: the default states that schedule.
        if value != 1.0:
            raise ValueError(
                "cannot be changed for an s3 origin: botocore's standard retry mode waits its "
                "own jittered delays of about 1 s doubling (retries sets how many)"
            )
        return value

    def cloudfront_urls(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}

    def edge_problem(self) -> str | None:
        problem = super().edge_problem()
        if problem is None and self.endpoint_url is None and self.region is None:
            return (
                "region is not set: CloudFront is sent to the bucket's regional endpoint "
                "(BUCKET.s3.REGION.amazonaws.com), which the edge function cannot look up; "
                "set region"
            )
        return problem


BUILTIN_ORIGINS: dict[str, type[OriginConfig]] = {
    "gcs": GcsOrigin,
    "azure": AzureOrigin,
    "http": HttpOrigin,
    "s3": S3Origin,
}
"""The built-in origin types, by ``type`` name."""
