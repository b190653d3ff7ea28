"""Service-account credentials of the GCS adapter: the key from a secret reference (or
Application Default Credentials) and the access tokens minted from it.

One token is shared by every data-plane request and minted again only when google-auth
deems it stale, under a lock, so concurrent callers never mint twice. The same credentials
sign the edge's URLs with the key (``sign_bytes``), which needs no token.
"""

from __future__ import annotations

__all__ = ["READ_ONLY_SCOPE", "ServiceAccountTokens"]

import json
import threading
from typing import Any

from backorigin.adapters.base import require
from backorigin.adapters.gcs.errors import translating
from backorigin.config.origins import GcsServiceAccountAuth
from backorigin.config.secrets import SecretResolver
from backorigin.errors import Unauthenticated

READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
"""The OAuth scope tokens are minted with: reading objects is all backorigin does."""


class ServiceAccountTokens:
    """The google-auth credentials of one service account and its current access token.

    Args:
        auth: The origin's service-account auth config.
        secrets: Resolves the key's secret reference.
        origin: The origin's name, for messages.
        timeout: Connect and read timeouts of requests to the token endpoint.
    """

    def __init__(
        self,
        auth: GcsServiceAccountAuth,
        secrets: SecretResolver,
        *,
        origin: str,
        timeout: tuple[float, float],
    ) -> None:
        self._auth = auth
        self._secrets = secrets
        self._origin = origin
        self._timeout = timeout
        self._lock = threading.Lock()
        self._credentials: tuple[Any, str | None] | None = None
        self._request: Any = None

    def credentials(self) -> tuple[Any, str | None]:
        """The service account's google-auth credentials (built once) and its project."""
        auth = self._auth
        with self._lock:
            if self._credentials is not None:
                return self._credentials
            if auth.credentials is None:
                google_auth = require("google.auth", "gcs")
                with translating(f"loading credentials for origin {self._origin!r}"):
                    credentials, project = google_auth.default(scopes=[READ_ONLY_SCOPE])
            else:
                where = auth.credentials.secret.describe()
                text = self._secrets.resolve(auth.credentials).get_secret_value()
                try:
                    info = json.loads(text)
                except ValueError:
                    # from None: the decode error keeps the whole document (the key) in .doc
                    raise Unauthenticated(
                        f"the service account key in {where} is not JSON"
                    ) from None
                if not isinstance(info, dict):
                    raise Unauthenticated(f"the service account key in {where} is not an object")
                service_account = require("google.oauth2.service_account", "gcs")
                try:
                    credentials = service_account.Credentials.from_service_account_info(
                        info, scopes=[READ_ONLY_SCOPE]
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise Unauthenticated(
                        f"the service account key in {where} is unusable ({type(exc).__name__})"
                    ) from None
                project = info.get("project_id")
            self._credentials = (credentials, project if isinstance(project, str) else None)
            return self._credentials

    def token(self, what: str) -> str:
        """A valid access token, minted again only when google-auth deems it stale.

        google-auth treats a token as stale within its refresh threshold (a few minutes)
        before the expiry the token endpoint stated; until then every caller reuses it.
        """
        credentials, _ = self.credentials()
        token_state = require("google.auth.credentials", "gcs").TokenState
        with self._lock:
            if credentials.token_state is not token_state.FRESH:
                with translating(f"{what}: minting an access token"):
                    credentials.refresh(self._token_request())
            return str(credentials.token)

    def close(self) -> None:
        """Close the token endpoint's pooled connections."""
        with self._lock:
            request, self._request = self._request, None
        if request is not None:
            request.http.clear()

    def _token_request(self) -> Any:
        if self._request is None:
            urllib3 = require("urllib3", "gcs")
            transport = require("google.auth.transport.urllib3", "gcs")
            timeout = urllib3.Timeout(connect=self._timeout[0], read=self._timeout[1])
            self._request = transport.Request(urllib3.PoolManager(timeout=timeout))
        return self._request
