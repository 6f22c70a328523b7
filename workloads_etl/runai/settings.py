"""Connection settings of the Run:ai client: a validated, immutable pydantic model.

The client takes a :class:`RunaiSettings` explicitly. Reading them from ``RUNAI_*``
environment variables is the job of :mod:`workloads_etl.settings`, the product's one reader
of its environment; this module never looks at the environment.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from workloads_etl.runai.errors import ConfigurationError

logger = logging.getLogger("workloads_etl.runai")


def describe_validation_error(exc: ValidationError, name: Any = None) -> str:
    """One line per problem: ``<where>: <message>``; ``name`` maps a field to what the user
    set (e.g. its environment variable)."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        where = name(field) if name is not None else field
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(message if field == "settings" else f"{where}: {message}")
    return "; ".join(lines)


class RunaiSettings(BaseModel):
    """Where the control plane is, how to authenticate, and how hard to push it.

    Authenticate with ``client_id`` + ``client_secret`` (the client obtains and refreshes tokens
    from ``POST /api/v1/token``) or with a ready bearer ``token`` (used as is, never refreshed).
    ``verify`` is ``True`` (system CAs), a path to a PEM CA bundle, or ``False`` (no
    verification; logged as a warning whenever a client is opened). Invalid values raise
    :class:`~workloads_etl.runai.errors.ConfigurationError` naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    base_url: str
    client_id: str | None = None
    client_secret: SecretStr | None = None
    token: SecretStr | None = Field(default=None, repr=False)
    verify: bool | str = True
    timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    max_concurrency: int = Field(default=16, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    max_retry_wait: float = Field(default=60.0, gt=0)
    max_total_retry_time: float = Field(default=300.0, gt=0)
    page_size: int = Field(default=500, ge=1, le=500)
    metrics_partial_retries: int = Field(default=3, ge=0)
    # Readings of a listing after the first while it ends below the count endpoint's figure.
    list_reconcile_passes: int = Field(default=2, ge=0)
    min_retry_wait: float = Field(default=0.1, ge=0)
    # Connect, send and the whole body of one attempt must fit in this many seconds.
    request_deadline: float = Field(default=60.0, gt=0)
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # A run stops retrying once this many seconds pass without one successful answer.
    retry_budget: float = Field(default=90.0, gt=0)
    # A listing may end this share below the count endpoint's figure (0: not at all).
    list_tolerance: float = Field(default=0.0, ge=0, lt=1)
    # Pages of a listing allowed beyond what the count endpoint's figure needs.
    list_page_margin: float = Field(default=0.1, ge=0)
    # Consecutive pages that bring no workload not seen before before a listing stops.
    list_stall_pages: int = Field(default=3, ge=1)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(describe_validation_error(exc)) from None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        base = (value or "").strip()
        if not base:
            raise ValueError("the Run:ai base URL is missing (set RUNAI_BASE_URL)")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the Run:ai base URL must be http(s)://host[:port], got {base!r}")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError(f"the Run:ai base URL has an invalid port (1-65535): {base!r}")
        return base.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> RunaiSettings:
        has_token = bool(self.bearer_token)
        has_client = self.uses_client_credentials
        if not has_token and not has_client:
            raise ValueError(
                "Run:ai credentials are missing: give client_id and client_secret "
                "(RUNAI_CLIENT_ID, RUNAI_CLIENT_SECRET) or a bearer token (RUNAI_TOKEN)"
            )
        if bool(self.client_id) != (self.client_secret is not None) and not has_token:
            raise ValueError("client_id and client_secret must be given together")
        if isinstance(self.verify, str) and not Path(self.verify).is_file():
            raise ValueError(f"the CA bundle {self.verify!r} is not a readable file")
        return self

    @property
    def uses_client_credentials(self) -> bool:
        return bool(self.client_id) and self.client_secret is not None

    @property
    def client_secret_value(self) -> str | None:
        return self.client_secret.get_secret_value() if self.client_secret else None

    @property
    def bearer_token(self) -> str | None:
        return self.token.get_secret_value() if self.token else None

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every secret these settings hold, for scrubbing messages."""
        return tuple(
            s.get_secret_value()
            for s in (self.client_secret, self.token)
            if s is not None and s.get_secret_value()
        )

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
        return RunaiSettings(**{**self.model_dump(), **changes})
