"""Retrying one logical request: which failures are retried, and how long to wait.

429, 408, 5xx, timeouts, deadlines, connection errors and garbled 2xx bodies are retried with
exponential backoff and full jitter; a server's Retry-After wins, in both of its forms, with
a little jitter on top; every wait is capped. Everything else fails at once: credentials
refused, 403, 404, TLS, an answer too large, and errors of our own side (a full disk).

Above the retries of one request sits the run's :class:`RetryBudget`: once no request of the
run has succeeded for ``retry_budget`` seconds, the control plane is taken to be down and
nothing is retried any more, so a run against a dead control plane ends in bounded time.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from tenacity import RetryCallState, wait_exponential

from workloads_etl.runai import errors
from workloads_etl.runai.errors import TLSVerificationError
from workloads_etl.runai.values import parse_http_date

logger = logging.getLogger("workloads_etl.runai")

# delta-seconds (RFC 9110 says 1*DIGIT; a decimal fraction is accepted too). No sign, no
# exponent, no NaN/Infinity spellings.
_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")


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
    when = parse_http_date(value)
    if when is None:
        return None
    reference = parse_http_date(server_date) or now or datetime.now(UTC)
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


class RetryBudget:
    """The retrying one run may do: none once ``seconds`` pass without a successful answer.

    One budget is shared by every request of a run (pass it to each client of the run). A
    success anywhere resets it; :meth:`left` is what remains of it now.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last_success = clock()

    def success(self) -> None:
        self._last_success = self._clock()

    def give_up(self) -> None:
        """Spend what is left: the next failure of the run is not retried (a success
        refills the budget)."""
        self._last_success = min(self._last_success, self._clock() - self.seconds)

    def left(self) -> float:
        return self.seconds - (self._clock() - self._last_success)

    @property
    def last_success(self) -> float:
        """When the last success was, on the system's monotonic clock (which every process
        of the machine shares, so a budget can travel to a child process and back)."""
        return self._last_success

    def resume(self, last_success: float) -> None:
        """Continue a budget of another process of this machine (see :attr:`last_success`)."""
        self._last_success = last_success

    def spent(self) -> bool:
        return self.left() <= 0


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, TLSVerificationError):
        return False
    return isinstance(exc, httpx.TransportError) or errors.is_retryable(exc)


def log_retry(method: str, path: str, max_attempts: int) -> Callable[[RetryCallState], None]:
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
