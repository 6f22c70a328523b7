"""Dagster resources: the Run:ai API, the data directory (raw, lake, warehouse) and dbt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from workloads_etl.runai import RunaiSettings
from workloads_etl.runai.retry import RetryBudget
from workloads_etl.settings import DataPaths, RunaiEnvironment


class RunaiResource(dg.ConfigurableResource):
    """The Run:ai control plane. Secrets come from the environment through ``EnvVar`` and are
    never shown in the UI or in run config."""

    base_url: str = Field(description="Control-plane URL, e.g. https://myorg.run.ai")
    client_id: str | None = Field(default=None, description="Service-account client id")
    client_secret: str | None = Field(default=None, description="Service-account secret")
    token: str | None = Field(default=None, description="A ready bearer token instead")
    verify_tls: bool = Field(default=True, description="Verify the server's certificate")
    ca_bundle: str | None = Field(default=None, description="PEM bundle of trusted CAs")
    timeout: float | None = Field(default=None, description="Read timeout per request (s)")
    max_concurrency: int | None = Field(default=None, description="Requests in flight")
    requests_per_second: float | None = Field(default=None, description="Request budget")
    request_deadline: float | None = Field(
        default=None, description="Whole-request deadline: connect, send, entire body (s)"
    )
    max_response_mb: float | None = Field(default=None, description="Largest answer (MiB)")
    retry_budget: float | None = Field(
        default=None, description="A run stops retrying after this long with no success (s)"
    )
    list_tolerance: float | None = Field(
        default=None, description="Share a listing may end below the count endpoint"
    )
    page_size: int | None = Field(default=None, description="Workloads per listing page")
    metrics_step_seconds: int = Field(default=60, description="Metric sample step (s)")
    _budget: RetryBudget | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """One retry budget for the whole run (every step of an in-process run shares it),
        stated once in the run's log."""
        settings = self.settings()
        self._budget = RetryBudget(settings.retry_budget)
        if context.log is not None:
            context.log.info(retry_policy_line(settings))

    def settings(self) -> RunaiSettings:
        """The client's settings, validated like every other path to them."""
        verify: bool | str = self.ca_bundle or self.verify_tls
        values: dict[str, Any] = {
            "base_url": self.base_url,
            "client_id": self.client_id or None,
            "client_secret": self.client_secret or None,
            "token": self.token or None,
            "verify": verify,
            "timeout": self.timeout,
            "max_concurrency": self.max_concurrency,
            "requests_per_second": self.requests_per_second,
            "request_deadline": self.request_deadline,
            "max_response_bytes": (
                int(self.max_response_mb * 1024 * 1024) if self.max_response_mb else None
            ),
            "retry_budget": self.retry_budget,
            "list_tolerance": self.list_tolerance,
            "page_size": self.page_size,
        }
        return RunaiSettings(**{k: v for k, v in values.items() if v is not None})

    def budget(self) -> RetryBudget:
        """The run's retry budget (see :meth:`setup_for_execution`)."""
        if self._budget is None:
            self._budget = RetryBudget(self.settings().retry_budget)
        return self._budget


def retry_policy_line(settings: RunaiSettings) -> str:
    """The run's retrying, in one line."""
    return (
        f"retries: up to {settings.max_attempts} attempts per request, each within "
        f"{settings.request_deadline:g} s; the run stops retrying after "
        f"{settings.retry_budget:g} s without a successful answer (RUNAI_RETRY_BUDGET)"
    )


class DataDirResource(dg.ConfigurableResource):
    """Where raw files, the Parquet lake and the DuckDB warehouse live."""

    data_dir: str = Field(description="Root of raw/, lake/ and warehouse.duckdb")
    lake_url: str | None = Field(
        default=None,
        description="Where raw/ and lake/ live instead (s3://bucket/prefix or file:///path)",
    )

    def paths(self) -> DataPaths:
        return DataPaths(Path(self.data_dir).resolve(), self.lake_url).ensure()


def runai_resource_from_env(env: RunaiEnvironment) -> RunaiResource:
    """The Run:ai resource wired to the ``RUNAI_*`` environment.

    The URL and the credentials are ``EnvVar`` references, resolved when a run starts: the UI
    and the run config show the variable names, never the values. A bearer token
    (``RUNAI_TOKEN``) is used when set; otherwise the client-credentials pair. The tuning
    values are those :class:`RunaiEnvironment` read and validated.
    """
    creds: dict[str, Any] = (
        {"token": dg.EnvVar("RUNAI_TOKEN")}
        if env.token is not None
        else {
            "client_id": dg.EnvVar("RUNAI_CLIENT_ID"),
            "client_secret": dg.EnvVar("RUNAI_CLIENT_SECRET"),
        }
    )
    tuning: dict[str, Any] = {
        "verify_tls": env.verify_tls,
        "timeout": env.timeout,
        "max_concurrency": env.max_concurrency,
        "requests_per_second": env.requests_per_second,
        "request_deadline": env.request_deadline,
        "max_response_mb": env.max_response_mb,
        "retry_budget": env.retry_budget,
        "list_tolerance": env.list_tolerance,
        "page_size": env.page_size,
    }
    if env.ca_bundle:
        tuning["ca_bundle"] = dg.EnvVar("RUNAI_CA_BUNDLE")
    return RunaiResource(base_url=dg.EnvVar("RUNAI_BASE_URL"), **creds, **tuning)
