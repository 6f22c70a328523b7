"""The product's settings: the one place that reads its environment.

Two groups of variables, each read by a pydantic-settings model and validated up front:

- ``RUNAI_*`` (:class:`RunaiEnvironment`): the control plane, turned into the client's
  :class:`~workloads_etl.runai.settings.RunaiSettings`;
- ``WORKLOADS_ETL_*`` (:class:`PipelineSettings`): where the data lives, which days exist,
  and how Dagster executes a run's steps.

Everything downstream gets the resulting objects passed explicitly (:class:`DataPaths` for
the locations); nothing else reads ``os.environ`` or writes to it.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as EnvironmentParseError

from workloads_etl.lake.bounds import DEFAULT_MAX_GPUS, Limits
from workloads_etl.lake.metric_types import check_selection, metric_type_names
from workloads_etl.lake.normalise.metrics import DEFAULT_CHUNK_SAMPLES
from workloads_etl.lake.store import Store, StoreError, check_url
from workloads_etl.runai.errors import ConfigurationError
from workloads_etl.runai.settings import RunaiSettings, describe_validation_error

RUNAI_PREFIX = "RUNAI_"
PIPELINE_PREFIX = "WORKLOADS_ETL_"
DEFAULT_START_DATE = date(2025, 1, 1)
# dbt vars every invocation gets from the pipeline (its metric types, the run's days).
# The most days one run covers: a longer range runs as several runs, oldest first.
DAYS_PER_RUN = 31
RESERVED_DBT_VARS = frozenset({"metric_columns", "start_date", "end_date"})
# DuckDB's memory_limit for the processes that write the warehouse (dbt, the loader): beyond
# it DuckDB spills to disk instead of growing. A size DuckDB reads: 320MB, 2GB, 1.5GiB...
# The default keeps a nightly run's whole process tree within 1 GB (bench/bench_scale.py).
DEFAULT_DUCKDB_MEMORY_LIMIT = "320MB"
# Metric samples (rows of raw.workload_metrics) one dbt build may reprocess per byte of
# DuckDB's memory limit. Some of what a build does over its window does not spill (the
# quantiles, the uniqueness test of the staged samples): a window of 85 million samples built
# at 320 MB (0.26 a byte) and failed at 110 MB (0.77), and one of about 220 million failed at
# 320 MB (0.69). The rate keeps a margin below the build that passed.
SAMPLES_PER_MEMORY_BYTE = 0.15
_MEMORY_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B|bytes)\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"B": 1, "BYTES": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_MEMORY_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


class SettingsError(ValueError):
    """A setting of the pipeline (``WORKLOADS_ETL_*``) is invalid; the message names it."""


def _env_name(prefix: str) -> Any:
    return lambda field: prefix + field.upper()


def _describe_parse_error(exc: Exception, prefix: str) -> str:
    """pydantic-settings' message for a value it cannot decode (JSON of a dict field)."""
    match = re.search(r'field "(\w+)"', str(exc))
    name = prefix + match.group(1).upper() if match else prefix + "*"
    return f"{name}: not valid JSON"


class RunaiEnvironment(BaseSettings):
    """``RUNAI_*`` as set in the environment (empty values count as unset)."""

    model_config = SettingsConfigDict(
        env_prefix=RUNAI_PREFIX, extra="ignore", env_ignore_empty=True, allow_inf_nan=False
    )

    base_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    token: SecretStr | None = Field(default=None, repr=False)
    verify_tls: bool = True
    ca_bundle: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0)
    request_deadline: float | None = Field(default=None, gt=0)
    max_response_mb: float | None = Field(default=None, gt=0)
    retry_budget: float | None = Field(default=None, gt=0)
    list_tolerance: float | None = Field(default=None, ge=0, lt=1)
    page_size: int | None = Field(default=None, ge=1, le=500)

    @classmethod
    def read(cls) -> RunaiEnvironment:
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigurationError(
                describe_validation_error(exc, _env_name(RUNAI_PREFIX))
            ) from None
        except EnvironmentParseError as exc:
            raise ConfigurationError(_describe_parse_error(exc, RUNAI_PREFIX)) from None

    @property
    def verify(self) -> bool | str:
        if self.ca_bundle and not self.verify_tls:
            raise ConfigurationError("RUNAI_CA_BUNDLE and RUNAI_VERIFY_TLS=false contradict")
        return self.ca_bundle or self.verify_tls

    def tuning(self) -> dict[str, Any]:
        """The optional tuning values that are set (connection and credentials excluded)."""
        return {
            k: v
            for k, v in {
                "verify": self.verify,
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
            }.items()
            if v is not None and not (k == "verify" and v is True)
        }

    def settings(self, **overrides: Any) -> RunaiSettings:
        """The client's settings; keyword arguments win over the environment."""
        if not self.base_url and "base_url" not in overrides:
            raise ConfigurationError("the Run:ai base URL is missing (set RUNAI_BASE_URL)")
        values: dict[str, Any] = {
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token": self.token,
            **self.tuning(),
            **overrides,
        }
        try:
            return RunaiSettings(**{k: v for k, v in values.items() if v is not None})
        except ConfigurationError as exc:
            raise ConfigurationError(_name_variables(str(exc))) from None


