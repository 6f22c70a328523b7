"""The dbt project that turns the warehouse's ``raw`` tables into the reporting marts.

Plain Python, no Dagster (its Dagster view is :mod:`workloads_etl.defs.transform.project`).
The project ships with the package (``workloads_etl/dbt_project``
in a wheel; the repository's top-level ``dbt/`` in a checkout). Everything dbt writes lives
under the data directory (``<data>/.dbt``): its profile, generated from :class:`DataPaths`
so the warehouse location is passed explicitly, its target (manifest, partial parse, run
results) and its logs. Every invocation gets the vars dbt needs (:func:`dbt_vars`), among
them the metric types the pipeline fetches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from workloads_etl.children import die_with_parent
from workloads_etl.lake.metric_types import metric_columns
from workloads_etl.settings import DataPaths

PROFILE = "workloads_etl"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def dbt_project_dir() -> Path:
    """The dbt project: packaged inside the installed wheel, or ``dbt/`` of a checkout."""
    packaged = _PACKAGE_DIR / "dbt_project"
    if (packaged / "dbt_project.yml").is_file():
        return packaged
    checkout = _PACKAGE_DIR.parent / "dbt"
    if (checkout / "dbt_project.yml").is_file():
        return checkout
    raise FileNotFoundError(
        f"the dbt project is missing: neither {packaged} nor {checkout} holds a dbt_project.yml"
    )


class DbtRunError(RuntimeError):
    """A dbt invocation that did not succeed; the message names the failing nodes."""

    def __init__(self, args: Sequence[str], problems: Sequence[str]) -> None:
        self.args_used = list(args)
        self.problems = list(problems)
        detail = "\n".join(f"  - {p}" for p in problems) or "  - (no detail reported)"
        super().__init__(f"dbt {' '.join(args)} failed:\n{detail}")


def dbt_vars(days: Sequence[date] | None = None, **extra: Any) -> dict[str, Any]:
    """The ``--vars`` of an invocation: the metric types, and the days it (re)processes.

    With ``days``, the inclusive range they span (days between the first and the last are
    reprocessed too, harmlessly: the daily models replace whole days); without, every day.
    ``extra`` vars are added as given.
    """
    out: dict[str, Any] = {"metric_columns": metric_columns()}
    if days is not None:
        if not days:
            raise ValueError("dbt_vars needs at least one day; pass None to process all days")
        for d in days:
            if not isinstance(d, date):
                raise TypeError(f"dbt_vars expects datetime.date values, got {type(d).__name__}")
        out.update(start_date=min(days).isoformat(), end_date=max(days).isoformat())
    out.update(extra)
    return out


def profile_text(warehouse: Path, threads: int = 2) -> str:
    """The dbt profile of the DuckDB database at ``warehouse`` (UTC session)."""
    profile = {
        PROFILE: {
            "target": "warehouse",
            "outputs": {
                "warehouse": {
                    "type": "duckdb",
                    "path": str(warehouse),
                    "threads": threads,
                    "settings": {"TimeZone": "UTC"},
                }
            },
        }
    }
    # JSON is YAML: no YAML writer needed, and no value is ever templated.
    return json.dumps(profile, indent=2) + "\n"


def profiles_dir(paths: DataPaths, warehouse: Path | None = None) -> Path:
    """Write the profile of ``warehouse`` (default: the warehouse of ``paths``) when it
    changed, and return its directory."""
    directory = paths.dbt if warehouse is None else paths.dbt / "other-profile"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "profiles.yml"
    text = profile_text(warehouse or paths.warehouse)
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        tmp = directory / f".profiles.yml.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    return directory


def target_dir(paths: DataPaths) -> Path:
    return paths.dbt / "target"


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def dbt_launcher() -> str:
    """The dbt executable to hand to dagster-dbt: dbt tied to the life of the run
    (:func:`workloads_etl.children.exec_dbt`), where installed."""
    candidate = Path(sys.executable).with_name("workloads-etl-dbt")
    return str(candidate) if candidate.exists() else dbt_executable()


def _problems(events: Sequence[dict[str, Any]]) -> list[str]:
    """The error messages of an invocation, without dbt's stack traces (the log has them)."""
    out = []
    for event in events:
        info = event.get("info", {})
        if info.get("name") == "MainStackTrace":
            continue
        if info.get("level") == "error" and info.get("msg"):
            out.append(str(info["msg"]).strip())
    return out


def run_dbt(
    args: Sequence[str],
    paths: DataPaths,
    *,
    days: Sequence[date] | None = None,
    extra_vars: dict[str, Any] | None = None,
    log: TextIO | None = None,
    raise_on_failure: bool = True,
    warehouse: Path | None = None,
    target: Path | None = None,
    project: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``dbt <args>`` on the warehouse at ``paths.warehouse``, in a subprocess.

    The vars are :func:`dbt_vars` of ``days`` and ``extra_vars``. dbt's messages go to
    ``log`` as text (never to the terminal). ``warehouse`` and ``target`` point dbt at
    another database and target directory (the docs use a copy of the serving database);
    ``project`` at another copy of the dbt project.
    Raises :class:`DbtRunError` naming the failures unless ``raise_on_failure`` is false.
    """
    paths.root.mkdir(parents=True, exist_ok=True)
    variables = dbt_vars(days, **(extra_vars or {}))
    full_args = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(project or dbt_project_dir()),
        "--profiles-dir",
        str(profiles_dir(paths, warehouse)),
        "--target-path",
        str(target or target_dir(paths)),
        "--log-path",
        str(paths.dbt / "logs"),
        "--vars",
        json.dumps(variables),
        "--log-format",
        "json",
        "--log-format-file",
        "text",
        "--no-use-colors",
    ]
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run(
        full_args,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=paths.root,
        preexec_fn=die_with_parent(),
    )
    events = []
    for line in proc.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            event = {"info": {"level": "info", "msg": line}}
        events.append(event)
        if log is not None:
            log.write(str(event.get("info", {}).get("msg", "")) + "\n")
    if log is not None and proc.stderr:
        log.write(proc.stderr)
    if raise_on_failure and proc.returncode != 0:
        problems = _problems(events) or [line for line in proc.stderr.splitlines()[-5:] if line]
        raise DbtRunError(args, problems)
    return proc
