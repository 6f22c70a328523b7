"""The HTTP core of the Run:ai client: the only code that speaks HTTP to the control plane.

One :class:`Session` owns one ``httpx.AsyncClient`` (one connection pool sized to
``max_concurrency``), an ``asyncio.Semaphore`` bounding requests in flight, an optional
requests-per-second budget (``aiolimiter``) and a shared :class:`TokenManager`.
:meth:`Session.call` is one logical request: authenticated, retried with ``tenacity`` as
:mod:`workloads_etl.runai.retry` decides, its final successful answer handed to the caller's
recorder as a :class:`RawResponse`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from workloads_etl.runai import errors
from workloads_etl.runai.auth import TokenManager
from workloads_etl.runai.errors import (
    AuthenticationError,
    ProtocolError,
    RetryExhaustedError,
    RunaiError,
    TLSVerificationError,
)
from workloads_etl.runai.models import RawResponse
from workloads_etl.runai.retry import RetryAfterWait, log_retry, parse_retry_after, retryable
from workloads_etl.runai.settings import RunaiSettings

logger = logging.getLogger("workloads_etl.runai")

Recorder = Callable[[RawResponse], None]

TOKEN_PATH = "/api/v1/token"  # noqa: S105 - a URL path, not a secret


def _is_cert_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class Session:
    """Connections, authentication, concurrency and retries shared by a client and its views.

    Open with :meth:`open` (or ``async with``); every request goes through :meth:`call`.
    """

    def __init__(
        self, settings: RunaiSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._limiter = (
            AsyncLimiter(settings.requests_per_second, 1.0)
            if settings.requests_per_second
            else None
        )
        self._auth = TokenManager(settings, self._grant_token)
        self._secrets: set[str] = set(settings.secret_values)
        self.request_count = 0

    async def open(self) -> None:
        s = self.settings
        limits = httpx.Limits(
            max_connections=s.max_concurrency, max_keepalive_connections=s.max_concurrency
        )
        self._http = httpx.AsyncClient(
            base_url=s.base_url,
            timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout),
            limits=limits,
            verify=s.ssl_verify(),
            transport=self._transport,
            headers={"Accept": "application/json", "User-Agent": "workloads-etl"},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def token_requests(self) -> int:
        """How many tokens this session obtained."""
        return self._auth.refresh_count

    def scrub(self, text: str) -> str:
        """``text`` with every known secret and token replaced by ``***``."""
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    async def _grant_token(self) -> tuple[str, float | None]:
        s = self.settings
        secret = s.client_secret_value or ""
        payload = {
            "grantType": "client_credentials",
            "clientID": s.client_id,
            "clientSecret": secret,
        }
        _, body, _ = await self.call(
            "grant_token", "POST", TOKEN_PATH, json_body=payload, authenticated=False
        )
        token = body.get("accessToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"POST {TOKEN_PATH} -> HTTP 200 without an accessToken",
                method="POST",
                path=TOKEN_PATH,
            )
        self._secrets.add(token)
        expires = body.get("expiresIn")
        expires_in = float(expires) if isinstance(expires, int | float) and expires > 0 else None
        return token, expires_in

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        json_body: Any,
        headers: dict[str, str],
        attempt: int,
    ) -> httpx.Response:
        if self._http is None:
            raise RunaiError("the client is not open; use 'async with RunaiClient(...)'")
        async with self._semaphore:
            if self._limiter is not None:
                await self._limiter.acquire()
            t0 = time.perf_counter()
            try:
                self.request_count += 1
                resp = await self._http.request(
                    method, path, params=params or None, json=json_body, headers=headers
                )
            except httpx.TransportError as exc:
                ms = (time.perf_counter() - t0) * 1000
                if _is_cert_error(exc):
                    raise TLSVerificationError(
                        f"TLS certificate of {self.settings.base_url} could not be verified; "
                        "give the issuing CA as a bundle (RUNAI_CA_BUNDLE / verify=<path>)"
                    ) from None
                logger.warning(
                    "%s %s params=%s -> %s after %.1f ms (attempt %d)",
                    method,
                    path,
                    params,
                    type(exc).__name__,
                    ms,
                    attempt,
                )
                raise
        ms = (time.perf_counter() - t0) * 1000
        status = resp.status_code
        level = logging.DEBUG if status < 400 else logging.WARNING
        logger.log(
            level,
            "%s %s params=%s -> %d in %.1f ms (attempt %d)",
            method,
            path,
            params,
            status,
            ms,
            attempt,
        )
        return resp

    def _error(self, resp: httpx.Response, method: str, path: str) -> errors.ApiError:
        code: int | None = None
        details: str | None = None
        message = resp.reason_phrase or "error"
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            c = body.get("code")
            code = c if isinstance(c, int) else None
            if isinstance(body.get("message"), str):
                message = body["message"]
            if isinstance(body.get("details"), str):
                details = body["details"]
        elif resp.text:
            message = resp.text[:200]
        cls = errors.api_error_class(resp.status_code)
        return cls(
            resp.status_code,
            code,
            self.scrub(message),
            self.scrub(details) if details else None,
            method=method,
            path=path,
            retry_after=parse_retry_after(
                resp.headers.get("retry-after"), server_date=resp.headers.get("date")
            ),
        )

    async def _attempt(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        json_body: Any,
        ok: Sequence[int],
        authenticated: bool,
        attempt: int,
    ) -> tuple[httpx.Response, Any]:
        refreshed = False
        while True:
            headers: dict[str, str] = {}
            token = None
            if authenticated:
                token = await self._auth.token()
                headers["Authorization"] = f"Bearer {token}"
            resp = await self._send(method, path, params, json_body, headers, attempt)
            if resp.status_code == 401 and token is not None:
                await self._auth.invalidate(token)
                if refreshed or not self._auth.can_refresh:
                    reason = (
                        "the control plane refused a freshly obtained token"
                        if refreshed
                        else "the control plane refused the configured bearer token"
                    )
                    raise AuthenticationError.from_answer(reason, self._error(resp, method, path))
                refreshed = True
                logger.info("%s %s -> 401; obtaining a new token", method, path)
                continue
            break
        if not authenticated and resp.status_code in (400, 401, 403):
            raise AuthenticationError.from_answer(
                "the control plane refused the credentials", self._error(resp, method, path)
            )
        if resp.status_code not in ok:
            if 200 <= resp.status_code < 300:
                raise ProtocolError(f"{method} {path} -> unexpected HTTP {resp.status_code}")
            raise self._error(resp, method, path)
        try:
            body = json.loads(resp.content)
        except ValueError:
            raise ProtocolError(
                f"{method} {path} -> HTTP {resp.status_code} with a body that is not JSON"
            ) from None
        return resp, body

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        path_params: dict[str, str] | None = None,
        json_body: Any = None,
        ok: Sequence[int] = (200,),
        authenticated: bool = True,
        meta: dict[str, Any] | None = None,
        recorder: Recorder | None = None,
    ) -> tuple[int, Any, str]:
        """One logical request with retries. Returns (status, decoded JSON, body text)."""
        s = self.settings
        params = params or {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.max_attempts) | stop_before_delay(s.max_total_retry_time),
            wait=RetryAfterWait(s.min_retry_wait, s.max_retry_wait),
            retry=retry_if_exception(retryable),
            before_sleep=log_retry(method, path, s.max_attempts),
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    resp, body = await self._attempt(
                        method,
                        path,
                        params,
                        json_body,
                        ok,
                        authenticated,
                        attempt.retry_state.attempt_number,
                    )
        except RetryError as exc:
            last = exc.last_attempt.exception()
            n = exc.last_attempt.attempt_number
            raise RetryExhaustedError(
                f"{method} {path} failed after {n} attempts: {self.scrub(str(last))}",
                attempts=n,
                last_error=last,
            ) from last
        text = resp.text
        if recorder is not None and operation != "grant_token":
            recorder(
                RawResponse(
                    operation=operation,
                    method=method,
                    path=path,
                    params=dict(params),
                    path_params=dict(path_params or {}),
                    status=resp.status_code,
                    received_at=datetime.now(UTC),
                    text=text,
                    meta={**(meta or {}), "server_date": resp.headers.get("date")},
                )
            )
        return resp.status_code, body, text
