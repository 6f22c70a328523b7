"""The HTTP core of the Run:ai client: the only code that speaks HTTP to the control plane.

One :class:`Session` owns one httpx transport (by default
:class:`~workloads_etl.runai.transport.AiohttpTransport`, ``max_concurrency`` keep-alive
connections), an ``asyncio.Semaphore`` bounding requests in flight, an optional
requests-per-second budget (``aiolimiter``) and a shared :class:`TokenManager`. It builds
each ``httpx.Request`` itself (URL, headers, timeouts) and hands it to the transport: an
``httpx.AsyncClient`` between them would add cookies, auth hooks and redirect handling the
control plane does not use, and cost about a fifth of the CPU of a request.
:meth:`Session.call` is one logical request: authenticated, retried with ``tenacity`` as
:mod:`workloads_etl.runai.retry` decides (within the run's :class:`RetryBudget`), its final
successful answer handed to the caller's recorder as a :class:`RawResponse`.

Every attempt has a total deadline (connect, send and the whole body: ``request_deadline``,
shortened to what is left of the retry budget when the control plane has not answered for a
while) and a size limit (``max_response_bytes``, checked against ``Content-Length`` and while
the body streams in, so an oversized answer is never held whole). Bodies are decoded by
:func:`workloads_etl.runai.body.loads`, which no nesting depth can crash.
"""

from __future__ import annotations

import asyncio
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
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    stop_before_delay,
)
from tenacity.stop import stop_base

from workloads_etl.runai import body as json_body_codec
from workloads_etl.runai import errors
from workloads_etl.runai.auth import TokenManager
from workloads_etl.runai.errors import (
    AuthenticationError,
    ControlPlaneUnavailableError,
    DeadlineExceededError,
    ProtocolError,
    ResponseTooLargeError,
    RetryExhaustedError,
    RunaiError,
    TLSVerificationError,
)
from workloads_etl.runai.models import RawResponse
from workloads_etl.runai.retry import (
    RetryAfterWait,
    RetryBudget,
    log_retry,
    parse_retry_after,
    retryable,
)
from workloads_etl.runai.settings import RunaiSettings

logger = logging.getLogger("workloads_etl.runai")

Recorder = Callable[[RawResponse], None]

TOKEN_PATH = "/api/v1/token"  # noqa: S105 - a URL path, not a secret
MIB = 1024 * 1024
# Headers that describe the body as sent on the wire, not the decoded body kept.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _text(resp: httpx.Response) -> str:
    """The answer's body as text: what ``resp.text`` gives, without its charset lookups when
    the answer names no charset (JSON is UTF-8)."""
    if "charset" in resp.headers.get("content-type", "").lower():
        return resp.text
    return resp.content.decode("utf-8", errors="replace")


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


class _BudgetSpent(stop_base):
    """tenacity stop: the run's retry budget would be spent by the next wait."""

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self.gave_up = False

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.budget.left() - retry_state.upcoming_sleep <= 0:
            self.gave_up = True
            self.budget.give_up()
        return self.gave_up


