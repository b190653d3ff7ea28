"""Throwaway Google service account keys, for tests and benchmarks of signed URLs.

A key is made locally and never leaves the machine: its JSON has the fields a real key file
has (and google-auth reads), and its public half is what a strict proxy verifies signatures
with (:class:`backorigin.testing.strict.StrictGcsProxy`). Needs ``cryptography`` (part of
``backorigin[gcs]``).
"""

from __future__ import annotations

__all__ = ["GOOGLE_TOKEN_URI", "ServiceAccountKey", "make_service_account_key"]

import json
from dataclasses import dataclass, field

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a public URL
"""Where a real key's ``token_uri`` points."""


@dataclass(frozen=True)
class ServiceAccountKey:
    """A service account key: its e-mail, its key file's JSON and its public key (PEM)."""

    email: str
    json: str = field(repr=False)
    public_pem: str


def make_service_account_key(
    email: str = "reader@backorigin-tests.iam.gserviceaccount.com",
    *,
    token_uri: str = GOOGLE_TOKEN_URI,
) -> ServiceAccountKey:
    """A fresh 2048-bit RSA service account key for ``email``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    info = {
        "type": "service_account",
        "project_id": email.partition("@")[2].split(".")[0] or "test-project",
        "private_key_id": "0" * 40,
        "private_key": private_pem,
        "client_email": email,
        "client_id": "1",
        "token_uri": token_uri,
    }
    return ServiceAccountKey(email, json.dumps(info), public_pem)
