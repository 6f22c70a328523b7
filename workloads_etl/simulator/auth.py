"""Bearer tokens of the simulated control plane.

A token request (``TokenRequest``) is read as the real control plane's Go service reads
JSON: a key names a field when it equals the field's name ignoring case (``AppId``,
``APPID`` and ``appID`` are all ``appID``), and of several keys naming one field the last
one wins. Values must be strings; ``grantType`` is compared exactly.

Access tokens are JWTs signed with HS256 by a secret of this process (never stored, never
sent): claims ``sub`` (the client or app id), ``iat``, ``exp`` (whole epoch seconds;
``exp`` is rounded up, so a token lives at least ``expiresIn`` seconds), ``iss`` and a
random ``jti``. Every authenticated request checks the signature and the expiry against
the wall clock (tokens expire in real time even when the cluster clock is frozen). The claims
of the last :data:`VERIFIED_TOKENS` tokens whose signature checked out are remembered, so a
token's signature is checked once, not once per request; its expiry still is.
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_APP_TOKEN = "app_token"  # noqa: S105 - a grant type name
ISSUER = "workloads-etl-simulator"
ALGORITHM = "HS256"
GRANT_FIELDS = {
    GRANT_CLIENT_CREDENTIALS: ("clientID", "clientSecret"),
    GRANT_APP_TOKEN: ("appID", "appSecret"),
}
# Tokens whose verified claims are remembered (a signature is checked once per token).
VERIFIED_TOKENS = 256
# The TokenRequest fields this control plane reads.
TOKEN_REQUEST_FIELDS = ("grantType", "clientID", "clientSecret", "appID", "appSecret")


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


def fold(name: str) -> str:
    """A key as Go's JSON decoder compares it to field names: simple case folding."""
    return "".join(c.casefold() if len(c.casefold()) == 1 else c for c in name)


_FOLDED_FIELDS = {fold(f): f for f in TOKEN_REQUEST_FIELDS}


def token_request_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The TokenRequest fields of a JSON object, its keys matched to them ignoring case."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        field = _FOLDED_FIELDS.get(fold(key))
        if field is not None:
            out[field] = value  # of several keys naming one field the last wins
    return out


class TokenStore:
    """Issues and checks bearer tokens (signed JWTs).

    ``clock`` returns epoch seconds (``time.time`` by default); ``secret`` is the signing
    key, a fresh random one per store unless given.
    """

    def __init__(
        self,
        credentials: Credentials,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        self.credentials = credentials
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        # Only tokens that verify are remembered: a rejected one raises, which is not cached.
        self._verified = lru_cache(maxsize=VERIFIED_TOKENS)(self._verify)

    def grant(self, body: Any) -> dict[str, Any]:
        """Validate a TokenRequest body and return a TokenResponse. Raises AuthError (400)."""
        if not isinstance(body, dict):
            raise AuthError(400, "Request body must be a JSON object (TokenRequest)")
        fields = token_request_fields(body)
        grant_type = fields.get("grantType")
        if grant_type is None:
            raise AuthError(400, "Required parameter is missing: grantType")
        if grant_type not in GRANT_FIELDS:
            raise AuthError(
                400,
                f"Unsupported grantType {str(grant_type)[:40]!r}; "
                "supported: client_credentials, app_token",
            )
        id_field, secret_field = GRANT_FIELDS[grant_type]
        client_id, client_secret = fields.get(id_field), fields.get(secret_field)
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            raise AuthError(400, f"Required parameters are missing: {id_field}, {secret_field}")
        if not self.credentials.matches(client_id, client_secret):
            raise AuthError(400, "Invalid client credentials")
        return {"accessToken": self.issue(client_id), "expiresIn": self.ttl_seconds}

    def issue(self, subject: str) -> str:
        now = self.clock()
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "iat": math.floor(now),
            "exp": math.ceil(now + self.ttl_seconds),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def check(self, authorization: str | None) -> dict[str, Any]:
        """Validate an ``Authorization`` header value; returns the token's claims.

        Raises AuthError (401): no bearer token, not a JWT of ours, a bad signature, or
        expired.
        """
        if not authorization:
            raise AuthError(401, "Missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "Authorization header must be 'Bearer <token>'")
        claims = self._verified(token)
        exp = claims["exp"]
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise AuthError(401, "Invalid token")
        if self.clock() >= exp:
            raise AuthError(401, "Token has expired")
        return dict(claims)  # the remembered claims stay as verified

    def _verify(self, token: str) -> dict[str, Any]:
        """The claims of a token signed by this store, or AuthError (401)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={
                    "require": ["exp", "iat", "sub"],
                    "verify_exp": False,  # checked by check() against ``clock``
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthError(401, "Issuer is not familiar.") from None
        except jwt.InvalidTokenError:
            raise AuthError(401, "Invalid token") from None
        return claims
