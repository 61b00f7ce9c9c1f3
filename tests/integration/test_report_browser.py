"""The report in a real browser: a real `evalsuite run` on tiny models (base, three SFT cells, their DPO cells; MMLU
from a local file; typo, rephrase and format), `evalsuite report` with the paper's grid beside it, then headless
Chromium (Debian's, driven by Playwright's Python package: no browser download) opens index.html and an item page
from file:// with every other request refused. No console error, the heatmaps have the expected cells and the
shared encoding's colours, the controls change what is shown, a cell opens its items, a filter changes them.

Under CI (CI=true) a missing Chromium or Playwright fails the test; elsewhere it skips and says why. A screenshot
of the heatmaps is saved in the test's tmp folder; EVALSUITE_REPORT_SCREENSHOT=PATH also writes it to PATH. The
last test opens the report of the demo study (`make demo`, shrunk); EVALSUITE_DEMO_SCREENSHOT=PATH writes its top
to PATH. docs/report-screenshot.png is made from a full `make demo`:
`EVALSUITE_DEMO_STUDY=reports/demo EVALSUITE_DEMO_SCREENSHOT=docs/report-screenshot.png .venv/bin/python -m pytest
tests/integration/test_report_browser.py -k demo_studys_report`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.unit.test_report_html import EVIL, QUESTIONS, _expected_grid, load_data, make_grid_models, report_cli, run_grid

pytestmark = [pytest.mark.browser, pytest.mark.integration]
PAPER = "Llama-3.2-1B:Tulu-v2"


def chromium() -> str:
    """The system Chromium, or skip (fail under CI) saying what is missing."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        executable, why = None, "the playwright Python package is not installed (pip install -e '.[dev]')"
    else:
        why = "no chromium on PATH (Debian/Ubuntu: apt-get install chromium; scripts/setup_env.sh does it as root)"
    if executable is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the browser test cannot run: {why}")
        pytest.skip(why)
    return executable


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, report folder) from the real CLI."""
    chromium()
    root = tmp_path_factory.mktemp("browser")
    models = make_grid_models(root / "models")
    data = root / "mmlu"
    data.mkdir()
    write_jsonl(data / "test.jsonl", QUESTIONS)
    run = root / "run"
    proc = run_grid(models, data, run, "--no-report")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    proc = report_cli(str(run), "--out", str(root / "report"), "--paper", PAPER)
    assert proc.returncode == 0 and "report: " in proc.stdout, proc.stderr[-3000:]
    return run, root / "report"


@pytest.fixture()
def page(built):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium())
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.problems = []  # type: ignore[attr-defined]
        pg.blocked = []  # type: ignore[attr-defined]
        pg.on("console", lambda m: pg.problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
        pg.on("dialog", lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss()))

        def route(r):
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                pg.blocked.append(r.request.url)
                r.abort()

        pg.route("**/*", route)
        yield pg
        browser.close()


def save_docs_screenshot(page, path: Path) -> None:
    """The top of the page (title, controls, the run's grids beside the paper's) as a small palette PNG."""
    from PIL import Image

    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1400, "height": 700})
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)


def hex_of(rgb: str) -> str:
    parts = rgb[rgb.index("(") + 1:rgb.index(")")].split(",")
    return "#" + "".join(f"{int(x):02x}" for x in parts[:3])


def values(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")


def test_index_renders_the_heatmaps_and_the_controls_change_them(built, page, tmp_path):
    from evalsuite.report.encoding import cell_colors

    run, report = built
    page.goto((report / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    data = load_data(report)
    run_key = data["experiments"][0]["key"]
    mine = f"#grids table.hm[data-exp='{run_key}']"
    # the run: MMLU × SFT, DPO, ΔDPO; each a 3 × 2 lattice with Base + 3 cells (ΔDPO: the 3 cells)
    assert page.locator(mine).count() == 3
    assert page.locator(f"{mine}.hm-sft td.cell").count() == 4 and page.locator(f"{mine}.hm-sft td.empty").count() == 2
    assert page.locator(f"{mine}.hm-delta td.cell").count() == 3
    assert page.locator(f"{mine}.hm-sft th.tick").all_text_contents() == ["0", "1", "0", "0.5", "1"]  # λr on top
    assert "Base:" in page.locator(f"{mine}.hm-sft td.base").inner_text()
    assert "IT:" in page.locator(f"{mine}.hm-sft td.ref").inner_text()
    assert page.locator(f"{mine}.hm-sft td.best .circled").count() >= 1
    # the paper's full 6 × 6 grids beside it, same encoding
    paper_key = data["experiments"][1]["key"]
    assert page.locator(f"#grids table.hm-sft[data-exp='{paper_key}'][data-bench='aggregate_paper'] td.cell").count() == 36
    # colours: the browser's fill is the shared encoding's colour of the cell's gain, computed here from the table
    for stage in ("sft", "dpo"):
        expected = _expected_grid(run, stage)
        ref = expected[(0.0, 1.0)]
        assert ref, f"the tiny {stage} (0, 1) cell scored 0: no gains to colour (change the seeds)"
        colours = cell_colors({c: (v - ref) / abs(ref) * 100 for c, v in expected.items() if c != (0.0, 0.0)})
        assert len(set(colours.values())) > 1
        for (lp, lr), colour in colours.items():
            fill = page.locator(f"{mine}.hm-{stage} td.cell[data-lp='{lp:g}'][data-lr='{lr:g}']")
            assert hex_of(fill.evaluate("e => getComputedStyle(e).backgroundColor")) == colour
    page.locator("#heatmaps").screenshot(path=str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
    if os.environ.get("EVALSUITE_REPORT_SCREENSHOT"):
        save_docs_screenshot(page, Path(os.environ["EVALSUITE_REPORT_SCREENSHOT"]))

    # controls: condition, then metric, then the experiments shown
    clean = values(page, f"{mine} td.cell .val")
    caption = page.locator("#view-caption").inner_text()
    page.select_option("#ctl-condition", "typo")
    assert page.locator("#view-caption").inner_text() != caption
    assert page.locator(f"{mine}.hm-sft td.cell").count() == 4
    typo = values(page, f"{mine} td.cell .val")
    page.select_option("#ctl-metric", "agreement")
    assert "Agreement" in page.locator("#view-caption").inner_text()
    agreement = values(page, f"{mine} td.cell .val")
    assert len({tuple(clean), tuple(typo), tuple(agreement)}) == 3
    assert page.locator(f"#grids table.hm[data-exp='{paper_key}']").count() == 0  # the paper has no typo grids
    page.locator("#ctl-experiments input").first.uncheck()
    assert page.locator("#grids table.hm").count() == 0 and "No " in page.locator("#grids").inner_text()
    assert page.problems == [] and page.blocked == []


def test_a_cell_opens_its_items_and_a_filter_changes_them(built, page):
    _, report = built
    page.goto((report / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    key = load_data(report)["experiments"][0]["key"]
    page.locator(f"#grids table.hm-sft[data-exp='{key}'] td.cell[data-lp='0.5'][data-lr='1'] a").click()
    page.wait_for_selector("#items article.item")
    assert "/items/" in page.url and "cell=sft%2Flp0.5_lr1" in page.url
    assert "lp0.5_lr1" in page.locator("#ctl-cell option:checked").inner_text()
    shown = page.locator("#items article.item").count()
    assert shown == 6  # MMLU's six items, clean
    assert EVIL in page.locator("#items").inner_text()  # a <script> in a question is shown as text
    options = page.locator("#ctl-outcome option").all_inner_texts()
    counts = {o: int(o.rsplit("(", 1)[1].rstrip(")")) for o in options}
    narrower = next(o for o, n in counts.items() if 0 < n < shown)
    page.select_option("#ctl-outcome", label=narrower)
    page.wait_for_function(f"document.querySelectorAll('#items article.item').length === {counts[narrower]}")
    assert page.problems == [] and page.blocked == []


def test_the_demo_studys_report_shows_every_stage_the_perturbations_and_the_items(demo_study, page, tmp_path):
    """`make demo`'s report (the packaged demo study, shrunk): per benchmark the SFT, DPO and ΔDPO grids of the four
    cells, the perturbation conditions, the note on the judged benchmarks, and a cell's item page."""
    import pandas as pd

    study, _ = demo_study
    report = study / "report"
    page.goto((report / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    key = load_data(report)["experiments"][0]["key"]
    mine = f"#grids table.hm[data-exp='{key}']"
    for bench in ("mmlu", "bbh", "ifeval"):
        grids = f"{mine}[data-bench='{bench}']"
        assert page.locator(f"{grids}.hm-sft td.cell").count() == 5  # Base + the four cells
        assert page.locator(f"{grids}.hm-dpo td.cell").count() == 5 and page.locator(f"{grids}.hm-delta td.cell").count() == 4
    assert "AlpacaEval and MT-Bench are not in this run" in page.locator("header").inner_text()
    conditions = page.locator("#ctl-condition option").all_inner_texts()
    assert {"clean", "typo", "rephrase", "format"} <= {c.split()[0].lower() for c in conditions}, conditions
    page.select_option("#ctl-condition", "format")
    page.select_option("#ctl-metric", "agreement")
    assert "Agreement" in page.locator("#view-caption").inner_text()
    assert page.locator(f"{mine}[data-bench='mmlu'].hm-sft td.cell").count() == 5  # the base model is perturbed too
    page.locator("#heatmaps").screenshot(path=str(tmp_path / "demo.png"))
    if os.environ.get("EVALSUITE_DEMO_SCREENSHOT"):  # how docs/report-screenshot.png is made
        page.select_option("#ctl-condition", "clean")
        page.select_option("#ctl-metric", "score")
        save_docs_screenshot(page, Path(os.environ["EVALSUITE_DEMO_SCREENSHOT"]))
    page.select_option("#ctl-condition", "clean")
    page.select_option("#ctl-metric", "score")
    page.locator(f"{mine}[data-bench='bbh'].hm-sft td.cell[data-lp='0.4'][data-lr='0.6'] a").click()
    page.wait_for_selector("#items article.item")
    results = pd.read_parquet(study / "run" / "results.parquet")
    n = results[(results.checkpoint.str.endswith("sft/lp0.4_lr0.6")) & (results.benchmark == "bbh")
                & (results.condition == "clean") & (results.metric == "score")].n.iloc[0]
    assert "lp0.4_lr0.6" in page.url and page.locator("#items article.item").count() == n  # every BBH item, clean
    assert page.problems == [] and page.blocked == []
