"""Small value types shared by every layer: object metadata, byte ranges, edge origins."""

from __future__ import annotations

__all__ = [
    "AWS_ACCOUNT_ID",
    "AWS_PARTITION",
    "AWS_REGION",
    "AWS_URL_SUFFIX",
    "PROVENANCE_FIELDS",
    "PROVENANCE_HEADERS",
    "PROVENANCE_PREFIX",
    "RESERVED_PREFIX",
    "ByteRange",
    "Checksums",
    "DeploymentNeeds",
    "FunctionRole",
    "GetOptions",
    "IamStatement",
    "ObjectInfo",
    "OriginRequest",
    "OriginSpec",
]

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from backorigin import RESERVED_PREFIX as RESERVED_PREFIX  # re-exported for the construct
from backorigin.errors import InvalidRange

_EMPTY: Mapping[str, str] = MappingProxyType({})

PROVENANCE_PREFIX = "backorigin-"
"""Prefix of the user-metadata names a copy records its provenance under."""

PROVENANCE_FIELDS = (
    "origin",
    "origin-key",
    "origin-version",
    "origin-etag",
    "origin-last-modified",
    "copied-at",
)
"""Every provenance field a copy may record, without the prefix. The copy engine writes no
other name under :data:`PROVENANCE_PREFIX`, so this list is complete: whatever hides
provenance from viewers (CloudFront removes headers by exact name) reads it from here."""

PROVENANCE_HEADERS = tuple(f"x-amz-meta-{PROVENANCE_PREFIX}{name}" for name in PROVENANCE_FIELDS)
"""The response headers S3 serves the provenance fields as."""


@dataclass(frozen=True, slots=True)
class Checksums:
    """Whole-object digests an origin states, as raw digest bytes (not hex, not base64)."""

    md5: bytes | None = None
    crc32c: bytes | None = None
    crc32: bytes | None = None
    sha1: bytes | None = None
    sha256: bytes | None = None

    def known(self) -> dict[str, bytes]:
        """The digests that are present, by algorithm name."""
        return {
            name: value
            for name in ("md5", "crc32c", "crc32", "sha1", "sha256")
            if (value := getattr(self, name)) is not None
        }

    def __bool__(self) -> bool:
        return bool(self.known())

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{name}={base64.b64encode(value).decode()}" for name, value in self.known().items()
        )
        return f"Checksums({inner})"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What an origin knows about one object.

    Attributes:
        key: The key as the adapter was asked for it (origin prefix not included).
        size: Size in bytes of the stored representation (compressed bytes if
            ``content_encoding`` is set; objects are never decompressed).
        etag: The origin's entity tag, with quotes as the origin sent it, when it has one.
        version: An opaque token that pins reads to this exact version of the object
            (a GCS generation, an Azure/S3 ETag or VersionId, an HTTP validator).
        metadata: User metadata (names lower-cased, without any ``x-*-meta-`` prefix).
    """

    key: str
    size: int
    etag: str | None = None
    version: str | None = None
    last_modified: datetime | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    expires: str | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    checksums: Checksums = field(default_factory=Checksums)

    def with_key(self, key: str) -> ObjectInfo:
        """The same information under another key (used when listing strips a prefix)."""
        return replace(self, key=key)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A byte range of an object: bounded ``[start, stop)``, from an offset, or a suffix.

    Build one with :meth:`bounded`, :meth:`from_offset` or :meth:`suffix`; the HTTP header
    form and the resolution against an object's size are done here, once, for every adapter.
    """

    kind: Literal["bounded", "offset", "suffix"]
    start: int = 0
    stop: int | None = None
    length: int | None = None

    @classmethod
    def bounded(cls, start: int, stop: int) -> ByteRange:
        """Bytes ``start`` up to but excluding ``stop``."""
        if start < 0 or stop <= start:
            raise ValueError(f"bounded range needs 0 <= start < stop, got {start}..{stop}")
        return cls("bounded", start=start, stop=stop)

    @classmethod
    def from_offset(cls, start: int) -> ByteRange:
        """Bytes from ``start`` to the end of the object."""
        if start < 0:
            raise ValueError(f"offset must be >= 0, got {start}")
        return cls("offset", start=start)

    @classmethod
    def suffix(cls, length: int) -> ByteRange:
        """The last ``length`` bytes of the object."""
        if length <= 0:
            raise ValueError(f"suffix length must be > 0, got {length}")
        return cls("suffix", length=length)

    def header(self) -> str:
        """The HTTP ``Range`` header value (RFC 9110 byte-range, inclusive end)."""
        if self.kind == "bounded":
            assert self.stop is not None
            return f"bytes={self.start}-{self.stop - 1}"
        if self.kind == "offset":
            return f"bytes={self.start}-"
        return f"bytes=-{self.length}"

    def resolve(self, size: int) -> tuple[int, int]:
        """The half-open ``(start, stop)`` this range selects from an object of ``size`` bytes.

        The end is clamped at EOF, as HTTP servers do.

        Raises:
            InvalidRange: the range selects nothing (starts at or past EOF, or the object
                is empty), the case where an HTTP server answers 416.
        """
        if self.kind == "suffix":
            assert self.length is not None
            if size == 0:
                raise InvalidRange(f"suffix range {self.header()} of an empty object")
            return max(0, size - self.length), size
        if self.start >= size:
            raise InvalidRange(f"range {self.header()} starts at or past the end ({size} bytes)")
        stop = size if self.stop is None else min(self.stop, size)
        return self.start, stop

    def __str__(self) -> str:
        return self.header()


