"""dagster-dbt's view of the dbt project: the manifest the asset graph is built from."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.dbt import (
    PROFILE,
    TARGET,
    dbt_project_dir,
    profiles_dir,
    run_dbt,
    target_dir,
)


def dbt_project(paths: DataPaths, memory_limit: str | None = None) -> DbtProject:
    """The project for ``paths``: its target (manifest, partial parse, run results) and its
    generated profile live under the data directory, never inside the package. The profile
    and target are named on dbt's command line exactly as the runner names them
    (:func:`~workloads_etl.warehouse.dbt.invocation_args`), so the partial parse of one
    serves the other. ``memory_limit``: DuckDB's (default: the pipeline setting)."""
    return DbtProject(
        project_dir=dbt_project_dir(),
        target_path=target_dir(paths),
        profiles_dir=profiles_dir(paths, memory_limit=memory_limit),
        profile=PROFILE,
        target=TARGET,
    )


def prepared_manifest(
    project: DbtProject, paths: DataPaths, user_vars: dict[str, Any] | None = None
) -> Path:
    """The manifest, parsed when there is none yet (a fresh data directory) and on every load
    under ``dagster dev``, to pick up changes to the models. Every ``dbt build`` of a run
    writes a fresh one too. Parsing goes through the project's runner, which passes the vars
    every invocation needs."""
    if not project.manifest_path.is_file() or project.preparer.using_dagster_dev():
        run_dbt(["parse", "--quiet"], paths, extra_vars=user_vars)
    return project.manifest_path


class WarehouseDbtResource(DbtCliResource):
    """dagster-dbt's dbt resource, without two costs of every build that the pipeline has no
    use for:

    - the dbt version comes from the installed dbt-core package; dagster-dbt would otherwise
      run ``dbt --version`` (about 4 s);
    - no dbt adapter in the orchestrating process. dagster-dbt loads the profile and project
      again to make one (about 4 CPU-s) for row counts and column metadata fetched from the
      warehouse after the build, and the pipeline fetches neither (its marts' columns are
      their contracts).
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None
