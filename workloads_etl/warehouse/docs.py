"""The dbt docs site of the warehouse models, generated from the serving database.

dbt reads a private copy of the published serving database (it opens its database for
writing, and the published file is never written), so generating the docs never waits for a
run and never blocks a reader. The site is one static page, ``<data>/serving/docs.html``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
from pathlib import Path
from typing import Any

from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.dbt import run_dbt
from workloads_etl.warehouse.serving import ServingNotPublishedError, serving_path


def generate_docs(paths: DataPaths, user_vars: dict[str, Any] | None = None) -> Path:
    """Generate the docs; returns the static page, published atomically."""
    source = serving_path(paths)
    if not source.is_file():
        raise ServingNotPublishedError(f"no serving database at {source}: run the pipeline first")
    work = paths.dbt / "docs"
    work.mkdir(parents=True, exist_ok=True)
    copy = work / "serving-copy.duckdb"
    shutil.copyfile(source, copy)
    try:
        run_dbt(
            ["docs", "generate", "--static"],
            paths,
            extra_vars=user_vars,
            warehouse=copy,
            target=work / "target",
        )
    finally:
        copy.unlink(missing_ok=True)
    page = paths.serving / "docs.html"
    tmp = page.with_name(f".{page.name}.tmp")
    shutil.copyfile(work / "target" / "static_index.html", tmp)
    tmp.replace(page)
    return page


def serve_docs(page: Path, port: int) -> None:
    """Serve the docs page on 127.0.0.1 until interrupted."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving the docs at http://127.0.0.1:{port}/{page.name} (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
