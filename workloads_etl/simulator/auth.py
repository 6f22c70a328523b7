"""Bearer tokens of the simulated control plane.

Tokens are opaque random strings; the store keeps only their SHA-256 digests with an expiry
on a monotonic clock (tokens expire in real time even when the cluster clock is frozen).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_APP_TOKEN = "app_token"  # noqa: S105 - a grant type name


class AuthError(Exception):
    """A request's credentials or token were rejected; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str

    def matches(self, client_id: str, client_secret: str) -> bool:
        ok_id = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        ok_secret = hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        return ok_id and ok_secret

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(client_id={self.client_id!r}, client_secret='***')"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    """Issues and checks bearer tokens. ``clock`` returns seconds (monotonic by default)."""

    def __init__(
        self,
        credentials: Credentials,
        ttl_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._expiry: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def grant(self, body: Any) -> dict[str, Any]:
        """Validate a TokenRequest body and return a TokenResponse. Raises AuthError (400)."""
        if not isinstance(body, dict):
            raise AuthError(400, "Request body must be a JSON object (TokenRequest)")
        grant_type = body.get("grantType")
        if grant_type == GRANT_CLIENT_CREDENTIALS:
            id_field, secret_field = "clientID", "clientSecret"
        elif grant_type == GRANT_APP_TOKEN:
            id_field, secret_field = "appID", "appSecret"
        elif grant_type is None:
            raise AuthError(400, "Required parameter is missing: grantType")
        else:
            raise AuthError(
                400,
                f"Unsupported grantType {str(grant_type)[:40]!r}; "
                "supported: client_credentials, app_token",
            )
        client_id, client_secret = body.get(id_field), body.get(secret_field)
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            raise AuthError(400, f"Required parameters are missing: {id_field}, {secret_field}")
        if not self.credentials.matches(client_id, client_secret):
            raise AuthError(400, "Invalid client credentials")
        return {"accessToken": self.issue(), "expiresIn": self.ttl_seconds}

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            if len(self._expiry) > 10_000:
                self._expiry = {k: v for k, v in self._expiry.items() if v > now}
            self._expiry[_digest(token)] = now + self.ttl_seconds
        return token

    def check(self, authorization: str | None) -> None:
        """Validate an ``Authorization`` header value. Raises AuthError (401)."""
        if not authorization:
            raise AuthError(401, "Missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "Authorization header must be 'Bearer <token>'")
        with self._lock:
            expiry = self._expiry.get(_digest(token.strip()))
        if expiry is None:
            raise AuthError(401, "Issuer is not familiar.")
        if self.clock() >= expiry:
            raise AuthError(401, "Token has expired")
