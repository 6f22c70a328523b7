"""Locate and load the Run:ai OpenAPI slice that client, normaliser and simulator follow.

The document lives outside the package (``../shared/runai-openapi/workloads-api.json`` next
to the project checkout); ``WORKLOADS_ETL_OPENAPI_SPEC`` points elsewhere.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC_ENV = "WORKLOADS_ETL_OPENAPI_SPEC"
_RELATIVE = Path("shared") / "runai-openapi" / "workloads-api.json"


class SpecNotFoundError(FileNotFoundError):
    """The OpenAPI contract could not be found."""


def spec_path() -> Path:
    explicit = os.environ.get(SPEC_ENV)
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise SpecNotFoundError(f"{SPEC_ENV}={explicit} is not a file")
        return p
    project_root = Path(__file__).resolve().parent.parent
    for base in (project_root, Path.cwd()):
        for parent in (base, *base.parents):
            candidate = parent / _RELATIVE
            if candidate.is_file():
                return candidate
    raise SpecNotFoundError(
        f"cannot find {_RELATIVE} beside the project; set {SPEC_ENV} to the file's path"
    )


@lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    with spec_path().open(encoding="utf-8") as f:
        spec: dict[str, Any] = json.load(f)
    return spec


def enum_values(schema_name: str) -> list[str]:
    """The enum of a component schema, e.g. ``enum_values("WorkloadMetricType")``."""
    schema = load_spec()["components"]["schemas"][schema_name]
    return list(schema["enum"])
