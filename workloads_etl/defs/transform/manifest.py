"""The dbt manifest the Dagster asset graph is built from, parsed when missing or stale."""

from __future__ import annotations

from pathlib import Path

from workloads_etl.config import DataPaths
from workloads_etl.transform import DBT_PROJECT_DIR, run_dbt

_SKIP = {"target", "logs", "dbt_packages"}


def _newest_source_mtime(project_dir: Path) -> float:
    newest = 0.0
    for path in project_dir.rglob("*"):
        rel = path.relative_to(project_dir).parts
        if (rel and rel[0] in _SKIP) or not path.is_file():
            continue
        newest = max(newest, path.stat().st_mtime)
    return newest


def ensure_manifest(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """``target/manifest.json``, running ``dbt parse`` first if any project file is newer."""
    manifest = project_dir / "target" / "manifest.json"
    if not manifest.is_file() or manifest.stat().st_mtime < _newest_source_mtime(project_dir):
        run_dbt(["parse", "--quiet"], DataPaths.from_env())
    return manifest
