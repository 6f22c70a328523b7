"""Injected faults of the simulated control plane: latency, 429, 5xx, dropped connections,
short-lived tokens, list drift (repeated and skipped rows), 207 partial metrics and
malformed records.

Every decision is a pure function of ``(fault seed, fault name, request key, attempt)``.
The request key (``request_key``) is the method, the path, the query parameters sorted and
a digest of the body (never the ``Authorization`` header); ``attempt`` counts how often
that same key has been seen before. However many clients send requests, concurrently and in
whatever order, the same requests get the same set of ``(key, attempt, fault)`` decisions,
and a run is reproducible from the seed. The token endpoint is never faulted twice in a row
for one key: attempt ``n`` is not faulted when attempt ``n - 1`` was, still a function of
the key and the attempt only.
Record-level faults (malformed records) depend on ``(seed, workload id)`` only, so a
re-fetch returns the same malformed record.

``FaultState`` holds what the decisions are counted from (attempts per key) and, when asked
to, a log of every decision made (served by the admin endpoint ``GET /_simulator/faults``).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_FORMS = ("seconds", "date", "mixed")
METRICS_TIMESTAMP_FORMATS = ("iso", "space")
TOKEN_PATH = "/api/v1/token"  # noqa: S105 - a URL path
CLOCK_PATH = "/_simulator/clock"  # the admin clock endpoint (see app)
FAULTS_PATH = "/_simulator/faults"  # the admin fault decision log (see app)
UNFAULTED_PATHS = frozenset({"/healthz", CLOCK_PATH, FAULTS_PATH})
ERROR_STATUSES = (500, 502, 503)
ERROR_MESSAGES = {
    500: "Something went wrong.",
    502: "Bad gateway.",
    503: "Please try again in few minutes.",
}


class FaultConfigError(ValueError):
    """A fault specification could not be parsed or is out of range."""


@dataclass(frozen=True)
class FaultConfig:
    """Which faults the simulator injects. Everything is off by default.

    Rates are probabilities in ``[0, 1]``; ``drop_rate + rate_limit_rate + error_rate`` must
    not exceed 1 because the three are mutually exclusive outcomes of one draw.
    ``list_drift`` is the chance, per page boundary of a listing, that rows were inserted
    before the cursor (the next pages repeat rows); ``list_skip`` the chance that rows
    before the cursor went away (the next pages skip rows, while the count still has
    them). Skips are drawn per attempt of a page request, so a listing read again skips
    other rows, or none.
    """

    seed: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    retry_after_form: str = "seconds"
    drop_rate: float = 0.0
    token_ttl: int | None = None
    list_drift: float = 0.0
    list_skip: float = 0.0
    partial_rate: float = 0.0
    malformed_rate: float = 0.0
    metrics_timestamp_format: str = "iso"

    def __post_init__(self) -> None:
        for name in (
            "error_rate",
            "rate_limit_rate",
            "drop_rate",
            "list_drift",
            "list_skip",
            "partial_rate",
            "malformed_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultConfigError(f"{name} must be within [0, 1], got {value}")
        if self.drop_rate + self.rate_limit_rate + self.error_rate > 1.0 + 1e-9:
            raise FaultConfigError("drop_rate + rate_limit_rate + error_rate must not exceed 1")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise FaultConfigError("latency_ms and jitter_ms must be >= 0")
        if self.retry_after < 0:
            raise FaultConfigError("retry_after must be >= 0")
        if self.token_ttl is not None and self.token_ttl < 1:
            raise FaultConfigError("token_ttl must be >= 1 second")
        if self.retry_after_form not in RETRY_AFTER_FORMS:
            raise FaultConfigError(
                f"retry_after_form must be one of {', '.join(RETRY_AFTER_FORMS)}, "
                f"got {self.retry_after_form!r}"
            )
        if self.metrics_timestamp_format not in METRICS_TIMESTAMP_FORMATS:
            raise FaultConfigError(
                "metrics_timestamp_format must be one of "
                f"{', '.join(METRICS_TIMESTAMP_FORMATS)}, got {self.metrics_timestamp_format!r}"
            )

    @classmethod
    def parse(cls, text: str) -> FaultConfig:
        """Parse ``"latency_ms=50,error_rate=0.2,retry_after_form=date,seed=1"``."""
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not value:
                raise FaultConfigError(f"fault setting {item!r} is not of the form name=value")
            if key not in types:
                raise FaultConfigError(f"unknown fault {key!r}; known: {', '.join(sorted(types))}")
            if key in values:
                raise FaultConfigError(f"fault {key!r} given twice")
            kind = str(types[key])
            try:
                if kind.startswith("int"):
                    values[key] = int(value)
                elif kind == "float":
                    values[key] = float(value)
                else:
                    values[key] = value
            except ValueError:
                raise FaultConfigError(
                    f"fault {key!r} needs a {kind.split()[0]}, got {value!r}"
                ) from None
        return cls(**values)

    def with_overrides(self, **changes: Any) -> FaultConfig:
        return replace(self, **changes)

    def to_spec(self) -> str:
        """The ``name=value`` text :meth:`parse` reads back (only non-default settings)."""
        default = FaultConfig()
        items = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return ",".join(items)


def unit_draw(seed: int, *parts: object) -> float:
    """A reproducible uniform number in ``[0, 1)`` for the given seed and key parts."""
    h = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def request_key(method: str, path: str, query: str, body: bytes = b"") -> str:
    """The stable key of a request: method, path, sorted query parameters, body digest.
    The digest leaves out fields whose name holds "secret", so that no key (nor the decision
    log that shows keys) is derived from a credential."""
    key = f"{method} {path}?{_sorted_query(query)}"
    if body:
        key += "#" + hashlib.blake2b(_without_secrets(body), digest_size=8).hexdigest()
    return key


@lru_cache(maxsize=1024)
def _sorted_query(query: str) -> str:
    """The query's parameters, sorted and encoded again; many requests share one query (the
    metrics of every workload over the same window), so each is worked out once."""
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def _without_secrets(body: bytes) -> bytes:
    try:
        value = json.loads(body)
    except ValueError:
        return body
    if not isinstance(value, dict):
        return body
    kept = {k: v for k, v in value.items() if "secret" not in str(k).lower()}
    return json.dumps(kept, sort_keys=True).encode()


@dataclass(frozen=True)
class RequestFaultKey:
    """Identity of one request for fault decisions: what was asked and the how-many-th time."""

    identity: str
    attempt: int

    def draw(self, seed: int, fault: str) -> float:
        return unit_draw(seed, fault, self.identity, self.attempt)


class AttemptCounter:
    """Counts how often each request identity has been seen (bounded memory)."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def next(self, identity: str) -> int:
        with self._lock:
            n = self._counts.get(identity, 0)
            if n == 0 and len(self._counts) >= self._max:
                self._counts.clear()
            self._counts[identity] = n + 1
            return n


