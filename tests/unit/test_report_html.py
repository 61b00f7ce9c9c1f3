"""`evalsuite report` / `build_report`: the files it writes, the heatmap data against the run's own table and the
shared colour encoding, escaping of untrusted text, no external URL, identical bytes on a re-run, and the
one-line errors (old run folder, unknown --paper setting). The run folder comes from a real `evalsuite run` on
tiny random models: a base model, three SFT cells and their three DPO cells, MMLU from a local file, all three
perturbation kinds."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import EVALSUITE, ROOT, build_tiny_model, write_jsonl

CELLS = ((0.0, 1.0), (1.0, 1.0), (0.5, 1.0))
EVIL = "<script>alert(1)</script>"
QUESTIONS = [{"question": f"Question {i} about {s}? {EVIL if i == 0 else ''}".strip(), "subject": s,
              "choices": ["red", "green", "blue", "black"], "answer": i % 4}
             for s in ("anatomy", "astronomy") for i in range(3)]


def make_grid_models(root: Path) -> Path:
    """base/ (a plain HF folder), sft/lpX_lrY and dpo/lpX_lrY for each cell in CELLS, with manifests: one
    experiment (base model, SFT data, prompt format); the DPO cells name their SFT parent. Different seeds, so
    the cells score differently (these ones give the (0, 1) cells a score above 0, so gains are defined)."""
    from evalsuite.manifest import CheckpointManifest, write_manifest

    build_tiny_model(root / "base", seed=0, max_positions=1024)
    sft_data = {"dataset": {"path": "tiny-instructions.jsonl"}, "dataset_fingerprint": "a" * 64}
    dpo_data = {"dataset": {"path": "tiny-preferences.jsonl"}, "dataset_fingerprint": "b" * 64}
    for i, (lp, lr) in enumerate(CELLS):
        name = f"lp{lp:g}_lr{lr:g}"
        cell = {"cell": {"lambda_p": lp, "lambda_r": lr}}
        sft = build_tiny_model(root / "sft" / name, seed=3 - i, max_positions=1024)  # seeds where IT scores > 0
        write_manifest(sft, CheckpointManifest(stage="sft", base_model=str(root / "base"), prompt_format="plain",
                                               dtype="float32", source=sft_data,
                                               metrics={"final_loss": 1.5 + i}).model_copy(update=cell))
        dpo = build_tiny_model(root / "dpo" / name, seed=11 + i, max_positions=1024)
        write_manifest(dpo, CheckpointManifest(stage="dpo", base_model=str(root / "base"), parent=str(sft),
                                               prompt_format="plain", dtype="float32", source=dpo_data,
                                               metrics={"final_loss": 0.6, "reward_accuracy": 0.7,
                                                        "reward_margin": 0.2}).model_copy(update=cell))
    return root


def run_grid(models: Path, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(EVALSUITE + ["run", "--models", str(models), "--benchmarks", "mmlu", "--perturb",
                                       "typo,rephrase,format", "--variants", "1", "--data", str(data), "--dtype",
                                       "float32", "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=ROOT)


def report_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(EVALSUITE + ["report", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mmlu")
    write_jsonl(folder / "test.jsonl", QUESTIONS)
    return folder


@pytest.fixture(scope="module")
def grid_models(tmp_path_factory) -> Path:
    return make_grid_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def run_dir(grid_models, grid_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    proc = run_grid(grid_models, grid_data, out, "--no-report")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "report:" not in proc.stdout and not (out / "report").exists()  # --no-report
    return out


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory) -> Path:
    from evalsuite.report import build_report

    index = build_report([run_dir], tmp_path_factory.mktemp("report") / "out")
    assert index.name == "index.html" and index.is_file()
    return index.parent


def load_data(report_dir: Path) -> dict:
    text = (report_dir / "index.data.js").read_text(encoding="utf-8")
    prefix, suffix = "window.EVALSUITE_DATA = ", ";\n"
    assert text.startswith(prefix) and text.endswith(suffix)
    return json.loads(text[len(prefix):-len(suffix)])


def no_figures(monkeypatch) -> None:
    """Skip the matplotlib figures (tested in the figure module's tests and in the re-run test here): a test
    about the page's data need not wait for them."""
    import evalsuite.report.figures as figures

    monkeypatch.setattr(figures, "paper_figures", lambda frame, out, **kw: [])


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the files and the heatmap data -------------------------------------------------------------------------------

def test_report_writes_the_page_its_data_figures_tables_and_item_pages(report):
    names = {p.name for p in report.iterdir()}
    assert {"index.html", "index.data.js", "report.css", "report.js", "figures", "items"} <= names
    assert not any(n.startswith(".") for n in names - {".evalsuite-report"})  # no staging folder left behind
    assert (report / ".evalsuite-report").is_file()  # the folder says it is a report (what may be replaced)
    figures = {p.name for p in (report / "figures").iterdir()}
    for suffix in ("svg", "pdf", "png"):
        assert f"plw.{suffix}" in figures and any(f.endswith(f"_score.{suffix}") for f in figures)
    for table in ("table2_optimum", "status", "provenance"):
        assert {f"{table}.csv", f"{table}.tex"} <= figures
    page = (report / "index.html").read_text(encoding="utf-8")
    pages = sorted((report / "items").glob("*.html"))
    assert pages and all(f'href="items/{p.name}"' in page for p in pages)
    for section in ('id="heatmaps"', 'id="tables"', 'id="provenance"', 'src="figures/plw.svg"',
                    '<script src="index.data.js"></script>', '<script src="report.js"></script>'):
        assert section in page
    assert "Status of every checkpoint × task" in page and "dpo/lp0.5_lr1" in page


def _expected_grid(run_dir: Path, stage: str, condition: str = "clean", metric: str = "score") -> dict:
    """cell -> value (percent) of one grid, read straight from the run's results table, Base under (0, 0)."""
    import pandas as pd

    df = pd.read_parquet(run_dir / "results.parquet")
    rows = df[(df.condition == condition) & (df.metric == metric)]
    grid = {}
    for r in rows.itertuples():
        if r.stage in ("base", "hf"):
            grid[(0.0, 0.0)] = r.value * 100
        elif r.stage == stage:
            grid[(float(r.lambda_p), float(r.lambda_r))] = r.value * 100
    return grid


def test_heatmap_cells_values_and_colours_match_the_run_and_the_shared_encoding(report, run_dir):
    from evalsuite.report.encoding import cell_colors, text_color

    data = load_data(report)
    assert data["defaults"] == {"condition": "clean", "experiments": [0], "metric": "score"}
    assert [c["key"] for c in data["conditions"]][:1] == ["clean"] and {"typo", "format"} <= {c["key"] for c in data["conditions"]}
    assert {"score", "gain", "agreement", "correct_to_wrong", "wrong_to_correct", "performance_drop_rate",
            "worst_case_with_clean"} <= {m["key"] for m in data["metrics"]}
    (exp,) = data["experiments"]
    assert exp["kind"] == "run" and exp["key"].startswith("base/tiny-instructions#")
    # the sparse grid: only the λ values it has, Base at (0, 0); 4 of 6 lattice positions hold a cell
    assert exp["lp"] == ["0", "0.5", "1"] and exp["lr"] == ["0", "1"] and exp["stages"] == ["sft", "dpo", "delta"]
    rows = {r["b"]: r["g"] for r in exp["views"]["clean"]["score"]}
    assert list(rows) == ["mmlu"]  # the aggregates need all five benchmarks: no all-"n/a" rows
    positions = [(p, r) for p in (0.0, 0.5, 1.0) for r in (0.0, 1.0)]
    for stage in ("sft", "dpo"):
        grid = rows["mmlu"][stage]
        expected = _expected_grid(run_dir, stage)
        shown = {pos: v for pos, v in zip(positions, grid["v"]) if v is not None}
        assert shown == {c: f"{v:.2f}" for c, v in expected.items()}
        ref = expected[(0.0, 1.0)]
        assert ref  # the seeds give IT a score: gains, and so colours, are defined
        gains = {c: (v - ref) / abs(ref) * 100 for c, v in expected.items()}
        colours = cell_colors(gains)
        for pos, fill, k, flags in zip(positions, grid["c"], grid["k"], grid["f"]):
            if pos not in expected:
                assert fill is None and flags is None
                continue
            if pos == (0.0, 0.0):
                assert flags & 8 and fill == "#ffffff"  # Base: uncoloured
            else:
                assert fill == colours[pos]
            assert exp["text_colors"][k] == text_color(fill)
        assert grid["f"][positions.index((0.0, 1.0))] & 16  # IT
        best = {pos for pos, f in zip(positions, grid["f"]) if f and f & 1}
        top = max(round(v, 2) for c, v in expected.items() if c != (0.0, 0.0))
        assert best == {c for c, v in expected.items() if c != (0.0, 0.0) and round(v, 2) == top}
        assert all("n=6" in t for t in grid["t"] if t)  # tooltips carry n
    # ΔDPO: DPO − SFT per trained cell, no Base
    delta = rows["mmlu"]["delta"]
    sft, dpo = _expected_grid(run_dir, "sft"), _expected_grid(run_dir, "dpo")
    assert {pos: v for pos, v in zip(positions, delta["v"]) if v is not None} == {
        c: f"{dpo[c] - sft[c]:.2f}" for c in CELLS}
    # DPO grids mark the SFT-best cell (first in row-major order on ties)
    sft_best = min(c for c, v in sft.items() if c != (0.0, 0.0) and round(v, 2) == max(
        round(x, 2) for k, x in sft.items() if k != (0.0, 0.0)))
    assert [pos for pos, f in zip(positions, rows["mmlu"]["dpo"]["f"]) if f and f & 2] == [sft_best]
    # cells open their checkpoint's item page
    assert exp["ckpt"]["sft"][positions.index((0.5, 1.0))] == "sft/lp0.5_lr1"
    assert exp["pages"]["mmlu"].startswith("items/") and (report / exp["pages"]["mmlu"]).is_file()


def test_perturbed_conditions_carry_the_robustness_metrics(report):
    exp = load_data(report)["experiments"][0]
    typo = exp["views"]["typo"]
    assert {"score", "agreement", "correct_to_wrong", "performance_drop_rate"} <= set(typo)
    assert "agreement" not in exp["views"]["clean"]
    values = [v for v in typo["agreement"][0]["g"]["sft"]["v"] if v is not None]
    assert len(values) == 4 and all(0 <= float(v) <= 100 for v in values)


# --- safety and determinism ------------------------------------------------------------------------------------

class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def test_no_external_url_in_any_src_or_href(report):
    pages = [report / "index.html", *sorted((report / "items").glob("*.html"))]
    assert len(pages) >= 2
    for page in pages:
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        assert parser.urls, page
        for url in parser.urls:
            assert not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) and not url.startswith("//"), (page, url)
            target = (page.parent / url.split("#")[0]).resolve()
            assert target.exists(), (page, url)  # every link lands on a file of the report
        assert not "".join(parser.scripts).strip(), page  # no inline script: code and data come from files
    for js in [*report.glob("*.js"), *(report / "items").rglob("*.js")]:
        text = re.sub(r"/\*.*?\*/|^\s*//.*$", "", js.read_text(encoding="utf-8"), flags=re.S | re.M)  # code only
        assert not re.search(r"\bfetch\(|(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|https?://", text), js