_FIELD_PATTERN = re.compile(r"^(\w+): ")
_RUNAI_VARIABLES = {"verify": "RUNAI_CA_BUNDLE", "max_response_bytes": "RUNAI_MAX_RESPONSE_MB"}


def _name_variables(message: str) -> str:
    """A client settings message naming what the user set (``RUNAI_BASE_URL``), not the
    client's field (``base_url``)."""
    parts = []
    for part in message.split("; "):
        match = _FIELD_PATTERN.match(part)
        if match and match.group(1) in RunaiSettings.model_fields:
            field = match.group(1)
            variable = _RUNAI_VARIABLES.get(field, RUNAI_PREFIX + field.upper())
            part = f"{variable}: {part[match.end() :]}"
        parts.append(part)
    return "; ".join(parts)


@dataclass(frozen=True)
class DataPaths:
    """Locations of the raw landing zone, the Parquet lake and the DuckDB warehouse.

    ``root`` is the local data directory (the warehouse, the serving database, logs, dbt's
    files). The raw landing and the lake live under ``lake_url`` (``s3://bucket/prefix`` or
    ``file:///path``, see :mod:`workloads_etl.lake.store`), by default the data directory."""

    root: Path
    lake_url: str | None = None

    @property
    def store(self) -> Store:
        """The root of the raw landing and the lake."""
        return Store.at(self.lake_url or self.root)

    @property
    def raw(self) -> Store:
        return self.store.child("raw")

    @property
    def lake(self) -> Store:
        return self.store.child("lake")

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def serving(self) -> Path:
        """The published, read-only serving database (and the report) for readers."""
        return self.root / "serving"

    @property
    def logs(self) -> Path:
        """Run logs of the command line (dbt's output, tracebacks)."""
        return self.root / "logs"

    @property
    def dbt(self) -> Path:
        """dbt's generated profile, target (manifest, partial parse) and logs."""
        return self.root / ".dbt"

    def ensure(self) -> DataPaths:
        """Create the directories, and prove the data directory writable; raises
        :class:`SettingsError` saying why not."""
        try:
            local = [s.directory for s in (self.raw, self.lake) if s.is_local]
            for p in (self.root, *local):
                p.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise SettingsError(
                f"the data directory {self.root} is not writable ({reason}); "
                "set WORKLOADS_ETL_DATA_DIR or --data-dir to a directory you can write"
            ) from None
        return self


