"""Connection settings of the Run:ai client, from arguments or the environment."""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from workloads_etl.runai.errors import ConfigurationError

logger = logging.getLogger("workloads_etl.runai")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _secret(value: SecretStr | str | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


@dataclass(frozen=True)
class RunaiSettings:
    """Where the control plane is, how to authenticate, and how hard to push it.

    Authenticate with ``client_id`` + ``client_secret`` (the client obtains and refreshes tokens
    from ``POST /api/v1/token``) or with a ready bearer ``token`` (used as is, never refreshed).
    ``verify`` is ``True`` (system CAs), a path to a PEM CA bundle, or ``False`` (no
    verification; logged as a warning whenever a client is opened).
    """

    base_url: str
    client_id: str | None = None
    client_secret: SecretStr | str | None = None
    token: SecretStr | str | None = field(default=None, repr=False)
    verify: bool | str = True
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_concurrency: int = 16
    requests_per_second: float | None = None
    max_attempts: int = 8
    max_retry_wait: float = 60.0
    max_total_retry_time: float = 300.0
    page_size: int = 500
    metrics_partial_retries: int = 3
    list_reconcile_passes: int = 1
    min_retry_wait: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_secret", _secret(self.client_secret))
        object.__setattr__(self, "token", _secret(self.token))
        base = (self.base_url or "").strip()
        if not base:
            raise ConfigurationError("the Run:ai base URL is missing (set RUNAI_BASE_URL)")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                f"the Run:ai base URL must be http(s)://host[:port], got {base!r}"
            )
        object.__setattr__(self, "base_url", base.rstrip("/"))
        has_token = self.token is not None and bool(self.bearer_token)
        has_client = bool(self.client_id) and self.client_secret is not None
        if not has_token and not has_client:
            raise ConfigurationError(
                "Run:ai credentials are missing: give client_id and client_secret "
                "(RUNAI_CLIENT_ID, RUNAI_CLIENT_SECRET) or a bearer token (RUNAI_TOKEN)"
            )
        if bool(self.client_id) != (self.client_secret is not None) and not has_token:
            raise ConfigurationError("client_id and client_secret must be given together")
        if isinstance(self.verify, str) and not Path(self.verify).is_file():
            raise ConfigurationError(f"the CA bundle {self.verify!r} is not a readable file")
        for name in ("timeout", "connect_timeout", "max_retry_wait", "max_total_retry_time"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive")
        if self.max_concurrency < 1 or self.max_attempts < 1:
            raise ConfigurationError("max_concurrency and max_attempts must be at least 1")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ConfigurationError("requests_per_second must be positive when given")
        if not 1 <= self.page_size <= 500:
            raise ConfigurationError("page_size must be within 1..500 (the API's limit)")
        if self.metrics_partial_retries < 0 or self.min_retry_wait < 0:
            raise ConfigurationError("metrics_partial_retries and min_retry_wait must be >= 0")

    @property
    def uses_client_credentials(self) -> bool:
        return bool(self.client_id) and self.client_secret is not None

    @property
    def client_secret_value(self) -> str | None:
        sec = self.client_secret
        return sec.get_secret_value() if isinstance(sec, SecretStr) else sec

    @property
    def bearer_token(self) -> str | None:
        tok = self.token
        return tok.get_secret_value() if isinstance(tok, SecretStr) else tok

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every secret these settings hold, for scrubbing messages."""
        out = []
        for s in (self.client_secret, self.token):
            if isinstance(s, SecretStr) and s.get_secret_value():
                out.append(s.get_secret_value())
        return tuple(out)

    def ssl_verify(self) -> ssl.SSLContext | bool:
        """What httpx gets as ``verify``: a context from the CA bundle, the default, or False."""
        if self.verify is False:
            logger.warning(
                "TLS certificate verification is switched off for %s; "
                "use a CA bundle (RUNAI_CA_BUNDLE) instead",
                self.base_url,
            )
            return False
        if isinstance(self.verify, str):
            try:
                return ssl.create_default_context(cafile=self.verify)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"cannot load the CA bundle {self.verify!r}: {exc}"
                ) from None
        return ssl.create_default_context()

    def with_overrides(self, **changes: Any) -> RunaiSettings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, **overrides: Any) -> RunaiSettings:
        """Settings from ``RUNAI_*`` variables; keyword arguments win over the environment."""
        env = os.environ
        values: dict[str, Any] = {}

        def put(key: str, var: str, conv: Any = str) -> None:
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                return
            try:
                values[key] = conv(raw.strip())
            except ValueError:
                raise ConfigurationError(f"{var} has an invalid value {raw!r}") from None

        put("base_url", "RUNAI_BASE_URL")
        put("client_id", "RUNAI_CLIENT_ID")
        if env.get("RUNAI_CLIENT_SECRET"):
            values["client_secret"] = SecretStr(env["RUNAI_CLIENT_SECRET"])
        if env.get("RUNAI_TOKEN"):
            values["token"] = SecretStr(env["RUNAI_TOKEN"])
        put("timeout", "RUNAI_TIMEOUT", float)
        put("max_concurrency", "RUNAI_MAX_CONCURRENCY", int)
        put("requests_per_second", "RUNAI_REQUESTS_PER_SECOND", float)
        verify_raw = env.get("RUNAI_VERIFY_TLS", "").strip().lower()
        if verify_raw in _FALSE:
            values["verify"] = False
        elif verify_raw and verify_raw not in _TRUE:
            raise ConfigurationError(f"RUNAI_VERIFY_TLS must be true or false, got {verify_raw!r}")
        ca = env.get("RUNAI_CA_BUNDLE", "").strip()
        if ca:
            if values.get("verify") is False:
                raise ConfigurationError("RUNAI_CA_BUNDLE and RUNAI_VERIFY_TLS=false contradict")
            values["verify"] = ca
        values.update(overrides)
        if "base_url" not in values:
            raise ConfigurationError("the Run:ai base URL is missing (set RUNAI_BASE_URL)")
        return cls(**values)
