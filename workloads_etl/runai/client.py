"""The async client of the Run:ai workloads API: the only code that speaks HTTP to it.

One :class:`RunaiClient` owns one ``httpx.AsyncClient`` (one connection pool sized to
``max_concurrency``), an ``asyncio.Semaphore`` bounding requests in flight, an optional
requests-per-second budget (``aiolimiter``) and a shared :class:`TokenManager`. Every request
goes through :meth:`RunaiClient._call`, which retries with ``tenacity``: 429, 408, 5xx,
timeouts, connection errors and garbled 2xx bodies are retried with exponential backoff and
full jitter (a server's Retry-After wins, in both of its forms, with a little jitter on top;
every wait is capped by ``max_retry_wait``), until ``max_attempts`` or ``max_total_retry_time``;
everything else fails at once with a typed error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import httpx
import pyarrow as pa
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from workloads_etl.runai import errors
from workloads_etl.runai.auth import TokenManager
from workloads_etl.runai.errors import (
    AuthenticationError,
    ConfigurationError,
    ProtocolError,
    RetryExhaustedError,
    RunaiError,
    TLSVerificationError,
)
from workloads_etl.runai.filters import FilterBy, filter_param
from workloads_etl.runai.metrics import merge_windows, parse_measurements
from workloads_etl.runai.models import (
    TELEMETRY_GROUP_BY,
    TELEMETRY_TYPES,
    MetricsResult,
    RawResponse,
    TelemetryResponse,
    Workload,
)
from workloads_etl.runai.settings import RunaiSettings

logger = logging.getLogger("workloads_etl.runai")

Recorder = Callable[[RawResponse], None]

MAX_SAMPLES_PER_CALL = 1000
TOKEN_PATH = "/api/v1/token"  # noqa: S105 - a URL path, not a secret
WORKLOADS_PATH = "/api/v1/workloads"
_SORT_ORDERS = ("asc", "desc")


# delta-seconds (RFC 9110 says 1*DIGIT; a decimal fraction is accepted too). No sign, no
# exponent, no NaN/Infinity spellings.
_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def parse_retry_after(
    value: str | None, now: datetime | None = None, server_date: str | None = None
) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    Delta-seconds must be a finite non-negative number (digits, optionally a decimal
    fraction); anything else (``nan``, ``inf``, negative, exponent forms) gives None, and the
    caller falls back to its own backoff. An HTTP-date is measured against the answer's
    ``Date`` header (``server_date``) when that is readable, so a skew between the server's
    clock and ours does not change the wait; otherwise against ``now`` (default: the local
    clock). A date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    when = _http_date(value)
    if when is None:
        return None
    reference = _http_date(server_date) or now or datetime.now(UTC)
    return max((when - reference).total_seconds(), 0.0)


class RetryAfterWait:
    """tenacity wait: the server's Retry-After when it sent one, else exponential backoff with
    full jitter; never more than ``maximum``.

    Backoff (no Retry-After): uniform in ``[0, min(maximum, initial * 2 ** (attempt - 1))]``,
    so concurrent clients that failed together spread out instead of retrying in lockstep.
    Retry-After below the cap: the server's value plus a small positive jitter (up to 10 % of
    it plus ``initial``), never less than asked. Retry-After at or above the cap: uniform in
    ``[0.9 * maximum, maximum]``.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self._ceiling = wait_exponential(multiplier=initial, max=maximum)
        self._rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wanted = float(retry_after)
            if wanted >= self.maximum:
                return self._rng.uniform(0.9 * self.maximum, self.maximum)
            extra = self._rng.uniform(0.0, 0.1 * wanted + self.initial)
            return min(wanted + extra, self.maximum)
        ceiling = min(float(self._ceiling(retry_state)), self.maximum)
        return self._rng.uniform(0.0, ceiling)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, TLSVerificationError):
        return False
    return isinstance(exc, httpx.TransportError) or errors.is_retryable(exc)


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


