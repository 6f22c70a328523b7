"""Dagster resources: the Run:ai API, the data directory (raw, lake, warehouse) and dbt."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource
from pydantic import Field

from workloads_etl.config import DATA_DIR_ENV, DataPaths
from workloads_etl.extract import route_raw_response
from workloads_etl.runai import RunaiClient, RunaiSettings
from workloads_etl.transform import DBT_PROJECT_DIR


class RunaiResource(dg.ConfigurableResource):
    """The Run:ai control plane. Secrets come from the environment through ``EnvVar`` and are
    never shown in the UI or in run config."""

    base_url: str = Field(description="Control-plane URL, e.g. https://myorg.run.ai")
    client_id: str | None = Field(default=None, description="Service-account client id")
    client_secret: str | None = Field(default=None, description="Service-account secret")
    token: str | None = Field(default=None, description="A ready bearer token instead")
    verify_tls: bool = True
    ca_bundle: str | None = Field(default=None, description="PEM bundle of trusted CAs")
    max_concurrency: int = 16
    requests_per_second: float | None = None
    metrics_step_seconds: int = 60

    def settings(self) -> RunaiSettings:
        verify: bool | str = self.ca_bundle or self.verify_tls
        return RunaiSettings(
            base_url=self.base_url,
            client_id=self.client_id or None,
            client_secret=self.client_secret or None,
            token=self.token or None,
            verify=verify,
            max_concurrency=self.max_concurrency,
            requests_per_second=self.requests_per_second,
        )

    def client(self) -> RunaiClient:
        """A client whose responses land in the raw file of the partition being extracted."""
        return RunaiClient(self.settings(), recorder=route_raw_response)


class DataDirResource(dg.ConfigurableResource):
    """Where raw files, the Parquet lake and the DuckDB warehouse live."""

    data_dir: str = Field(description="Root of raw/, lake/ and warehouse.duckdb")

    def paths(self) -> DataPaths:
        paths = DataPaths(Path(self.data_dir).resolve()).ensure()
        # dbt's profile reads the same location from the environment.
        os.environ[DATA_DIR_ENV] = str(paths.root)
        return paths


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def runai_resource_from_env() -> RunaiResource:
    """The Run:ai resource wired to ``RUNAI_*`` environment variables.

    Values are ``EnvVar`` references, resolved when a run starts: the UI and the run config
    show the variable names, never the values. A bearer token (``RUNAI_TOKEN``) is used when
    set; otherwise the client-credentials pair.
    """
    env = os.environ
    creds: dict[str, Any] = (
        {"token": dg.EnvVar("RUNAI_TOKEN")}
        if env.get("RUNAI_TOKEN")
        else {
            "client_id": dg.EnvVar("RUNAI_CLIENT_ID"),
            "client_secret": dg.EnvVar("RUNAI_CLIENT_SECRET"),
        }
    )
    tuning: dict[str, Any] = {}
    if env.get("RUNAI_CA_BUNDLE"):
        tuning["ca_bundle"] = dg.EnvVar("RUNAI_CA_BUNDLE")
    if env.get("RUNAI_VERIFY_TLS", "").lower() in {"0", "false", "no", "off"}:
        tuning["verify_tls"] = False
    if env.get("RUNAI_MAX_CONCURRENCY"):
        tuning["max_concurrency"] = int(env["RUNAI_MAX_CONCURRENCY"])
    if env.get("RUNAI_REQUESTS_PER_SECOND"):
        tuning["requests_per_second"] = float(env["RUNAI_REQUESTS_PER_SECOND"])
    return RunaiResource(base_url=dg.EnvVar("RUNAI_BASE_URL"), **creds, **tuning)


def default_resources() -> dict[str, object]:
    data_dir = str(DataPaths.from_env().root)
    return {
        "runai": runai_resource_from_env(),
        "data": DataDirResource(data_dir=data_dir),
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=dbt_executable(),
        ),
    }