def _rewrite_names(src: Path, dst: Path) -> None:
    """A copy of a run folder whose checkpoint sft/lp1_lr1 is named EVIL and whose answers and responses are
    EVIL: the spec's tables, rewritten with the run's own schemas."""
    import pandas as pd
    import pyarrow as pa

    from evalsuite.run.records import (CHECKPOINTS_TYPES, ITEMS_TYPES, RESULTS_TYPES, read_run, schema,
                                       write_parquet)

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report", "requests.sqlite", "checkpoints"))
    tables = read_run(dst)
    rename = {"sft/lp1_lr1": EVIL}
    results = tables.results.assign(checkpoint=tables.results.checkpoint.replace(rename))
    items = tables.items.assign(checkpoint=tables.items.checkpoint.replace(rename))
    items["answer"] = items["answer"].where(items.checkpoint != EVIL, EVIL)
    items["response"] = EVIL
    checkpoints = tables.checkpoints.assign(checkpoint=tables.checkpoints.checkpoint.replace(rename))
    shutil.rmtree(dst / "items.parquet")
    (dst / "items.parquet").mkdir()
    for name, frame, types in (("results.parquet", results, RESULTS_TYPES), ("items.parquet/part-00000.parquet", items,
                                                                            ITEMS_TYPES),
                               ("checkpoints.parquet", checkpoints, CHECKPOINTS_TYPES)):
        write_parquet(dst / name, pa.Table.from_pandas(pd.DataFrame(frame), schema=schema(types), preserve_index=False))


