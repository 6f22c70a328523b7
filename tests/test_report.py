"""The HTML report in a real headless browser (Debian's chromium, driven by Playwright): it
loads offline with no console errors, every chart has marks, the page is not blank, and the
totals it shows are the marts' totals."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner
from PIL import Image, ImageStat

from tests.conftest import PipelineRun
from tests.tools import BROWSER_FLAGS, chromium
from workloads_etl.cli import main
from workloads_etl.warehouse.serving import serving_path

pytestmark = pytest.mark.slow


@dataclass
class Page:
    path: Path
    title: str
    errors: list[str]
    charts: list[dict[str, Any]]
    kpis: dict[str, float]
    chargeback_total: float
    screenshot: bytes
    requests: list[str]


@pytest.fixture(scope="module")
def report(pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    start, end = pipeline_run.days[0].isoformat(), pipeline_run.days[-1].isoformat()
    result = CliRunner().invoke(
        main,
        [
            "--data-dir",
            str(pipeline_run.paths.root),
            "report",
            "--start",
            start,
            "--end",
            end,
            "-o",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def page(report: Path) -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=list(BROWSER_FLAGS))
        try:
            tab = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(report.as_uri(), wait_until="load")
            charts = tab.eval_on_selector_all(
                "svg.chart",
                """svgs => svgs.map(s => {
                    const box = s.getBoundingClientRect();
                    const marks = [...s.querySelectorAll('.mark')].filter(m => {
                        const b = m.getBBox();
                        return b.width > 0 || b.height > 0;
                    });
                    return {title: s.querySelector('title').textContent,
                            width: box.width, height: box.height, marks: marks.length};
                })""",
            )
            kpis = {
                key: float(tab.get_attribute(f"#kpi-{key}", "data-value") or "nan")
                for key in ("total-cost", "idle-cost", "gpu-hours")
            }
            chargeback = sum(
                float(v)
                for v in tab.eval_on_selector_all(
                    ".chargeback-total", "cells => cells.map(c => c.dataset.value)"
                )
            )
            shot = tab.screenshot(full_page=True)
            yield Page(report, tab.title(), errors, charts, kpis, chargeback, shot, requests)
        finally:
            browser.close()


def test_the_page_loads_offline_without_console_errors(page: Page) -> None:
    assert page.title.startswith("GPU usage and cost")
    assert page.errors == []
    assert all(url.startswith("file://") for url in page.requests), page.requests


def test_every_chart_renders_with_marks(page: Page) -> None:
    titles = [c["title"] for c in page.charts]
    assert "Cost per department per day" in titles
    assert "Idle GPU cost per department per day" in titles
    assert "GPU utilisation per node pool" in titles
    assert sum(t.startswith("GPUs allocated per hour") for t in titles) >= 3
    for chart in page.charts:
        assert chart["width"] > 100 and chart["height"] > 100, chart
        assert chart["marks"] > 0, chart


def test_the_screenshot_is_not_blank(page: Page) -> None:
    image = Image.open(io.BytesIO(page.screenshot)).convert("L")
    assert image.height > 2000
    stat = ImageStat.Stat(image)
    assert stat.stddev[0] > 20, "a page of one colour"
    colours = Image.open(io.BytesIO(page.screenshot)).convert("RGB").getcolors(1 << 20)
    assert colours is not None and len(colours) > 50


def test_the_totals_shown_are_the_marts_totals(page: Page, pipeline_run: PipelineRun) -> None:
    days = [pipeline_run.days[0], pipeline_run.days[-1]]
    with duckdb.connect(str(serving_path(pipeline_run.paths)), read_only=True) as con:
        total, idle, hours = con.execute(
            "select sum(total_cost), sum(idle_gpu_cost), sum(allocated_gpu_hours) "
            "from marts.fct_workload_usage_daily where usage_date between ? and ?",
            days,
        ).fetchone() or (None, None, None)
        monthly = con.execute(
            "select sum(total_cost) from marts.rpt_chargeback_monthly "
            "where usage_month between date_trunc('month', ?::date) and ?",
            days,
        ).fetchone()
    assert page.kpis["total-cost"] == pytest.approx(total, rel=1e-12)
    assert page.kpis["idle-cost"] == pytest.approx(idle, rel=1e-12)
    assert page.kpis["gpu-hours"] == pytest.approx(hours, rel=1e-12)
    assert monthly is not None
    assert page.chargeback_total == pytest.approx(monthly[0], rel=1e-9)


def test_the_nightly_graph_materialises_the_report_with_a_link(
    pipeline_run: PipelineRun,
) -> None:
    mats = pipeline_run.result.asset_materializations_for_node("serving__report")
    assert mats, "the report asset was not materialised"
    metadata = mats[-1].metadata
    path = Path(metadata["path"].value)
    assert path.is_file() and path.stat().st_size > 10_000
    assert isinstance(metadata["url"], dg.UrlMetadataValue)
    assert metadata["url"].value == path.as_uri()
