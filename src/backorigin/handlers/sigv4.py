"""AWS Signature Version 4 on the standard library, for the edge function's own AWS calls.

The edge function sends one kind of AWS request (an SQS message per miss). Loading boto3 for
it costs hundreds of milliseconds of a cold start, so the signature is computed here with
``hashlib`` and ``hmac``, as specified in "Create a signed AWS API request" (AWS IAM User
Guide). The tests check it against the published SigV4 test suite and against botocore.
"""

from __future__ import annotations

__all__ = ["ALGORITHM", "Credentials", "amz_date", "canonical_request", "sign"]

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"


class Credentials:
    """An access key pair and, for temporary credentials, the session token."""

    __slots__ = ("access_key", "secret_key", "token")

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token or None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Credentials | None:
        """The credentials Lambda puts in the function's environment (None if absent)."""
        access = environ.get("AWS_ACCESS_KEY_ID")
        secret = environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            return None
        return cls(access, secret, environ.get("AWS_SESSION_TOKEN"))

    def __repr__(self) -> str:  # never the secret
        return f"Credentials(access_key={self.access_key!r})"


def amz_date(now: float | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ`` for ``now`` (seconds since the epoch; default: the clock)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else ():
        name, _, value = item.partition("=")
        pairs.append(
            (quote(unquote(name), safe=_UNRESERVED), quote(unquote(value), safe=_UNRESERVED))
        )
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """The canonical request and the signed header names (``a;b;c``).

    ``path`` is the path as sent (already percent-encoded); outside S3 it is encoded once
    more, as the specification asks. Header values are trimmed and inner runs of spaces
    collapsed.
    """
    normal: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        value = " ".join(value.split())
        normal[key] = f"{normal[key]},{value}" if key in normal else value
    names = sorted(normal)
    signed = ";".join(names)
    text = "\n".join(
        (
            method.upper(),
            quote(path or "/", safe="/~"),
            _canonical_query(query),
            "".join(f"{name}:{normal[name]}\n" for name in names),
            signed,
            payload_hash,
        )
    )
    return text, signed


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sign(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    credentials: Credentials,
    region: str,
    service: str,
    date: str | None = None,
) -> dict[str, str]:
    """The headers that sign this request: ``x-amz-date``, the token, ``authorization``.

    ``headers`` must hold every header that will be sent and signed, ``host`` included; the
    returned ones are to be added to them.

    Args:
        method: The HTTP method.
        path: The request path as sent.
        query: The query string without ``?``.
        headers: The headers to sign.
        body: The request body.
        credentials: Who signs.
        region: The region of the service endpoint.
        service: The signing name of the service (``sqs``).
        date: The ``x-amz-date`` value (default: now).
    """
    stamp = date or amz_date()
    added = {"x-amz-date": stamp}
    if credentials.token:
        added["x-amz-security-token"] = credentials.token
    everything = {name.lower(): value for name, value in headers.items()}
    everything.update(added)
    creq, signed = canonical_request(
        method, path, query, everything, hashlib.sha256(body).hexdigest()
    )
    day = stamp[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join((ALGORITHM, stamp, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()))
    key = _hmac(("AWS4" + credentials.secret_key).encode("utf-8"), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    added["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return added
