"""Request signing for Cloud Storage's XML API: ``GOOG4-HMAC-SHA256`` with an HMAC key, and
signed URLs with a service account's RSA key (``GOOG4-RSA-SHA256``).

HMAC signing needs only the standard library; the RSA signature itself is the caller's
(google-auth's signer here, the ``cryptography`` package at the edge).
"""

from __future__ import annotations

__all__ = ["UNSIGNED_PAYLOAD", "RsaV4Signer", "V4Signer", "canonical_path", "canonical_query"]

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Literal
from urllib.parse import quote, unquote

from pydantic import SecretStr

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
"""The payload hash of a signed request without a body (GET and HEAD)."""


def _encode(text: str) -> str:
    """RFC 3986 percent-encoding: everything but ``A-Z a-z 0-9 - _ . ~``."""
    return quote(text, safe="")


def canonical_path(path: str) -> str:
    """The canonical form of a (percent-encoded) request path, as V4 signatures use it.

    Each segment is decoded and re-encoded with RFC 3986's unreserved set, so an encoded
    slash stays inside its segment and equivalent spellings sign the same.
    """
    if not path:
        return "/"
    return "/".join(_encode(unquote(segment)) for segment in path.split("/"))


def canonical_query(query: str) -> str:
    """The canonical form of a query string: pairs encoded per RFC 3986, sorted.

    A ``+`` is taken literally (as in a path), not as a space.
    """
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class V4Signer:
    """Signs requests with an HMAC key, the way Cloud Storage's XML API checks them.

    ``GOOG4-HMAC-SHA256`` is AWS Signature Version 4 with Google's names: the algorithm
    ``GOOG4-HMAC-SHA256``, the key chain seeded with ``"GOOG4" + secret`` and closed with
    ``goog4_request``, the headers ``x-goog-date`` and ``x-goog-content-sha256``. With
    ``scheme="AWS4"`` (and an AWS service and region) the same code produces plain SigV4,
    which is how the implementation is checked against an independent one.

    Signed: ``host``, every ``x-goog-*`` (``x-amz-*``) header of the request, the date and
    the payload hash ``UNSIGNED-PAYLOAD`` (GET and HEAD carry no body).

    Attributes:
        access_id: The HMAC key's access ID.
        secret: The HMAC key's secret (never shown in ``repr``).
        region: The credential scope's region; Cloud Storage accepts ``auto``.
        service: The credential scope's service.
        scheme: ``GOOG4`` for Cloud Storage, ``AWS4`` for plain SigV4.
    """

    access_id: str
    secret: SecretStr = field(repr=False)
    region: str = "auto"
    service: str = "storage"
    scheme: Literal["GOOG4", "AWS4"] = "GOOG4"

    @property
    def algorithm(self) -> str:
        """``GOOG4-HMAC-SHA256`` (or ``AWS4-HMAC-SHA256``)."""
        return f"{self.scheme}-HMAC-SHA256"

    @property
    def header_prefix(self) -> str:
        """``x-goog-`` (or ``x-amz-``): the headers that are always signed."""
        return "x-goog-" if self.scheme == "GOOG4" else "x-amz-"

    def scope(self, day: str) -> str:
        """The credential scope of ``day`` (``YYYYMMDD``)."""
        return f"{day}/{self.region}/{self.service}/{self.scheme.lower()}_request"

    def signing_key(self, day: str) -> bytes:
        """The key derived from the secret for ``day``, region and service."""
        key = _hmac(f"{self.scheme}{self.secret.get_secret_value()}".encode(), day)
        for part in (self.region, self.service, f"{self.scheme.lower()}_request"):
            key = _hmac(key, part)
        return key

    def canonical_request(
        self, method: str, path: str, query: str, headers: Mapping[str, str]
    ) -> tuple[str, str]:
        """The canonical request and the signed header names for already-final headers."""
        normal = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
        names = sorted(normal)
        lines = [
            method.upper(),
            canonical_path(path),
            canonical_query(query),
            "".join(f"{name}:{normal[name]}\n" for name in names),
            ";".join(names),
            normal.get(f"{self.header_prefix}content-sha256", UNSIGNED_PAYLOAD),
        ]
        return "\n".join(lines), ";".join(names)

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        *,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to add to a request so that it is authenticated.

        Args:
            method: The HTTP method.
            host: The ``Host`` header the request will carry (with ``:port`` if not default).
            path: The request path, percent-encoded, starting with ``/``.
            query: The query string (without ``?``), or empty.
            headers: The request's other headers; its ``x-goog-*`` ones are signed.
            now: The signing time (default: now).

        Returns:
            ``host``, the date and payload-hash headers and ``authorization``.
        """
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        stamp = moment.strftime("%Y%m%dT%H%M%SZ")
        prefix = self.header_prefix
        added = {
            "host": host,
            f"{prefix}date": stamp,
            f"{prefix}content-sha256": UNSIGNED_PAYLOAD,
        }
        to_sign = {
            name.lower(): value
            for name, value in (headers or {}).items()
            if name.lower().startswith(prefix)
        }
        to_sign.update(added)
        canonical, signed_names = self.canonical_request(method, path, query, to_sign)
        scope = self.scope(stamp[:8])
        string_to_sign = "\n".join(
            [self.algorithm, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signature = hmac.new(
            self.signing_key(stamp[:8]), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        authorization = (
            f"{self.algorithm} Credential={self.access_id}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return {**added, "authorization": authorization}

    def presign(
        self,
        method: str,
        host: str,
        path: str,
        query: str = "",
        *,
        expires: int = 300,
        now: datetime | None = None,
    ) -> str:
        """The query string of a signed URL: ``query`` plus the signature parameters.

        The query-string form of the same algorithm (Google's "signed URL", AWS's
        "presigned URL"): ``X-Goog-Algorithm``, ``X-Goog-Credential``, ``X-Goog-Date``,
        ``X-Goog-Expires``, ``X-Goog-SignedHeaders=host`` and ``X-Goog-Signature`` (``X-Amz-*``
        with ``scheme="AWS4"``). Only ``host`` is signed, so the request carries no
        ``x-goog-*`` header and any other header may be added on the way.

        Args:
            method: The HTTP method.
            host: The ``Host`` header the request will carry (with ``:port`` if not default).
            path: The request path, percent-encoded, starting with ``/``.
            query: The request's own query string (without ``?``), or empty.
            expires: Seconds the URL stays valid (1 to 604800).
            now: The signing time (default: now).

        Returns:
            The query string to send (``query``'s pairs, then the signature's).
        """
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        day = moment.strftime("%Y%m%d")
        key = self.signing_key(day)
        return _presigned(
            method,
            host,
            path,
            query,
            algorithm=self.algorithm,
            credential=f"{self.access_id}/{self.scope(day)}",
            param_prefix="X-Goog-" if self.scheme == "GOOG4" else "X-Amz-",
            expires=expires,
            moment=moment,
            sign=lambda text: hmac.new(key, text, hashlib.sha256).digest(),
        )


@dataclass(frozen=True, slots=True)
class RsaV4Signer:
    """Signs URLs with a service account's RSA key: ``GOOG4-RSA-SHA256``.

    Google's V4 signed URL with a service account key: the canonical request and string to
    sign of :meth:`V4Signer.presign`, signed with RSASSA-PKCS1-v1_5 and SHA-256 instead of
    an HMAC chain, the credential naming the service account's e-mail address.

    Attributes:
        email: The service account's e-mail address (``client_email`` in its key).
        sign: Signs bytes with the account's private key (PKCS#1 v1.5, SHA-256).
    """

    email: str
    sign: Callable[[bytes], bytes] = field(repr=False)

    algorithm: ClassVar[str] = "GOOG4-RSA-SHA256"

    def presign(
        self,
        method: str,
        host: str,
        path: str,
        query: str = "",
        *,
        expires: int = 300,
        now: datetime | None = None,
    ) -> str:
        """The query string of a signed URL; arguments as :meth:`V4Signer.presign`."""
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        return _presigned(
            method,
            host,
            path,
            query,
            algorithm=self.algorithm,
            credential=f"{self.email}/{moment.strftime('%Y%m%d')}/auto/storage/goog4_request",
            param_prefix="X-Goog-",
            expires=expires,
            moment=moment,
            sign=self.sign,
        )


def _presigned(
    method: str,
    host: str,
    path: str,
    query: str,
    *,
    algorithm: str,
    credential: str,
    param_prefix: str,
    expires: int,
    moment: datetime,
    sign: Callable[[bytes], bytes],
) -> str:
    """``query`` plus the parameters of a V4 signed URL, the signature hex-encoded last.

    Only ``host`` is signed and the payload is ``UNSIGNED-PAYLOAD``; ``sign`` turns the
    string to sign into the signature (an HMAC or an RSA signature).
    """
    if not 1 <= expires <= 604800:
        raise ValueError("expires must be 1 to 604800 seconds")
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    params = [
        (f"{param_prefix}Algorithm", algorithm),
        (f"{param_prefix}Credential", credential),
        (f"{param_prefix}Date", stamp),
        (f"{param_prefix}Expires", str(expires)),
        (f"{param_prefix}SignedHeaders", "host"),
    ]
    added = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in params)
    full = f"{query}&{added}" if query else added
    lines = [
        method.upper(),
        canonical_path(path),
        canonical_query(full),
        f"host:{host}\n",
        "host",
        UNSIGNED_PAYLOAD,
    ]
    scope = credential.partition("/")[2]
    string_to_sign = "\n".join(
        [algorithm, stamp, scope, hashlib.sha256("\n".join(lines).encode()).hexdigest()]
    )
    signature = sign(string_to_sign.encode()).hex()
    return f"{full}&{param_prefix}Signature={signature}"