class PipelineSettings(BaseSettings):
    """``WORKLOADS_ETL_*`` as set in the environment."""

    model_config = SettingsConfigDict(
        env_prefix=PIPELINE_PREFIX, extra="ignore", env_ignore_empty=True, allow_inf_nan=False
    )

    data_dir: Path = Field(default=Path("data"), description="raw/, lake/, warehouse.duckdb")
    # Where the raw landing and the lake live instead of the data directory: s3://bucket/prefix
    # (endpoint and credentials from the standard AWS variables) or file:///path.
    lake_url: str | None = None
    start_date: date = Field(default=DEFAULT_START_DATE, description="first daily partition")
    # dbt vars of your contract (a JSON object), e.g. {"idle_gpu_utilisation_pct": 5}.
    dbt_vars: dict[str, Any] = Field(default_factory=dict)
    # The metric types fetched, comma-separated (default: every type the API offers).
    metric_types: Annotated[tuple[str, ...], NoDecode] = Field(default_factory=metric_type_names)
    # How long a run waits for another process writing the warehouse before failing (s).
    lock_wait: float = Field(default=300.0, ge=0)
    # The most GPUs one workload can hold: a larger value from the API is quarantined.
    max_gpus: float = Field(default=DEFAULT_MAX_GPUS, gt=0)
    # Metric samples normalised at a time: bounds memory (about 0.3 KB per sample) whatever
    # the day's size; each chunk is a file of the day's lake partition.
    chunk_samples: int = Field(default=DEFAULT_CHUNK_SAMPLES, ge=1000)
    # DuckDB's memory limit for the warehouse's writers (WORKLOADS_ETL_DUCKDB_MEMORY_LIMIT).
    duckdb_memory_limit: str = Field(default=DEFAULT_DUCKDB_MEMORY_LIMIT)
    # The most metric samples one dbt build reprocesses: a longer window (a backfill of a
    # large cluster) is built in several. Default: what the DuckDB memory limit allows.
    dbt_window_samples: int | None = Field(default=None, ge=1)
    # How a run launched by Dagster executes its steps: "default" (Dagster's multiprocess
    # executor, and in-process for the command line) or "k8s" (one Kubernetes Job per step,
    # dagster-k8s's k8s_job_executor; see deploy/README.md).
    executor: Literal["default", "k8s"] = "default"
    # How a Dagster deployment partitions extraction: "day" (one run fetches every cluster of
    # a day) or "day_cluster" (the workload lists and metrics of each cluster of a day are a
    # partition of their own, the clusters discovered from the control plane, so that many
    # runs fetch in parallel; see README "Scaling out"). The command line runs whole days.
    extract_by: Literal["day", "day_cluster"] = "day"
    # Dagster's own variable: a persistent instance (runs shown in the UI, concurrency pools).
    dagster_home: Path | None = Field(default=None, validation_alias="DAGSTER_HOME")

    @field_validator("metric_types", mode="before")
    @classmethod
    def _metric_types(cls, value: Any) -> tuple[str, ...]:
        names = value.split(",") if isinstance(value, str) else value
        return check_selection(n.strip() for n in names if n.strip())

    @field_validator("dbt_vars")
    @classmethod
    def _user_vars(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(value) & RESERVED_DBT_VARS)
        if reserved:
            raise ValueError(f"{', '.join(reserved)} are set by the pipeline itself")
        return value

    @field_validator("lake_url")
    @classmethod
    def _lake_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_url(value.strip())
        except StoreError as exc:
            raise ValueError(str(exc).removeprefix("WORKLOADS_ETL_LAKE_URL: ")) from None

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory_limit(cls, value: str) -> str:
        if not _MEMORY_SIZE.match(value):
            raise ValueError(f"must be a size such as 512MB or 4GB, got {value!r}")
        return value.strip()

    @classmethod
    def read(cls, **overrides: Any) -> PipelineSettings:
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(
                describe_validation_error(exc, _env_name(PIPELINE_PREFIX))
            ) from None
        except EnvironmentParseError as exc:
            raise SettingsError(_describe_parse_error(exc, PIPELINE_PREFIX)) from None

    @property
    def paths(self) -> DataPaths:
        return DataPaths(self.data_dir.expanduser().resolve(), self.lake_url)

    @property
    def window_samples(self) -> int:
        """The most metric samples one dbt build reprocesses: ``dbt_window_samples``, or
        what the DuckDB memory limit allows."""
        if self.dbt_window_samples is not None:
            return self.dbt_window_samples
        return int(memory_bytes(self.duckdb_memory_limit) * SAMPLES_PER_MEMORY_BYTE)

    @property
    def limits(self) -> Limits:
        """The physical bounds values from the API are checked against."""
        return Limits(max_gpus=self.max_gpus)


def memory_bytes(size: str) -> int:
    """A memory size as DuckDB reads it (``320MB``: decimal units, ``1.5GiB``: binary) in
    bytes."""
    match = _MEMORY_SIZE.match(size)
    if match is None:
        raise SettingsError(f"not a memory size such as 512MB or 4GB: {size!r}")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).upper()])


def duckdb_memory_limit() -> str:
    """DuckDB's ``memory_limit`` for the processes that write the warehouse: the setting
    ``WORKLOADS_ETL_DUCKDB_MEMORY_LIMIT`` (default :data:`DEFAULT_DUCKDB_MEMORY_LIMIT`),
    validated; raises :class:`SettingsError` naming it when invalid."""
    return PipelineSettings.read().duckdb_memory_limit