@dataclass(frozen=True, slots=True)
class GetOptions:
    """What one read asks of an origin, in the manner of object_store's ``GetOptions``.

    Attributes:
        range: Which bytes (None: the whole object). The end is clamped at EOF.
        pin: The object as a HEAD (or an earlier GET, or a listing) described it: the read
            fails with :class:`~backorigin.errors.PreconditionFailed` unless the origin
            still holds exactly that version (same version token, ETag and size). Adapters
            send it the way their protocol can (``If-Match``, a generation precondition,
            ``If-Unmodified-Since``); the shared read path checks the answer as well.
        if_match: An entity tag the object must have (``If-Match``), besides the pin.
        version: An :attr:`ObjectInfo.version` token the object must have, when only the
            token is at hand (prefer ``pin``: it lets the origin refuse another version
            before sending any byte).
    """

    range: ByteRange | None = None
    pin: ObjectInfo | None = None
    if_match: str | None = None
    version: str | None = None

    def etag_condition(self) -> str | None:
        """The entity tag a request should send as ``If-Match``: ``if_match``, else the
        pin's ETag when it is a strong one; None when there is none to send."""
        if self.if_match is not None:
            return self.if_match
        etag = self.pin.etag if self.pin is not None else None
        return etag if etag and not etag.startswith("W/") else None

    def with_range(self, range: ByteRange | None) -> GetOptions:
        """The same conditions for another range."""
        return replace(self, range=range)


@dataclass(frozen=True, slots=True)
class OriginSpec:
    """How CloudFront reaches an origin: the fields of a CloudFront custom/S3 origin.

    Attributes:
        domain: Host name CloudFront connects to (and sends as ``Host``).
        path: Origin path, ``""`` or starting with ``/`` and not ending with ``/``.
        protocol: ``https`` or ``http``.
        port: TCP port.
    """

    domain: str
    path: str = ""
    protocol: Literal["https", "http"] = "https"
    port: int = 443