def _iso(dt: datetime) -> str:
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def plan_windows(
    start: datetime, end: datetime, step_seconds: int
) -> list[tuple[datetime, datetime, int]]:
    """Split ``[start, end)`` into windows of at most 1000 samples at ``step_seconds``.

    Window ``k`` starts at ``start + k * 1000 * step`` and spans a whole number ``n`` of steps:
    the server places ``n`` samples at ``ws + i * (we - ws) / n``, so only whole-step windows
    keep every sample on the grid ``start + j * step``. The last window therefore covers
    ``ceil((end - ws) / step)`` steps and may reach past ``end`` by less than one step;
    :func:`merge_windows` drops the samples at or after ``end``.
    """
    if step_seconds <= 0:
        raise ConfigurationError("step_seconds must be positive")
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ConfigurationError(f"metrics range is empty: start {start} is not before end {end}")
    step = timedelta(seconds=step_seconds)
    span = step * MAX_SAMPLES_PER_CALL
    windows = []
    ws = start
    while ws < end:
        n = min(math.ceil((end - ws) / step), MAX_SAMPLES_PER_CALL)
        windows.append((ws, ws + n * step, n))
        ws = ws + span
    return windows


class RunaiClient:
    """Async client of the Run:ai workloads API. Use as ``async with RunaiClient(...) as c``.

    ``recorder`` receives a :class:`RawResponse` for every final successful answer (never for
    retried failures, never for the token operation).
    """

    def __init__(
        self,
        settings: RunaiSettings,
        recorder: Recorder | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._recorder = recorder
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

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> RunaiClient:
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
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def token_requests(self) -> int:
        """How many tokens this client obtained."""
        return self._auth.refresh_count

    # --- plumbing ------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
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
        _, body, _ = await self._call(
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
            self._scrub(message),
            self._scrub(details) if details else None,
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

    async def _call(
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
    ) -> tuple[int, Any, str]:
        """One logical request with retries. Returns (status, decoded JSON, body text)."""
        s = self.settings
        params = params or {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.max_attempts) | stop_before_delay(s.max_total_retry_time),
            wait=RetryAfterWait(s.min_retry_wait, s.max_retry_wait),
            retry=retry_if_exception(_retryable),
            before_sleep=_log_retry(method, path, s.max_attempts),
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
                f"{method} {path} failed after {n} attempts: {self._scrub(str(last))}",
                attempts=n,
                last_error=last,
            ) from last
        text = resp.text
        if self._recorder is not None and operation != "grant_token":
            self._recorder(
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

    # --- workloads -----------------------------------------------------------------------

    @staticmethod
    def _list_params(
        deleted: bool,
        filter_by: FilterBy | Sequence[str] | None,
        search: str | None,
    ) -> dict[str, str]:
        params: dict[str, str] = {}
        if deleted:
            params["deleted"] = "true"
        fb = filter_param(filter_by)
        if fb:
            params["filterBy"] = fb
        if search:
            params["search"] = search
        return params

    async def _list_pass(
        self, base: dict[str, str], seen: set[str], pass_no: int
    ) -> AsyncIterator[list[Workload]]:
        offset = 0
        page_no = 0
        limit = self.settings.page_size
        while True:
            params = {**base, "offset": str(offset), "limit": str(limit)}
            _, body, _ = await self._call(
                "get_workloads",
                "GET",
                WORKLOADS_PATH,
                params=params,
                meta={"page": page_no, "pass": pass_no},
            )
            if not isinstance(body, dict) or not isinstance(body.get("workloads"), list):
                raise ProtocolError("GET /api/v1/workloads -> body without a 'workloads' array")
            rows = body["workloads"]
            fresh: list[Workload] = []
            for w in rows:
                wid = w.get("id") if isinstance(w, dict) else None
                if not isinstance(wid, str):
                    raise ProtocolError(f"a workload on page {page_no} has no string 'id'")
                if wid not in seen:
                    seen.add(wid)
                    fresh.append(cast(Workload, w))
            if fresh:
                yield fresh
            page_no += 1
            nxt = body.get("next")
            if not rows or nxt is None:
                return
            if not isinstance(nxt, int) or isinstance(nxt, bool) or nxt <= offset:
                logger.warning(
                    "GET /api/v1/workloads: 'next'=%r does not advance past offset %d; "
                    "stopping the listing",
                    nxt,
                    offset,
                )
                return
            offset = nxt

    async def iter_workload_pages(
        self,
        deleted: bool = False,
        filter_by: FilterBy | Sequence[str] | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        search: str | None = None,
    ) -> AsyncIterator[list[Workload]]:
        """Every workload, page by page; each workload id is yielded once.

        Offset paging over a list that changes between pages may repeat rows (dropped here)
        or skip them; after the last page the count operation is asked with the same filters
        and, when it reports more workloads than were seen, the list is read once more
        (``list_reconcile_passes``) yielding only unseen ones.
        """
        base = self._list_params(deleted, filter_by, search)
        if sort_by:
            base["sortBy"] = sort_by
        if sort_order:
            if sort_order not in _SORT_ORDERS:
                raise ConfigurationError(f"sort_order must be 'asc' or 'desc', not {sort_order!r}")
            base["sortOrder"] = sort_order
        seen: set[str] = set()
        async for page in self._list_pass(base, seen, 0):
            yield page
        for pass_no in range(1, self.settings.list_reconcile_passes + 1):
            total = await self.count_workloads(deleted=deleted, filter_by=filter_by, search=search)
            if total <= len(seen):
                return
            logger.info(
                "GET /api/v1/workloads: count says %d, listing gave %d; reading the list again",
                total,
                len(seen),
            )
            async for page in self._list_pass(base, seen, pass_no):
                yield page

    async def iter_workloads(
        self,
        deleted: bool = False,
        filter_by: FilterBy | Sequence[str] | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        search: str | None = None,
    ) -> AsyncIterator[Workload]:
        async for page in self.iter_workload_pages(deleted, filter_by, sort_by, sort_order, search):
            for w in page:
                yield w

    async def count_workloads(
        self,
        deleted: bool = False,
        filter_by: FilterBy | Sequence[str] | None = None,
        search: str | None = None,
    ) -> int:
        params = self._list_params(deleted, filter_by, search)
        _, body, _ = await self._call(
            "count_workloads", "GET", f"{WORKLOADS_PATH}/count", params=params
        )
        count = body.get("count") if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ProtocolError("GET /api/v1/workloads/count -> body without an integer 'count'")
        return count

    async def get_workload(self, workload_id: str) -> Workload:
        path = f"{WORKLOADS_PATH}/{quote(workload_id, safe='')}"
        _, body, _ = await self._call(
            "get_workload", "GET", path, path_params={"workloadId": workload_id}
        )
        if not isinstance(body, dict) or "id" not in body:
            raise ProtocolError(f"GET {path} -> body is not a workload")
        return cast(Workload, body)

    async def get_telemetry(
        self,
        telemetry_type: str,
        group_by: Sequence[str] = (),
        cluster_id: str | None = None,
        nodepool_name: str | None = None,
        department_id: str | None = None,
        phases: Sequence[str] = (),
    ) -> TelemetryResponse:
        if telemetry_type not in TELEMETRY_TYPES:
            raise ConfigurationError(
                f"unknown telemetry type {telemetry_type!r}; one of {', '.join(TELEMETRY_TYPES)}"
            )
        bad = [g for g in group_by if g not in TELEMETRY_GROUP_BY]
        if bad or len(group_by) > 2:
            raise ConfigurationError(
                f"groupBy takes at most two of {', '.join(TELEMETRY_GROUP_BY)}; "
                f"got {list(group_by)}"
            )
        params = {"telemetryType": telemetry_type}
        if group_by:
            params["groupBy"] = ",".join(group_by)
        if cluster_id:
            params["clusterId"] = cluster_id
        if nodepool_name:
            params["nodepoolName"] = nodepool_name
        if department_id:
            params["departmentId"] = department_id
        if phases:
            params["filterByPhases"] = ",".join(phases)
        _, body, _ = await self._call(
            "get_workloads_telemetry", "GET", f"{WORKLOADS_PATH}/telemetry", params=params
        )
        if not isinstance(body, dict) or not isinstance(body.get("values"), list):
            raise ProtocolError("GET /api/v1/workloads/telemetry -> body without 'values'")
        return cast(TelemetryResponse, body)

    # --- metrics -------------------------------------------------------------------------

    async def get_workload_metrics(
        self,
        workload_id: str,
        metric_types: Sequence[str],
        start: datetime,
        end: datetime,
        step_seconds: int = 60,
    ) -> MetricsResult:
        path = f"{WORKLOADS_PATH}/{quote(workload_id, safe='')}/metrics"
        return await self._metrics(
            "get_workload_metrics",
            path,
            {"workloadId": workload_id},
            workload_id,
            None,
            metric_types,
            start,
            end,
            step_seconds,
        )

    async def get_pod_metrics(
        self,
        workload_id: str,
        pod_id: str,
        metric_types: Sequence[str],
        start: datetime,
        end: datetime,
        step_seconds: int = 60,
    ) -> MetricsResult:
        path = (
            f"{WORKLOADS_PATH}/{quote(workload_id, safe='')}/pods/{quote(pod_id, safe='')}/metrics"
        )
        return await self._metrics(
            "get_workload_pod_metrics",
            path,
            {"workloadId": workload_id, "podId": pod_id},
            workload_id,
            pod_id,
            metric_types,
            start,
            end,
            step_seconds,
        )

    async def _metrics(
        self,
        operation: str,
        path: str,
        path_params: dict[str, str],
        workload_id: str,
        pod_id: str | None,
        metric_types: Sequence[str],
        start: datetime,
        end: datetime,
        step_seconds: int,
    ) -> MetricsResult:
        types = tuple(dict.fromkeys(metric_types))
        if not types:
            raise ConfigurationError("at least one metric type is needed")
        bad = [t for t in types if not t or "," in t]
        if bad:
            raise ConfigurationError(f"invalid metric types {bad}")
        windows = plan_windows(start, end, step_seconds)

        async def one(
            k: int, ws: datetime, we: datetime, n: int
        ) -> tuple[list[pa.Table], list[str], list[dict[str, Any]]]:
            wanted = list(types)
            tables: list[pa.Table] = []
            rejects: list[dict[str, Any]] = []
            for round_no in range(self.settings.metrics_partial_retries + 1):
                params = {
                    "metricType": ",".join(wanted),
                    "start": _iso(ws),
                    "end": _iso(we),
                    "numberOfSamples": str(n),
                }
                status, body, _ = await self._call(
                    operation,
                    "GET",
                    path,
                    params=params,
                    path_params=path_params,
                    ok=(200, 207),
                    # the last window may reach past ``end``: samples at or after
                    # ``range_end`` were not asked for and are dropped by the merge
                    meta={"window": k, "round": round_no, "range_end": _iso(end)},
                )
                parsed = parse_measurements(body)
                tables.append(parsed.table)
                rejects.extend(parsed.rejects)
                got = set(parsed.types)
                wanted = [t for t in wanted if t not in got]
                if status != 207 or not wanted:
                    if status != 207:
                        wanted = []  # a full answer: absent types have no data
                    break
                logger.info(
                    "%s window %d: partial answer, missing %s (round %d)",
                    path,
                    k,
                    ",".join(wanted),
                    round_no,
                )
            return tables, wanted, rejects

        tasks = [asyncio.ensure_future(one(k, *w)) for k, w in enumerate(windows)]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:  # one window failed: do not leave the others running
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        all_tables = [t for tables, _, _ in results for t in tables]
        missing = sorted({t for _, m, _ in results for t in m})
        rejects = [r for _, _, rj in results for r in rj]
        table = merge_windows(all_tables, _utc(start), _utc(end))
        present = set(table.column("metric_type").to_pylist()) if table.num_rows else set()
        empty = [t for t in types if t not in present and t not in missing]
        return MetricsResult(
            workload_id=workload_id,
            start=_utc(start),
            end=_utc(end),
            step_seconds=step_seconds,
            table=table,
            metric_types=types,
            missing_types=missing,
            empty_types=empty,
            rejects=rejects,
            windows=len(windows),
            pod_id=pod_id,
        )


def _log_retry(method: str, path: str, max_attempts: int) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s %s attempt %d/%d failed (%s: %s); retrying in %.2f s",
            method,
            path,
            state.attempt_number,
            max_attempts,
            type(exc).__name__,
            str(exc)[:200],
            wait,
        )

    return log