@dataclass(frozen=True)
class FaultDecision:
    """One decision: for request ``key`` at ``attempt``, ``fault`` came out as ``result``
    (``"none"`` when nothing was injected)."""

    key: str
    attempt: int
    fault: str
    result: str

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "attempt": self.attempt,
            "fault": self.fault,
            "result": self.result,
        }


class FaultState:
    """What one simulator's fault decisions are counted from, and what they were.

    ``attempts`` numbers the requests of each key; ``counts`` tallies the injected
    request-level faults. With ``record`` every decision is kept in ``decisions`` (at most
    ``max_decisions``; later ones are dropped and counted in ``decisions_dropped``).
    """

    def __init__(self, record: bool = False, max_decisions: int = 100_000) -> None:
        self.attempts = AttemptCounter()
        self.counts: dict[str, int] = {}
        self.record = record
        self.decisions: list[FaultDecision] = []
        self.decisions_dropped = 0
        self._max_decisions = max_decisions
        self._token_chains: dict[str, list[str | None]] = {}
        self._lock = threading.Lock()

    def note(self, key: RequestFaultKey, fault: str, result: str | None) -> None:
        """Record a decision (when recording); ``None`` stands for no fault."""
        if not self.record:
            return
        with self._lock:
            if len(self.decisions) >= self._max_decisions:
                self.decisions_dropped += 1
                return
            outcome = "none" if result is None else result
            self.decisions.append(FaultDecision(key.identity, key.attempt, fault, outcome))

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def token_outcome(
        self, key: RequestFaultKey, draw: Callable[[RequestFaultKey], str | None]
    ) -> str | None:
        """The token endpoint's outcome: ``draw``'s, except right after a faulted attempt.

        ``outcome(n) = None if outcome(n - 1) is a fault else draw(n)``, computed from
        attempt 0 and remembered per key, so it depends on the key and the attempt only.
        """
        with self._lock:
            if key.identity not in self._token_chains and len(self._token_chains) >= 10_000:
                self._token_chains.clear()  # recomputed from attempt 0 when asked again
            chain = self._token_chains.setdefault(key.identity, [])
            while len(chain) <= key.attempt:
                n = len(chain)
                faulted_before = n > 0 and chain[n - 1] is not None
                chain.append(None if faulted_before else draw(RequestFaultKey(key.identity, n)))
            return chain[key.attempt]

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "decisions": [d.as_json() for d in self.decisions],
                "decisionsDropped": self.decisions_dropped,
                "counts": dict(self.counts),
            }