@dataclass(frozen=True, slots=True)
class OriginRequest:
    """A request CloudFront is about to send to an origin, as the edge function sees it.

    ``uri`` is the percent-encoded path below the origin path; ``headers`` use lower-case
    names. Adapters' ``sign`` returns a copy with what the origin needs added.
    """

    method: str
    uri: str
    querystring: str = ""
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def with_headers(self, extra: Mapping[str, str]) -> OriginRequest:
        """A copy with headers added or replaced (names are lower-cased)."""
        merged = dict(self.headers)
        merged.update({k.lower(): v for k, v in extra.items()})
        return replace(self, headers=MappingProxyType(merged))

    def with_query(self, querystring: str) -> OriginRequest:
        """A copy with the query string replaced."""
        return replace(self, querystring=querystring)


AWS_PARTITION = "${AWS::Partition}"
"""Stands for the deployment's partition (``aws``, ``aws-cn``, …) in an :class:`IamStatement`."""
AWS_REGION = "${AWS::Region}"
"""Stands for the region of the function's stack in an :class:`IamStatement`."""
AWS_ACCOUNT_ID = "${AWS::AccountId}"
"""Stands for the deployment's account in an :class:`IamStatement`."""
AWS_URL_SUFFIX = "${AWS::URLSuffix}"
"""Stands for the partition's domain suffix (``amazonaws.com``) in an :class:`IamStatement`."""

FunctionRole = Literal["edge", "fetcher"]
"""The two Lambda functions of a deployment: the Lambda@Edge function and the fetcher."""


@dataclass(frozen=True, slots=True)
class IamStatement:
    """An IAM policy statement (``Effect: Allow``) written without the CDK.

    Resources may use the CloudFormation pseudo parameters ``${AWS::Partition}``,
    ``${AWS::Region}`` (the region of the function's stack; ``us-east-1`` for the
    Lambda@Edge function), ``${AWS::AccountId}`` and ``${AWS::URLSuffix}``; the construct
    puts the deployment's values in their place.

    Args:
        actions: IAM actions, e.g. ``("s3:GetObject",)``.
        resources: ARNs the actions are allowed on.
        conditions: A policy ``Condition`` block: operator → condition key → value(s).
        wildcard_reason: Why a resource ending in ``*`` is needed (keys known only at run
            time, …). With a reason, the construct acknowledges cdk-nag's finding on the
            wildcard with it; without one, the finding stays for the app's owner to judge.
    """

    actions: Sequence[str]
    resources: Sequence[str]
    conditions: Mapping[str, Mapping[str, str | Sequence[str]]] = field(default_factory=dict)
    wildcard_reason: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.actions, str) or isinstance(self.resources, str):
            raise TypeError("actions and resources are sequences of strings, not one string")
        if not self.actions or not self.resources:
            raise ValueError("an IAM statement needs at least one action and one resource")
        # Stored as tuples and read-only mappings: a declaration is shared by every caller.
        conditions = {
            operator: MappingProxyType(
                {key: v if isinstance(v, str) else tuple(v) for key, v in keys.items()}
            )
            for operator, keys in self.conditions.items()
        }
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "resources", tuple(self.resources))
        object.__setattr__(self, "conditions", MappingProxyType(conditions))


@dataclass(frozen=True, slots=True)
class DeploymentNeeds:
    """What reading one origin needs in one deployed Lambda function, beyond the core.

    An adapter declares it per function role (and per auth mode, through its config) in
    :meth:`backorigin.adapters.OriginAdapter.deployment`; bundling installs the packages and
    the CDK construct grants the statements to the function's role.

    Args:
        packages: pip requirements (``"PyJWT>=2.8"``) installed into the function's bundle
            for the Lambda platform.
        statements: IAM statements granted to the function's role.
        reads_secrets: Whether the function resolves the secrets the origin's config
            references. The construct then grants it ``secretsmanager:GetSecretValue`` on
            each (and ``kms:Decrypt`` through Secrets Manager with a customer-managed key).
    """

    packages: Sequence[str] = ()
    statements: Sequence[IamStatement] = ()
    reads_secrets: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.packages, str):
            raise TypeError("packages is a sequence of requirements, not one string")
        object.__setattr__(self, "packages", tuple(self.packages))
        object.__setattr__(self, "statements", tuple(self.statements))
