"""Bearer tokens: obtained from ``POST /api/v1/token`` and refreshed before they expire.

One :class:`TokenManager` per client. All concurrent requests share it; an ``asyncio.Lock``
makes sure that however many requests find the token expired (or are refused with 401) at the
same moment, exactly one token request goes out and everyone else waits for its result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from workloads_etl.runai.errors import AuthenticationError
from workloads_etl.runai.settings import RunaiSettings

# Performs the token request; returns (access token, lifetime in seconds or None).
TokenFetcher = Callable[[], Awaitable[tuple[str, float | None]]]


@dataclass
class _Token:
    value: str
    refresh_at: float | None  # time.monotonic() after which it is renewed; None: never


def refresh_margin(expires_in: float) -> float:
    """How long before expiry a token is renewed: 10 % of its lifetime, at most 30 s."""
    return min(0.1 * expires_in, 30.0)


class TokenManager:
    """Hands out a valid bearer token, refreshing it when needed."""

    def __init__(self, settings: RunaiSettings, fetch: TokenFetcher) -> None:
        self._settings = settings
        self._fetch = fetch
        self._lock = asyncio.Lock()
        self._token: _Token | None = None
        self.refresh_count = 0
        static = settings.bearer_token
        if static and not settings.uses_client_credentials:
            self._token = _Token(static, None)

    @property
    def can_refresh(self) -> bool:
        return self._settings.uses_client_credentials

    def _valid(self) -> str | None:
        tok = self._token
        if tok is None:
            return None
        if tok.refresh_at is not None and time.monotonic() >= tok.refresh_at:
            return None
        return tok.value

    async def token(self) -> str:
        current = self._valid()
        if current is not None:
            return current
        async with self._lock:
            current = self._valid()
            if current is not None:
                return current
            if not self.can_refresh:
                raise AuthenticationError(
                    "the configured bearer token was refused and no client credentials are "
                    "configured to obtain a new one"
                )
            value, expires_in = await self._fetch()
            refresh_at = None
            if expires_in is not None:
                refresh_at = time.monotonic() + max(expires_in - refresh_margin(expires_in), 0.0)
            self._token = _Token(value, refresh_at)
            self.refresh_count += 1
            return value

    async def invalidate(self, used: str) -> None:
        """Forget ``used`` after a 401, unless another request has already replaced it."""
        async with self._lock:
            if self._token is not None and self._token.value == used:
                self._token = None
