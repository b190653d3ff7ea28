"""Signing at the edge from a recipe in the edge plan, with the standard library (and, for an
RSA key, ``cryptography``).

An adapter may declare, at bundle time, how its origin requests are signed
(:meth:`backorigin.adapters.OriginAdapter.edge_recipe`): plain JSON data whose secrets are
references (:mod:`backorigin.handlers.edge_secrets`), never values. The edge function then
signs a miss for that origin without pydantic, the config models, the adapter or its SDK.
The result is exactly what the adapter's own ``sign`` returns for the same request (the
tests compare them byte for byte), so the recipe is only a faster way to the same request.

Recipe kinds (:data:`backorigin.types.EDGE_SIGNING_KINDS`):

``headers``
    ``{"kind": "headers", "headers": {NAME: VALUE}}``; each VALUE is ``{"secret": REF}``
    with an optional ``"prefix"`` (``"Bearer "``) or ``"basic_username"`` (then the header
    is ``Basic base64(username:secret)``). Headers are added or replaced.
``azure_sas``
    ``{"kind": "azure_sas", "source": "sas" | "account_key" | "connection_string",
    "secret": REF, "account", "container", "prefix", "version", "https"}``: a SAS appended to
    the query string and ``x-ms-version`` set to its ``sv``. With an account key (given alone
    or in a connection string), a read-only service SAS for exactly the requested blob,
    signed with HMAC-SHA256 as "Create a service SAS" (Azure Storage REST reference) states
    the string-to-sign for version 2020-12-06 and later; ``version`` is the ``sv`` the
    adapter's SDK signs with.
``gcs_hmac``
    ``{"kind": "gcs_hmac", "access_id": REF, "secret": REF, "host", "path", "expires"}``: a
    ``GOOG4-HMAC-SHA256`` signed URL (the signature in the query string, only ``host``
    signed), as :meth:`backorigin.adapters.gcs.signing.V4Signer.presign`; ``x-goog-*``,
    ``x-amz-*`` and ``authorization`` headers are dropped.
``gcs_rsa``
    ``{"kind": "gcs_rsa", "key": REF, "host", "path", "expires"}``: the same URL signed
    ``GOOG4-RSA-SHA256`` with a service account's key (REF holds the key's JSON), as
    :meth:`backorigin.adapters.gcs.signing.RsaV4Signer.presign`. The one kind that needs a
    package beyond the standard library: ``cryptography``, for the RSA signature.
"""

from __future__ import annotations

__all__ = ["EdgeSigner", "SigningError"]

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote, unquote

from backorigin.errors import BackoriginError, InvalidKey, Unauthenticated
from backorigin.keys import decode_uri

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    from typing import Any

    Resolve = Callable[[Mapping[str, Any]], str]
    """A secret reference (plain JSON) → its value."""

AZURE_SAS_SKEW = 300
"""Seconds before now an account-key SAS starts (the Azure adapter's ``EDGE_SAS_SKEW``)."""
AZURE_SAS_LIFETIME = 900
"""Seconds after now an account-key SAS ends (the Azure adapter's ``EDGE_SAS_LIFETIME``)."""
# Query parameters that select another Azure operation than "read this blob" (the adapter's
# list): never forwarded from a viewer beside our SAS.
_AZURE_OPERATION_PARAMS = frozenset(
    {"comp", "restype", "snapshot", "versionid", "prevsnapshot", "blockid", "blocklisttype"}
)
_GCS_DROPPED_PREFIXES = ("x-goog-", "x-amz-")
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class SigningError(BackoriginError):
    """A recipe is malformed (a bundle error: the plan was written by other code)."""


def _sha256_hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


