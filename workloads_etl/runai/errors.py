"""Exceptions raised by the Run:ai client.

The tree::

    RunaiError                      anything this package raises on purpose
    ├── ConfigurationError          settings missing or invalid (base URL, credentials, CA bundle)
    │   └── TLSVerificationError    the server certificate did not verify
    ├── AuthenticationError         no usable token: credentials refused, or a 401 that survived
    │                               a token refresh; carries status/code/message/details of the
    │                               refusing answer like ApiError (status None when no answer
    │                               was involved, e.g. a static token already known to be bad)
    ├── ApiError                    an HTTP error answer; carries the Error body's code/message
    │   ├── BadRequestError         400 (never retried)
    │   ├── ForbiddenError          403 (never retried)
    │   ├── NotFoundError           404 (never retried)
    │   ├── RateLimitedError        429 (retried, honouring Retry-After)
    │   ├── RequestTimeoutError     408 (retried)
    │   └── ServerError             5xx (retried)
    ├── RetryExhaustedError         retryable failures went on past max_attempts or
    │   │                           max_total_retry_time; ``last_error`` (and ``__cause__``) hold
    │   │                           the final failure
    │   └── ControlPlaneUnavailableError
    │                               the run's retry budget is spent: no successful answer for
    │                               ``retry_budget`` seconds; never retried again in that run
    ├── DeadlineExceededError       an attempt did not complete (connect, send, whole body)
    │                               within ``request_deadline`` (retried)
    ├── ResponseTooLargeError       an answer above ``max_response_bytes`` (never retried)
    ├── PagingError                 a listing whose paging cannot be trusted: a ``next`` that
    │                               does not advance, a page seen before, pages with nothing
    │                               new, more pages than the count allows
    ├── IncompleteListError         a listing that ended below the count endpoint's figure
    └── ProtocolError               a 2xx answer whose body is not what the spec promises
        └── MeasurementsParseError  a metrics body that cannot be read at all

No message ever contains a client secret or a bearer token: the client builds messages from the
method, path, status and the server's Error body, and scrubs known secrets out of the latter.
"""

from __future__ import annotations


class RunaiError(Exception):
    """Base class of every error raised on purpose by ``workloads_etl.runai``."""


class ConfigurationError(RunaiError, ValueError):
    """Settings are missing or invalid."""


class TLSVerificationError(ConfigurationError):
    """The control plane's certificate could not be verified against the trusted CAs."""


def _describe(
    method: str, path: str, status: int, code: int | None, message: str, details: str | None
) -> str:
    where = f"{method} {path} " if method else ""
    text = f"{where}-> HTTP {status}"
    if code is not None and code != status:
        text += f" (code {code})"
    text += f": {message}"
    if details:
        text += f" [{details}]"
    return text


class AuthenticationError(RunaiError):
    """No valid bearer token could be obtained or the control plane keeps refusing it.

    ``reason`` says what went wrong from the client's side. When an HTTP answer refused the
    request, ``status``/``code``/``message``/``details``/``method``/``path`` are those of that
    answer (as on :class:`ApiError`, secrets scrubbed); otherwise ``status`` and ``code`` are
    None and ``message`` is the reason. It is not an ApiError: not every authentication
    failure has an HTTP answer behind it.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        details: str | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.reason = reason
        self.status = status
        self.code = code
        self.message = message if message is not None else reason
        self.details = details
        self.method = method
        self.path = path
        text = reason
        if status is not None:
            text += ": " + _describe(method, path, status, code, self.message, details)
        super().__init__(text)

    @classmethod
    def from_answer(cls, reason: str, answer: ApiError) -> AuthenticationError:
        """An authentication failure carrying the fields of the refusing HTTP answer."""
        return cls(
            reason,
            status=answer.status,
            code=answer.code,
            message=answer.message,
            details=answer.details,
            method=answer.method,
            path=answer.path,
        )


class ProtocolError(RunaiError):
    """A successful answer whose body does not have the shape the spec promises."""


class MeasurementsParseError(ProtocolError):
    """A metrics body that is not JSON or has no ``measurements`` array."""


class ApiError(RunaiError):
    """An HTTP error answer. ``code``/``message``/``details`` come from the spec's Error body."""

    retryable: bool = False

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        details: str | None = None,
        *,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.method = method
        self.path = path
        self.retry_after = retry_after
        super().__init__(_describe(method, path, status, code, message, details))


class BadRequestError(ApiError):
    """400: the request is invalid; retrying cannot help."""


class ForbiddenError(ApiError):
    """403: the credentials are valid but not allowed to read this resource."""


class NotFoundError(ApiError):
    """404: the resource (e.g. a workload id) does not exist."""


class RateLimitedError(ApiError):
    """429: too many requests; retried after the server's Retry-After."""

    retryable = True


class RequestTimeoutError(ApiError):
    """408: the server gave up waiting for the request; retried."""

    retryable = True


class ServerError(ApiError):
    """5xx: the control plane failed; retried."""

    retryable = True


class RetryExhaustedError(RunaiError):
    """Retryable failures did not stop within the configured attempts or time."""

    def __init__(self, message: str, *, attempts: int, last_error: BaseException | None) -> None:
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(message)


class ControlPlaneUnavailableError(RetryExhaustedError):
    """No successful answer for the run's whole retry budget: the control plane is taken to
    be down, and nothing more is retried in this run."""


class DeadlineExceededError(RunaiError):
    """One attempt (connect, send, the whole body) took longer than its deadline."""

    def __init__(self, message: str, *, deadline: float) -> None:
        self.deadline = deadline
        super().__init__(message)


class ResponseTooLargeError(RunaiError):
    """An answer larger than the configured maximum; reading stopped at the limit."""

    def __init__(self, message: str, *, limit: int) -> None:
        self.limit = limit
        super().__init__(message)


class PagingError(RunaiError):
    """The control plane's paging of a list cannot be trusted; the listing stopped."""


class IncompleteListError(RunaiError):
    """A listing ended with fewer workloads than the count endpoint reports."""

    def __init__(self, message: str, *, listed: int, counted: int) -> None:
        self.listed = listed
        self.counted = counted
        super().__init__(message)


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    403: ForbiddenError,
    404: NotFoundError,
    408: RequestTimeoutError,
    429: RateLimitedError,
}


def api_error_class(status: int) -> type[ApiError]:
    """The ApiError subclass for an HTTP status (401 is handled as AuthenticationError)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return ApiError


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may be repeated."""
    if isinstance(exc, ApiError):
        return exc.retryable
    if isinstance(exc, DeadlineExceededError):
        return True
    return isinstance(exc, ProtocolError) and not isinstance(exc, MeasurementsParseError)


__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ControlPlaneUnavailableError",
    "DeadlineExceededError",
    "ForbiddenError",
    "IncompleteListError",
    "MeasurementsParseError",
    "NotFoundError",
    "PagingError",
    "ProtocolError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RetryExhaustedError",
    "RunaiError",
    "ServerError",
    "TLSVerificationError",
    "api_error_class",
    "is_retryable",
]