class Session:
    """Connections, authentication, concurrency and retries shared by a client and its views.

    Open with :meth:`open` (or ``async with``); every request goes through :meth:`call`.
    """

    def __init__(
        self,
        settings: RunaiSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.settings = settings
        self.budget = budget if budget is not None else RetryBudget(settings.retry_budget)
        self._given_transport = transport
        self._wire: httpx.AsyncBaseTransport | None = None
        # What every request carries: the headers, and httpx's timeouts for the transport.
        self._headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": "workloads-etl",
        }
        self._timeouts = httpx.Timeout(settings.timeout, connect=settings.connect_timeout).as_dict()
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
        # aiohttp is imported by the processes that send requests, not by every process that
        # imports the client (the run's own process only starts the extraction steps).
        from workloads_etl.runai.transport import AiohttpTransport

        s = self.settings
        self._wire = (
            self._given_transport
            if self._given_transport is not None
            else AiohttpTransport(s.base_url, s.max_concurrency, s.ssl_verify())
        )

    async def aclose(self) -> None:
        if self._wire is not None:
            wire, self._wire = self._wire, None
            await wire.aclose()

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
        if self._wire is None:
            raise RunaiError("the client is not open; use 'async with RunaiClient(...)'")
        async with self._semaphore:
            if self._limiter is not None:
                await self._limiter.acquire()
            deadline = self._attempt_deadline()
            t0 = time.perf_counter()
            try:
                self.request_count += 1
                async with asyncio.timeout(deadline):
                    resp = await self._receive(method, path, params, json_body, headers)
            except TimeoutError:
                logger.warning(
                    "%s %s params=%s -> no complete answer within %.1f s (attempt %d)",
                    method,
                    path,
                    params,
                    deadline,
                    attempt,
                )
                raise DeadlineExceededError(
                    f"{method} {path}: no complete answer within {deadline:.0f} s "
                    "(the request deadline, RUNAI_REQUEST_DEADLINE)",
                    deadline=deadline,
                ) from None
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

    def _attempt_deadline(self) -> float:
        """The whole attempt's deadline: the configured one, or less when the control plane
        has not answered for so long that only this much of the run's budget is left."""
        s = self.settings
        return min(s.request_deadline, max(self.budget.left(), s.connect_timeout))

    async def _receive(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        json_body: Any,
        headers: dict[str, str],
    ) -> httpx.Response:
        """Send one request and read its whole body, never more than the size limit."""
        assert self._wire is not None
        limit = self.settings.max_response_bytes
        request = httpx.Request(
            method,
            self.settings.base_url + path,
            params=params or None,
            json=json_body,
            headers={**self._headers, **headers},
            extensions={"timeout": self._timeouts},
        )
        resp = await self._wire.handle_async_request(request)
        resp.request = request
        chunks: list[bytes] = []
        try:
            declared = resp.headers.get("content-length", "")
            size = int(declared) if declared.isdigit() else 0
            if size <= limit:
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        break
                    chunks.append(chunk)
        finally:
            await resp.aclose()
        if size > limit:
            logger.warning("%s %s -> answer above %d bytes; not read", method, path, limit)
            raise ResponseTooLargeError(
                f"{method} {path}: the answer is larger than {limit / MIB:.0f} MiB "
                "(RUNAI_MAX_RESPONSE_MB)",
                limit=limit,
            )
        kept = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        return httpx.Response(
            resp.status_code, headers=kept, content=b"".join(chunks), request=request
        )

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
            body = json_body_codec.loads(resp.content)
        except ValueError:
            raise ProtocolError(
                f"{method} {path} -> HTTP {resp.status_code} with a body that is not JSON"
            ) from None
        return resp, body

    async def _retry(
        self,
        first: Exception,
        started: float,
        method: str,
        path: str,
        params: dict[str, str],
        json_body: Any,
        ok: Sequence[int],
        authenticated: bool,
    ) -> tuple[httpx.Response, Any]:
        """Attempts after a first one that failed with ``first`` (retryable), at ``started``
        on the monotonic clock: waits, stops and the run's budget as tenacity is told."""
        s = self.settings
        budget = self.budget
        budget_spent = _BudgetSpent(budget)
        retrying = AsyncRetrying(
            stop=stop_any(
                stop_after_attempt(s.max_attempts),
                stop_before_delay(s.max_total_retry_time),
                budget_spent,
            ),
            wait=RetryAfterWait(s.min_retry_wait, s.max_retry_wait),
            retry=retry_if_exception(retryable),
            before_sleep=log_retry(method, path, s.max_attempts),
            reraise=False,
        )
        failed: Exception | None = first
        try:
            async for attempt in retrying:
                with attempt:
                    if failed is not None:
                        # The first attempt, made before tenacity: its failure, its start.
                        attempt.retry_state.start_time = started
                        exc, failed = failed, None
                        raise exc
                    return await self._attempt(
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
            if budget_spent.gave_up:
                raise ControlPlaneUnavailableError(
                    f"{method} {path}: no successful answer from the control plane for "
                    f"{budget.seconds:.0f} s (the run's retry budget, RUNAI_RETRY_BUDGET); "
                    f"last error: {self.scrub(str(last))}",
                    attempts=n,
                    last_error=last,
                ) from last
            raise RetryExhaustedError(
                f"{method} {path} failed after {n} attempts: {self.scrub(str(last))}",
                attempts=n,
                last_error=last,
            ) from last
        raise AssertionError("tenacity ended without an outcome")  # pragma: no cover

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
        params = params or {}
        started = time.monotonic()
        # The first attempt goes without tenacity: most requests succeed at once, and its
        # objects per call cost a tenth of a request's CPU. Its loop is entered only after a
        # retryable failure, with that failure as its first attempt.
        try:
            resp, body = await self._attempt(method, path, params, json_body, ok, authenticated, 1)
        except Exception as exc:
            if not retryable(exc):
                raise
            resp, body = await self._retry(
                exc, started, method, path, params, json_body, ok, authenticated
            )
        self.budget.success()
        text = _text(resp)
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
                    body=body,
                )
            )
        return resp.status_code, body, text