def test_untrusted_names_and_answers_stay_text(run_dir, tmp_path, monkeypatch):
    from evalsuite.report import build_report

    no_figures(monkeypatch)
    evil_run = tmp_path / "evil-run"
    _rewrite_names(run_dir, evil_run)
    out = build_report([evil_run], tmp_path / "report").parent
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text
    for f in [*out.rglob("*.html"), *out.rglob("*.js")]:
        assert EVIL not in f.read_text(encoding="utf-8"), f  # never as markup, nor able to close a <script>
    data = load_data(out)
    assert EVIL in data["experiments"][0]["ckpt"]["sft"]  # and the data still holds the name itself


def test_identical_bytes_on_a_rebuild_and_in_another_folder(run_dir, report, tmp_path):
    from evalsuite.report import build_report

    before = digests(report)
    build_report([run_dir], report)  # over the previous report
    assert digests(report) == before
    build_report([run_dir], tmp_path / "elsewhere")
    assert digests(tmp_path / "elsewhere") == before


# --- the CLI --------------------------------------------------------------------------------------------------

def test_cli_writes_the_report_to_the_run_folder_by_default_and_prints_its_path(run_dir, tmp_path, monkeypatch):
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("report"))
    proc = report_cli(str(target))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"report: {(target / 'report' / 'index.html').resolve()}"