class EdgeSigner:
    """Signs origin requests from one origin's recipe.

    Args:
        recipe: The recipe from the edge plan.
        resolve: Reads the recipe's secret references (cached by the resolver).
        now: Wall clock, seconds since the epoch (signatures that carry a time).

    Raises:
        SigningError: the recipe's kind is unknown or a field is missing.
    """

    def __init__(
        self, recipe: Mapping[str, Any], resolve: Resolve, now: Callable[[], float] = time.time
    ) -> None:
        self.recipe = recipe
        self._resolve = resolve
        self._now = now
        self._loaded_key: tuple[str, str, Callable[[bytes], bytes]] | None = None
        kind = recipe.get("kind")
        signer = _KINDS.get(kind) if isinstance(kind, str) else None
        if signer is None:
            raise SigningError(f"unknown edge signing recipe {kind!r}")
        self._sign = signer

    def sign(
        self, method: str, uri: str, querystring: str, headers: Mapping[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        """The signed request: its URI, query string and whole header set (lower-case).

        Same contract as the adapter's ``sign``: the returned headers are all that is to be
        sent (a recipe may drop some, e.g. a viewer's ``x-goog-*``).

        Raises:
            EdgeSecretUnavailable: a secret cannot be read.
            Unauthenticated: a credential cannot be used (an account key that is not base64).
            InvalidKey: the URI is not below the origin's prefix.
            SigningError: the recipe misses a field.
        """
        try:
            return self._sign(self, method, uri, querystring, dict(headers))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidKey):
                raise
            raise SigningError(
                f"malformed {self.recipe.get('kind')} recipe: {type(exc).__name__}"
            ) from None

    # --- headers -------------------------------------------------------------------------------

    def _headers(
        self, method: str, uri: str, query: str, headers: dict[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        for name, spec in self.recipe["headers"].items():
            value = self._resolve(spec["secret"])
            username = spec.get("basic_username")
            if username is not None:
                pair = base64.b64encode(f"{username}:{value}".encode()).decode("ascii")
                value = f"Basic {pair}"
            else:
                value = spec.get("prefix", "") + value
            headers[name.lower()] = value
        return uri, query, headers

    # --- Azure ---------------------------------------------------------------------------------

    def _azure_sas(
        self, method: str, uri: str, query: str, headers: dict[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        recipe = self.recipe
        source = recipe["source"]
        secret = self._resolve(recipe["secret"])
        account, key, sas = recipe["account"], None, None
        if source == "sas":
            sas = secret.strip().lstrip("?")
        elif source == "account_key":
            key = _checked_key(secret, recipe["secret"])
        elif source == "connection_string":
            settings = _connection_settings(secret, recipe["secret"])
            account = settings.get("accountname") or account
            if settings.get("accountkey"):
                key = _checked_key(settings["accountkey"], recipe["secret"])
            elif settings.get("sharedaccesssignature"):
                sas = settings["sharedaccesssignature"].lstrip("?")
        else:
            raise ValueError(source)
        if key is not None:
            name = decode_uri(uri)
            if not name.startswith(recipe["prefix"]):
                raise InvalidKey(f"the URI is not below the origin's prefix {recipe['prefix']!r}")
            sas = self._blob_sas(account, key, name)
        elif sas is None:
            return uri, query, headers
        drop = {unquote(p.partition("=")[0]).lower() for p in sas.split("&") if p}
        drop |= _AZURE_OPERATION_PARAMS
        kept = [
            p
            for p in query.lstrip("?").split("&")
            if p and unquote(p.partition("=")[0]).lower() not in drop
        ]
        version = None
        for part in sas.split("&"):
            name, _, value = part.partition("=")
            if unquote(name) == "sv":
                version = unquote(value)
                break
        if version:
            headers["x-ms-version"] = version
        return uri, "&".join([*kept, sas]), headers

    def _blob_sas(self, account: str, key: str, blob: str) -> str:
        """A read-only service SAS for one blob (signed resource ``b``)."""
        recipe = self.recipe
        now = self._now()
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - AZURE_SAS_SKEW))
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + AZURE_SAS_LIFETIME))
        protocol = "https" if recipe["https"] else ""
        version = recipe["version"]
        # Fields in the order the service concatenates them; the unused ones stay empty:
        # identifier, IP, snapshot time, encryption scope and the five response overrides.
        to_sign = "\n".join(
            (
                "r",
                start,
                expiry,
                f"/blob/{account}/{recipe['container']}/{blob}",
                "",
                "",
                protocol,
                version,
                "b",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
            )
        )
        signature = base64.b64encode(
            hmac.new(base64.b64decode(key), to_sign.encode("utf-8"), hashlib.sha256).digest()
        ).decode("ascii")
        params = [("st", start), ("se", expiry), ("sp", "r")]
        if protocol:
            params.append(("spr", protocol))
        params += [("sv", version), ("sr", "b"), ("sig", signature)]
        return "&".join(f"{name}={quote(value)}" for name, value in params)

    # --- Google Cloud Storage ------------------------------------------------------------------

    def _gcs_hmac(
        self, method: str, uri: str, query: str, headers: dict[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        access_id = self._resolve(self.recipe["access_id"])
        secret = self._resolve(self.recipe["secret"])

        def sign(day: str, to_sign: bytes) -> bytes:
            key = _sha256_hmac(f"GOOG4{secret}".encode(), day)
            for part in ("auto", "storage", "goog4_request"):
                key = _sha256_hmac(key, part)
            return hmac.new(key, to_sign, hashlib.sha256).digest()

        return self._gcs_signed_url(
            "GOOG4-HMAC-SHA256", access_id, sign, method, uri, query, headers
        )

    def _gcs_rsa(
        self, method: str, uri: str, query: str, headers: dict[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        email, key = self._service_account_key(self.recipe["key"])
        return self._gcs_signed_url(
            "GOOG4-RSA-SHA256", email, lambda _, to_sign: key(to_sign), method, uri, query, headers
        )

    def _gcs_signed_url(
        self,
        algorithm: str,
        credential_id: str,
        sign: Callable[[str, bytes], bytes],
        method: str,
        uri: str,
        query: str,
        headers: dict[str, str],
    ) -> tuple[str, str, dict[str, str]]:
        """A V4 signed URL (only ``host`` signed); ``sign(day, string_to_sign)`` signs it."""
        recipe = self.recipe
        kept = {
            name: value
            for name, value in headers.items()
            if not name.startswith(_GCS_DROPPED_PREFIXES) and name != "authorization"
        }
        uri = _gcs_path(uri)
        expires = int(recipe["expires"])
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._now()))
        day = stamp[:8]
        scope = f"{day}/auto/storage/goog4_request"
        params = [
            ("X-Goog-Algorithm", algorithm),
            ("X-Goog-Credential", f"{credential_id}/{scope}"),
            ("X-Goog-Date", stamp),
            ("X-Goog-Expires", str(expires)),
            ("X-Goog-SignedHeaders", "host"),
        ]
        added = "&".join(f"{_gcs_encode(k)}={_gcs_encode(v)}" for k, v in params)
        full = f"{query}&{added}" if query else added
        canonical = "\n".join(
            (
                method.upper(),
                _gcs_path(recipe["path"] + uri),
                _gcs_query(full),
                f"host:{recipe['host']}\n",
                "host",
                _UNSIGNED_PAYLOAD,
            )
        )
        to_sign = "\n".join(
            (algorithm, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = sign(day, to_sign.encode()).hex()
        return uri, f"{full}&X-Goog-Signature={signature}", kept

    def _service_account_key(self, ref: Mapping[str, Any]) -> tuple[str, Callable[[bytes], bytes]]:
        """The account's e-mail and a signer with its private key, loaded once per key text.

        The secret is read through the resolver (and its cache) on every call, so a rotated
        key takes effect when the cache lets it; parsing the PEM key is what is kept.
        """
        text = self._resolve(ref)
        loaded = self._loaded_key
        if loaded is None or loaded[0] != text:
            loaded = self._loaded_key = (text, *_load_service_account_key(text, ref))
        return loaded[1], loaded[2]


_KINDS: dict[
    str,
    Callable[[EdgeSigner, str, str, str, dict[str, str]], tuple[str, str, dict[str, str]]],
] = {
    "headers": EdgeSigner._headers,
    "azure_sas": EdgeSigner._azure_sas,
    "gcs_hmac": EdgeSigner._gcs_hmac,
    "gcs_rsa": EdgeSigner._gcs_rsa,
}
KINDS = frozenset(_KINDS)
"""The recipe kinds this runtime applies."""


def _checked_key(key: str, ref: Mapping[str, Any]) -> str:
    """The account key, if it is base64 (as the adapter checks it)."""
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        from backorigin.handlers.edge_secrets import describe

        raise Unauthenticated(f"the account key in {describe(ref)} is not valid base64") from None
    return key


def _connection_settings(text: str, ref: Mapping[str, Any]) -> dict[str, str]:
    """A storage connection string's ``Name=value`` settings, names lower-cased."""
    settings: dict[str, str] = {}
    for index, segment in enumerate(s for s in text.strip().split(";") if s.strip()):
        name, sep, value = segment.partition("=")
        if not sep or not name.strip():
            from backorigin.handlers.edge_secrets import describe

            raise Unauthenticated(
                f"{describe(ref)}: segment {index + 1} of the connection string is not Name=value"
            )
        settings[name.strip().lower()] = value.strip()
    return settings


def _gcs_encode(text: str) -> str:
    return quote(text, safe="")


def _gcs_path(path: str) -> str:
    """Each segment decoded and re-encoded with RFC 3986's unreserved set."""
    if not path:
        return "/"
    return "/".join(_gcs_encode(unquote(segment)) for segment in path.split("/"))


def _gcs_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else ():
        if part:
            name, _, value = part.partition("=")
            pairs.append((_gcs_encode(unquote(name)), _gcs_encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _load_service_account_key(
    text: str, ref: Mapping[str, Any]
) -> tuple[str, Callable[[bytes], bytes]]:
    """``client_email`` and an RSASSA-PKCS1-v1_5/SHA-256 signer from a key's JSON.

    Refused as the adapter refuses it (:class:`~backorigin.errors.Unauthenticated`, the
    secret named, never its content).
    """
    import json

    from backorigin.handlers.edge_secrets import describe

    where = describe(ref)
    try:
        info = json.loads(text)
    except ValueError:
        raise Unauthenticated(f"the service account key in {where} is not JSON") from None
    if not isinstance(info, dict):
        raise Unauthenticated(f"the service account key in {where} is not an object")
    email, pem = info.get("client_email"), info.get("private_key")
    if not isinstance(email, str) or not isinstance(pem, str):
        raise Unauthenticated(f"the service account key in {where} is unusable (KeyError)")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        # The key's full consistency check costs ~35 ms of a cold start; each signature is
        # verified against the public key instead (microseconds), so a key that is not
        # consistent never lets a faulty signature out.
        key = serialization.load_pem_private_key(
            pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError) as exc:
        raise Unauthenticated(
            f"the service account key in {where} is unusable ({type(exc).__name__})"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise Unauthenticated(f"the service account key in {where} is unusable (not RSA)")
    public = key.public_key()

    def sign(message: bytes) -> bytes:
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        try:
            public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise Unauthenticated(
                f"the service account key in {where} is unusable (inconsistent)"
            ) from None
        return signature

    return email, sign