# Set while a connection is dropped on purpose so the server's error log can ignore it.
dropping_connection: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dropping_connection", default=False
)


class DroppedConnectionLogFilter(logging.Filter):
    """Hides the server's complaint about the deliberately incomplete response."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not dropping_connection.get()


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DroppedConnectionLogFilter) for f in logger.filters):
        logger.addFilter(DroppedConnectionLogFilter())


class DroppedConnection(Exception):
    """Raised inside the app to abort a response mid-flight."""


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"code": status, "message": message}).encode()


def retry_after_value(config: FaultConfig, key: RequestFaultKey, now: datetime) -> str:
    form = config.retry_after_form
    if form == "mixed":
        form = "date" if key.draw(config.seed, "retry_after_form") < 0.5 else "seconds"
    if form == "seconds":
        return str(config.retry_after)
    # ``now`` is the clock the response's Date header tells, which drops the fraction of
    # the second too, so Retry-After minus Date is exactly the intended delay.
    at = now.replace(microsecond=0) + timedelta(seconds=config.retry_after)
    return format_datetime(at.astimezone(UTC), usegmt=True)


class FaultMiddleware:
    """Pure ASGI middleware applying request-level faults before the app sees the request.

    The request's body is read here (and handed on unchanged) so that its digest is part of
    the request key. The fault key is stored in ``scope["state"]["fault_key"]`` so endpoints
    can take their own reproducible decisions (list drift, partial metrics) from the same
    identity. The token endpoint is faulted too, but never twice in a row for one key, so a
    client that retries always obtains a token. ``clock`` is the clock HTTP-date
    ``Retry-After`` values count from; pass the one the responses' ``Date`` header tells
    (the app passes the cluster's). ``state`` is shared with the endpoints (a fresh one when
    not given).
    """

    def __init__(
        self,
        app: ASGIApp,
        config: FaultConfig,
        clock: Callable[[], datetime] | None = None,
        state: FaultState | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.state = state if state is not None else FaultState()
        self.attempts = self.state.attempts
        self.counts = self.state.counts
        self.clock = clock or (lambda: datetime.now(UTC))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNFAULTED_PATHS:
            await self.app(scope, receive, send)
            return
        cfg = self.config
        body, receive = await _buffer_body(receive)
        query = scope.get("query_string", b"").decode("latin-1")
        identity = request_key(scope["method"], scope["path"], query, body)
        key = RequestFaultKey(identity, self.attempts.next(identity))
        scope.setdefault("state", {})["fault_key"] = key

        if cfg.latency_ms or cfg.jitter_ms:
            delay = cfg.latency_ms + cfg.jitter_ms * key.draw(cfg.seed, "jitter")
            await asyncio.sleep(delay / 1000.0)

        if scope["path"] == TOKEN_PATH:
            outcome = self.state.token_outcome(key, self._outcome)
        else:
            outcome = self._outcome(key)
        self.state.note(key, "request", outcome)
        if outcome is None:
            await self.app(scope, receive, send)
            return
        self.state.count(outcome)
        if outcome == "drop":
            await self._drop(send)
        elif outcome == "429":
            headers = [
                (b"content-type", b"application/json"),
                (b"retry-after", retry_after_value(cfg, key, self.clock()).encode()),
            ]
            body = _error_body(429, "Too many requests.")
            await _send_simple(send, 429, headers, body)
        else:
            status = int(outcome)
            body = _error_body(status, ERROR_MESSAGES[status])
            await _send_simple(send, status, [(b"content-type", b"application/json")], body)

    def _outcome(self, key: RequestFaultKey) -> str | None:
        """The request-level fault drawn for ``key``: drop, 429, a 5xx status, or None."""
        cfg = self.config
        if not (cfg.drop_rate or cfg.rate_limit_rate or cfg.error_rate):
            return None
        u = key.draw(cfg.seed, "outcome")
        if u < cfg.drop_rate:
            return "drop"
        if u < cfg.drop_rate + cfg.rate_limit_rate:
            return "429"
        if u < cfg.drop_rate + cfg.rate_limit_rate + cfg.error_rate:
            pick = int(key.draw(cfg.seed, "error_status") * len(ERROR_STATUSES))
            return str(ERROR_STATUSES[pick])
        return None

    async def _drop(self, send: Send) -> None:
        """Start a response, then abort: the client sees the connection close mid-response."""
        dropping_connection.set(True)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"4096"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"work', "more_body": True})
        raise DroppedConnection("connection dropped by fault injection")


async def _buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read a request's whole body; returns it and a ``receive`` that hands it on again."""
    chunks: list[bytes] = []
    pending: list[Message] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            pending.append(message)
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    pending.insert(0, {"type": "http.request", "body": body, "more_body": False})

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return body, replay


async def _send_simple(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def malformed_kind(config: FaultConfig | None, workload_id: str) -> str | None:
    """Which corruption, if any, a workload's record carries (stable per workload)."""
    if config is None or not config.malformed_rate:
        return None
    if unit_draw(config.seed, "malformed", workload_id) >= config.malformed_rate:
        return None
    kinds = ("bad_quantity", "unknown_enum", "missing_optional", "extra_fields")
    return kinds[int(unit_draw(config.seed, "malformed_kind", workload_id) * len(kinds))]


def corrupt_record(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """Return a plausible but off-spec variant of a Workload record."""
    out = dict(record)
    if kind == "bad_quantity":
        alloc = dict(out.get("allocatedResources") or {})
        alloc["gpuMemory"] = "12 gigs"
        alloc["cpuMemory"] = "-1Qi"
        out["allocatedResources"] = alloc
    elif kind == "unknown_enum":
        out["phase"] = "Hibernating"
    elif kind == "missing_optional":
        for name in ("submittedBy", "allocatedResources", "completedAt", "priority", "images"):
            out.pop(name, None)
    elif kind == "extra_fields":
        out["schedulerHints"] = {"gang": True, "topologyKey": "rack"}
        out["costCenter"] = "cc-4711"
    return out