def test_run_writes_the_report_at_the_end_and_prints_its_path(grid_models, grid_data, run_dir):
    proc = run_grid(grid_models, grid_data, run_dir)  # again: every answer from the store
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = (run_dir / "report" / "index.html").resolve()
    assert proc.stdout.splitlines()[-1] == f"report: {index}" and index.is_file()


def test_old_or_foreign_run_folder_is_a_one_line_error(run_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns("report", "checkpoints", "requests.sqlite"))
    record = json.loads((old / "run.json").read_text())
    record.pop("records_version")
    (old / "run.json").write_text(json.dumps(record))
    proc = report_cli(str(old), "--out", str(tmp_path / "r1"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "older evalsuite run" in proc.stderr and "re-run `evalsuite run`" in proc.stderr
    assert not (tmp_path / "r1").exists()  # nothing written
    proc = report_cli(str(tmp_path), "--out", str(tmp_path / "r2"))
    assert proc.returncode == 2 and "not an evalsuite run folder" in proc.stderr and not (tmp_path / "r2").exists()


def test_unknown_paper_setting_lists_the_published_ones(run_dir, tmp_path):
    proc = report_cli(str(run_dir), "--paper", "Llama-3.2-1B:Tulu", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "did you mean Llama-3.2-1B:Tulu-v2?" in proc.stderr and "Mistral-7B:Alpaca-Cleaned" in proc.stderr
    assert not (tmp_path / "r").exists()


# --- the paper's grid and a comparison beside the run ---------------------------------------------------------------

def test_paper_grid_beside_the_run_in_the_same_encoding(run_dir, tmp_path, monkeypatch):
    from evalsuite.analysis import paper_grids, relative_gain
    from evalsuite.report import build_report
    from evalsuite.report.encoding import cell_colors

    no_figures(monkeypatch)
    out = build_report([run_dir], tmp_path / "r", paper="llama-3.2-1b:tulu-v2").parent
    data = load_data(out)
    run, paper = data["experiments"]
    assert paper["kind"] == "paper" and paper["label"] == "WIT paper: Llama-3.2-1B/Tulu-v2"
    assert data["defaults"]["experiments"] == [0, 1]  # shown side by side by default
    assert len(paper["lp"]) == len(paper["lr"]) == 6
    rows = {r["b"]: r["g"] for r in paper["views"]["clean"]["score"]}
    assert "aggregate_paper" in rows and "mmlu" in rows and "delta" in rows["aggregate_paper"]
    grid = paper_grids()
    agg = relative_gain(grid[(grid.experiment == "Llama-3.2-1B/Tulu-v2") & (grid.benchmark == "aggregate_paper")
                             & (grid.stage == "sft")])
    expected = cell_colors({(p, r): g for p, r, g, b in zip(agg.lambda_p, agg.lambda_r, agg.gain, agg.is_base) if not b})
    positions = [(p, r) for p in (0, 0.2, 0.4, 0.6, 0.8, 1.0) for r in (0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    shown = dict(zip(positions, rows["aggregate_paper"]["sft"]["c"]))
    assert {c: shown[c] for c in expected} == expected and shown[(0, 0)] == "#ffffff"
    assert "Chatterjee et al." in (out / "index.html").read_text(encoding="utf-8")


def test_compare_shows_per_cell_differences(run_dir, tmp_path, monkeypatch):
    import pandas as pd
    import pyarrow as pa

    from evalsuite.report import build_report
    from evalsuite.run.records import RESULTS_TYPES, schema, write_parquet

    no_figures(monkeypatch)
    other = tmp_path / "other"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("report", "checkpoints", "requests.sqlite"))
    results = pd.read_parquet(other / "results.parquet")
    bump = (results.checkpoint == "sft/lp1_lr1") & (results.metric == "score") & (results.condition == "clean")
    results.loc[bump, "value"] = results.loc[bump, "value"] + 0.125
    write_parquet(other / "results.parquet", pa.Table.from_pandas(results, schema=schema(RESULTS_TYPES),
                                                                  preserve_index=False))
    n_less = (results.checkpoint == "sft/lp0.5_lr1") & (results.metric == "score") & (results.condition == "clean")
    results.loc[n_less, "n"] = 5  # the other run scored fewer items on that cell
    write_parquet(other / "results.parquet", pa.Table.from_pandas(results, schema=schema(RESULTS_TYPES),
                                                                  preserve_index=False))
    record = json.loads((other / "run.json").read_text())
    record["settings"]["seed"] = 12345
    (other / "run.json").write_text(json.dumps(record))
    out = build_report([run_dir], tmp_path / "r", compare=other).parent
    compare = load_data(out)["compare"]
    (exp,) = compare["experiments"]
    assert exp["kind"] == "compare" and exp["stages"] == ["sft", "dpo"]
    sft = {r["b"]: r["g"] for r in exp["views"]["clean"]["score"]}["mmlu"]["sft"]
    positions = [(p, r) for p in (0.0, 0.5, 1.0) for r in (0.0, 1.0)]
    shown = {pos: v for pos, v in zip(positions, sft["v"]) if v is not None}
    assert shown == {(0.0, 0.0): "0.00", (0.0, 1.0): "0.00", (0.5, 1.0): "0.00", (1.0, 1.0): "12.50"}
    # a cell over other items (n 6 vs 5) is hatched and says so; the others are not
    at = positions.index((0.5, 1.0))
    assert sft["f"][at] & 32 and "n: this run 6, other run 5 (differ" in sft["t"][at]
    assert not sft["f"][positions.index((1.0, 1.0))] & 32
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Comparison" in page and "n (this)" in page and "unscored (other)" in page
    assert re.search(r"--compare other was run with other settings than run \(seed \d+ vs 12345\)", page)


# --- several runs, paths, the output folder -----------------------------------------------------------------------

def _second_run(run_dir: Path, dst: Path) -> None:
    """A copy of the run as another experiment (its base model evaluated too), whose sft/lp1_lr1 has 2 unscored
    clean items and p = 0.0123 against (0, 1): checkpoint names repeat across the two runs."""
    import pandas as pd
    import pyarrow as pa

    from evalsuite.run.records import RESULTS_TYPES, schema, write_parquet

    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("report", "checkpoints", "requests.sqlite"))
    results = pd.read_parquet(dst / "results.parquet")
    results["experiment"] = results["experiment"].where(results["experiment"] == "", results["experiment"] + "-b")
    unit = (results.checkpoint == "sft/lp1_lr1") & (results.condition == "clean")
    results.loc[unit & (results.metric == "unscored"), "value"] = 2
    results.loc[unit & (results.metric == "mcnemar_p_vs_0_1"), "value"] = 0.0123
    write_parquet(dst / "results.parquet", pa.Table.from_pandas(results, schema=schema(RESULTS_TYPES),
                                                                preserve_index=False))


def test_two_runs_side_by_side_each_cell_from_its_own_run(run_dir, tmp_path, monkeypatch):
    from evalsuite.report import build_report

    no_figures(monkeypatch)
    first, second = tmp_path / "a" / "run", tmp_path / "b" / "run"
    shutil.copytree(run_dir, first, ignore=shutil.ignore_patterns("report", "checkpoints", "requests.sqlite"))
    _second_run(run_dir, second)
    out = build_report([first, second], tmp_path / "r").parent  # both evaluated the base model: no error
    data = load_data(out)
    exps = {e["key"]: e for e in data["experiments"]}
    (key_a,) = [k for k in exps if not k.endswith("-b")]
    positions = [(p, r) for p in (0.0, 0.5, 1.0) for r in (0.0, 1.0)]
    at = positions.index((1.0, 1.0))
    tips = {k: {r["b"]: r["g"] for r in e["views"]["clean"]["score"]}["mmlu"]["sft"]["t"][at] for k, e in exps.items()}
    flags = {k: {r["b"]: r["g"] for r in e["views"]["clean"]["score"]}["mmlu"]["sft"]["f"][at] for k, e in exps.items()}
    assert "missing=2" in tips[key_a + "-b"] and "p = 0.012" in tips[key_a + "-b"] and flags[key_a + "-b"] & 32
    assert "missing=0" in tips[key_a] and "p = 1)" in tips[key_a] and not flags[key_a] & 32
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "#1 run" in page and "#2 run" in page and str(tmp_path) not in page  # named by folder, not by path
    assert (out / "items-run2").is_dir()
    import pandas as pd

    status = pd.read_csv(out / "figures" / "status.csv")  # keyed by (run, checkpoint): names repeat across runs
    assert status.groupby("run").size().to_dict() == {"#1 run": 7, "#2 run": 7}


def test_same_bytes_however_the_run_path_is_typed_and_fallback_without_fork(run_dir, tmp_path, monkeypatch):
    import multiprocessing

    import evalsuite.report.html as html
    from evalsuite.report import build_report
    from evalsuite.report.encoding import BEST_MARKER_COLOR, SFT_BEST_MARKER_COLOR

    no_figures(monkeypatch)
    monkeypatch.chdir(run_dir.parent)
    build_report([run_dir], tmp_path / "abs")
    monkeypatch.setattr(html, "AUTO_TEXTS_MAX_BYTES", -1)  # as if items.parquet were over the threshold
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])  # no fork: drawn in-process
    build_report([Path("./run"), Path("run")], tmp_path / "rel")  # one folder, given twice, typed differently
    monkeypatch.setattr(html, "AUTO_TEXTS_MAX_BYTES", 256 * 2**20)
    build_report([Path("run")], tmp_path / "rel2")
    assert digests(tmp_path / "abs") == digests(tmp_path / "rel2")
    assert (tmp_path / "rel" / "figures" / "status.csv").is_file()  # the figures' folder, written in this process
    page = (tmp_path / "rel" / "index.html").read_text(encoding="utf-8")
    assert "responses and judge outputs left out: items.parquet is" in page and "--item-texts all" in page
    assert "left out" not in (tmp_path / "abs" / "index.html").read_text(encoding="utf-8")
    # the page's best / SFT-best markers are the figures' colours
    css = (tmp_path / "abs" / "report.css").read_text(encoding="utf-8")
    assert f"--best: {BEST_MARKER_COLOR};" in css and f"--sft-best: {SFT_BEST_MARKER_COLOR};" in css
    assert not re.search(r"#e00000|#1f3cff", css)


def test_out_folder_that_is_not_a_report_is_refused(run_dir, tmp_path, monkeypatch):
    from evalsuite.errors import ConfigError
    from evalsuite.report import build_report

    no_figures(monkeypatch)
    foreign = tmp_path / "mine"
    (foreign / "figures").mkdir(parents=True)
    (foreign / "figures" / "thesis.pdf").write_text("mine")
    with pytest.raises(ConfigError, match="not an evalsuite report folder") as err:
        build_report([run_dir], foreign)
    assert "\n" not in str(err.value) and (foreign / "figures" / "thesis.pdf").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("kept")
    build_report([run_dir], other)  # nothing of the report's there: written beside it
    assert (other / "notes.txt").read_text() == "kept" and (other / ".evalsuite-report").is_file()
    build_report([run_dir], other)  # its own report: replaced


def test_run_keeps_its_outcome_when_the_report_raises_anything(tmp_path, monkeypatch, capsys):
    import evalsuite.report as report
    from evalsuite.cli.run import write_report

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report, "build_report", boom)
    write_report(tmp_path)  # no exception
    assert "report not written" in capsys.readouterr().out
