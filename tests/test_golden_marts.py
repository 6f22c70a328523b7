"""The marts of the end-to-end run, digested: a refactoring that changes no behaviour keeps
this digest. A change of the models' results must update it on purpose, with the reason in
the commit message."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from tests.conftest import PipelineRun, marts_content

pytestmark = pytest.mark.slow

GOLDEN_MARTS_DIGEST = "6de38f71b5288183505efef832f586f351d0413209a8110a90a01ceb64eb5c4a"


def _digest(rows: list[tuple[Any, ...]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([repr(v) for v in row]).encode())
    return h.hexdigest()


def test_marts_digest_is_unchanged(pipeline_run: PipelineRun) -> None:
    content = marts_content(pipeline_run.paths)
    per_table = {table: _digest(rows) for table, rows in sorted(content.items())}
    overall = hashlib.sha256(json.dumps(per_table, sort_keys=True).encode()).hexdigest()
    assert overall == GOLDEN_MARTS_DIGEST, f"{overall}\n{json.dumps(per_table, indent=1)}"
