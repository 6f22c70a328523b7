"""Where the pipeline keeps its data. Plain Python, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "WORKLOADS_ETL_DATA_DIR"


@dataclass(frozen=True)
class DataPaths:
    """Locations of the raw landing zone, the Parquet lake and the DuckDB warehouse."""

    root: Path

    @classmethod
    def from_env(cls, default: str | os.PathLike[str] = "data") -> DataPaths:
        return cls(Path(os.environ.get(DATA_DIR_ENV) or default).resolve())

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    def ensure(self) -> DataPaths:
        for p in (self.root, self.raw, self.lake):
            p.mkdir(parents=True, exist_ok=True)
        return self
