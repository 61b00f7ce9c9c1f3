"""`build_report`: run folders → an offline HTML report (index.html and what it links), byte-identical on a re-run.

    OUT/index.html        the page (Jinja2, autoescaped): heatmap controls, tables, provenance, links
    OUT/index.data.js     window.EVALSUITE_DATA = {...}: every heatmap precomputed (report/data.py)
    OUT/report.css, .js   the page's style and its small drawing script (no library, no CDN)
    OUT/figures/          paper-style figures (SVG, PDF, PNG) and every table as CSV and LaTeX
    OUT/items/            per-task item pages (report/items.py)

The page needs no server and no network: data comes in `<script src>` files beside it (a `fetch()` of JSON is
refused from file://), and nothing refers to another host. The report owns those names in OUT: they are built
in a staging folder and moved into place together, so a failed build leaves the previous report whole and a
re-run leaves no stale figure behind; anything else in OUT is left alone. OUT/.evalsuite-report marks a
report folder: a non-empty OUT without it that holds one of those names is refused, never overwritten.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

    from evalsuite.run.records import RunTables

OWNED = ("index.html", "index.data.js", "report.css", "report.js", "figures", "items")
STATIC = ("report.css", "report.js")
# written in every folder build_report writes: only a folder holding it (or none of OWNED) is replaced
MARKER = ".evalsuite-report"
MARKER_TEXT = ("An evalsuite report folder: `evalsuite report` replaces index.html, index.data.js, report.css, "
               "report.js, figures/, items/ and items-run*/ here on every build.\n")
# run.json settings that make two runs' cells comparable: a --compare across differing ones says so
COMPARED_SETTINGS = ("benchmarks", "kinds", "variants", "limit", "seed")


@dataclass
class TextCell:
    """One table cell as shown: its text, a CSS class (numbers, statuses), a tooltip."""

    text: str
    cls: str = ""
    title: str = ""


@dataclass
class TableBlock:
    """A table as the page shows it: plain strings (the template escapes them)."""

    id: str
    title: str
    columns: list[str]
    rows: list[list[TextCell]]
    caption: str = ""
    collapsed: bool = False
    empty: str = ""


@dataclass
class Inputs:
    """What a report is built from, read and checked before anything is written."""

    runs: list["RunTables"]
    frame: "pd.DataFrame"
    # what the page and tables call each run: its folder's name (#index and name where two names collide); never
    # the path as typed, so the bytes do not depend on how it was given
    labels: list[str] = field(default_factory=list)
    paper_key: str | None = None
    paper_frame: "pd.DataFrame | None" = None
    compare: "RunTables | None" = None
    compare_frame: "pd.DataFrame | None" = None
    compare_label: str = ""
    warnings: list[str] = field(default_factory=list)


ItemTexts = Literal["auto", "all", "none"]
# `auto` keeps the model's responses and judge outputs in the item pages unless a run's items.parquet is larger
# than this: at the paper's full scale they are ~2.4 GB of text, most of the report's time and size
AUTO_TEXTS_MAX_BYTES = 256 * 2**20


def build_report(run_dirs: Sequence[Path], out: Path, paper: str | None = None, compare: Path | None = None,
                 item_texts: ItemTexts = "auto") -> Path:
    """Write the report of `run_dirs` (experiments side by side, never pooled) to `out`; returns index.html.

    `paper`: "MODEL:DATASET", the WIT paper's published grid for that setting drawn beside the user's with the
    same encoding (ConfigError listing the settings for an unknown one). `compare`: another run folder of the
    same grid; the report adds its per-cell differences. `item_texts`: whether item pages carry the responses and
    judge outputs (`auto`: unless a run's items.parquet exceeds `AUTO_TEXTS_MAX_BYTES`; the pages then say where
    the texts are). Raises ConfigError for a folder that is not a run folder or was written by an older
    evalsuite."""
    from evalsuite.paths import ensure_output_dir

    inputs = read_inputs(run_dirs, paper, compare)
    check_out(Path(out).expanduser())
    out = ensure_output_dir(Path(out), "--out")
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))  # beside its destination: moves are renames
    try:
        write_report(inputs, staging, item_texts)
        (staging / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        stale = {p.name for p in out.glob("items-run*")}  # item pages of a run no longer in the report
        for name in sorted(set(OWNED) | stale | {p.name for p in staging.iterdir()}):
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            if (staging / name).exists():
                (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def check_out(out: Path) -> None:
    """ConfigError (one line) for an --out that is not empty, lacks the report's marker and holds a name the report
    would replace: a folder that is not a report is never overwritten."""
    from evalsuite.errors import ConfigError

    if not out.is_dir() or (out / MARKER).exists():
        return
    clash = sorted(n for n in (p.name for p in out.iterdir()) if n in OWNED or n.startswith("items-run"))
    if clash:
        raise ConfigError(f"--out {out} is not an evalsuite report folder (no {MARKER}) and holds "
                          f"{', '.join(clash)}, which the report would replace: choose an empty or new folder")


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Each run folder's name; where two names collide, "#i name" (i: its place in the list, from 1)."""
    names = [p.name or str(p) for p in paths]
    return [n if names.count(n) == 1 else f"#{i + 1} {n}" for i, n in enumerate(names)]


def read_inputs(run_dirs: Sequence[Path], paper: str | None, compare: Path | None) -> Inputs:
    """The runs' tables and grid frames (ConfigError for anything unreadable), before any output is touched."""
    from evalsuite.analysis import paper_grids, paper_setting
    from evalsuite.errors import ConfigError
    from evalsuite.run.records import read_run

    if not run_dirs:
        raise ConfigError("give at least one run folder (the --out folder of `evalsuite run`)")
    paper_key = paper_setting(paper) if paper else None
    paths = list(dict.fromkeys(Path(d).expanduser().resolve() for d in run_dirs))  # one folder given twice: once
    runs = [read_run(p, item_columns=[]) for p in paths]
    labels = run_labels(paths)
    frame = run_frame([r.results for r in runs])
    inputs = Inputs(runs=runs, frame=frame, labels=labels, paper_key=paper_key)
    if paper_key:
        grids = paper_grids()
        inputs.paper_frame = grids[grids["experiment"] == paper_key]
    if compare is not None:
        other_path = Path(compare).expanduser().resolve()
        other = read_run(other_path, item_columns=[])
        other_frame = run_frame([other.results])
        common = sorted(set(frame["experiment"]) & set(other_frame["experiment"]))
        if not common:
            raise ConfigError(f"--compare {compare} has no experiment in common with the report's runs (theirs: "
                              f"{', '.join(sorted(set(other_frame['experiment']))) or 'none'}; these: "
                              f"{', '.join(sorted(set(frame['experiment']))) or 'none'}): compare two runs of one grid")
        inputs.compare, inputs.compare_frame = other, other_frame
        other_name = other_path.name if other_path.name not in labels else f"{other_path.name} (--compare)"
        inputs.compare_label = f"{other_name} − {', '.join(labels)}"
        inputs.warnings += settings_warnings(runs, labels, other, other_name)
    if frame.empty:
        inputs.warnings.append("no checkpoint of these runs sits on a λ grid (no manifest with a cell): there are "
                               "no heatmaps, only the tables below")
    for run, label in zip(runs, labels):
        if run.run.get("state") not in (None, "finished"):
            inputs.warnings.append(f"run {label} is {run.run.get('state')}: its tables are partial")
    return inputs


def settings_warnings(runs: Sequence["RunTables"], labels: Sequence[str], other: "RunTables",
                      other_name: str) -> list[str]:
    """A warning per report run whose run.json settings (COMPARED_SETTINGS) differ from the --compare run's: its
    differences then mix the change under study with a different evaluation."""
    theirs = other.run.get("settings", {}) or {}
    out = []
    for run, label in zip(runs, labels):
        ours = run.run.get("settings", {}) or {}
        differ = [f"{k} {_setting(ours.get(k))} vs {_setting(theirs.get(k))}" for k in COMPARED_SETTINGS
                  if ours.get(k) != theirs.get(k)]
        if differ:
            out.append(f"--compare {other_name} was run with other settings than {label} ({'; '.join(differ)}): "
                       "its differences are not only the checkpoints'")
    return out


def _setting(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def run_frame(results: Sequence["pd.DataFrame"]) -> "pd.DataFrame":
    """The grid frame of runs' results tables (`grid_from_runs`: each run read on its own, experiments side by
    side) with the aggregates, except where an experiment's aggregate has no value in any cell (a run without
    all five benchmarks): an all-"n/a" grid says nothing, and the paper's aggregate is only defined over the
    five."""
    from evalsuite.analysis import grid_from_runs, with_aggregates

    frame = with_aggregates(grid_from_runs(list(results)))
    aggregate = frame["benchmark"].isin(["aggregate_paper", "mean"])
    has_value = frame["value"].notna().groupby([frame["experiment"], frame["benchmark"]]).transform("any")
    return frame[~aggregate | has_value].reset_index(drop=True)


def write_report(inputs: Inputs, out: Path, item_texts: ItemTexts = "auto") -> None:
    """Every file of the report into `out` (an empty folder). The figures are drawn in a process of their own
    while the item pages are written (both are CPU-bound and independent: the report takes the longer of the two,
    not their sum)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from evalsuite.report.data import Source, compare_frame, report_payload, to_script

    for name in STATIC:
        (out / name).write_bytes(_static(name))
    tables = report_tables(inputs)
    inputs.warnings += [f"{label}: {note}" if len(inputs.runs) > 1 else note
                        for label, note in zip(inputs.labels, texts_notes(inputs, item_texts))
                        if note and item_texts == "auto"]
    # fork, not spawn (spawn would run the caller's main script again); drawn in this process where no pool starts
    pool, figures, files = None, None, None
    if "fork" in multiprocessing.get_all_start_methods():
        try:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
            figures = pool.submit(write_figures, inputs, tables, out / "figures")
        except (BrokenProcessPool, OSError, RuntimeError):
            figures = None
    try:
        items, pages = write_items(inputs, out, item_texts)
        if figures is not None:
            try:
                files = figures.result()
            except BrokenProcessPool:  # the process was lost (killed, out of memory): drawn here instead
                files = None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if files is None:
        shutil.rmtree(out / "figures", ignore_errors=True)
        files = write_figures(inputs, tables, out / "figures")
    sources = [Source(inputs.frame, "run", pages=pages)]
    if inputs.paper_frame is not None:
        sources.append(Source(inputs.paper_frame, "paper", "WIT paper: "))
    compare_source = None
    if inputs.compare_frame is not None:
        compare_source = Source(compare_frame(compared(inputs)), "compare", "Δ ")
    payload = report_payload(sources, compare_source, inputs.compare_label)
    (out / "index.data.js").write_text(to_script(payload), encoding="utf-8")
    context = page_context(inputs, tables, files, items)
    (out / "index.html").write_text(render("index.html.j2", context), encoding="utf-8")


def compared(inputs: Inputs) -> "pd.DataFrame":
    """`analysis.compare_runs` of the report's grid (a) and the --compare run's (b) over their common
    experiments, with each side's n, failed and missing (`n_a`, `n_b`, ...) so a difference over other items or
    with failures is flagged."""
    from evalsuite.analysis import compare_runs
    from evalsuite.analysis.frame import KEY_COLUMNS

    a, b = inputs.frame, inputs.compare_frame
    assert b is not None
    diff = compare_runs(a, b)
    diff = diff[diff["experiment"].isin(set(a["experiment"]) & set(b["experiment"]))]
    extra = [c for c in ("n", "failed", "missing") if c in a.columns and c in b.columns]
    for side, frame in (("a", a), ("b", b)):
        part = frame[KEY_COLUMNS + extra].drop_duplicates(KEY_COLUMNS)
        diff = diff.merge(part.rename(columns={c: f"{c}_{side}" for c in extra}), on=KEY_COLUMNS, how="left")
    return diff.reset_index(drop=True)


def _static(name: str) -> bytes:
    from importlib.resources import files

    return files("evalsuite.report").joinpath("static", name).read_bytes()


def render(template: str, context: Mapping[str, Any]) -> str:
    """A package template, autoescaped (every name, prompt and answer is text, never markup)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("evalsuite.report", "templates"), autoescape=select_autoescape(
        enabled_extensions=("html", "j2"), default_for_string=True, default=True), undefined=StrictUndefined,
        keep_trailing_newline=True, trim_blocks=False)
    return env.get_template(template).render(**context)


# --- figures, tables, item pages -------------------------------------------------------------------------------

def write_figures(inputs: Inputs, tables: Mapping[str, "pd.DataFrame"], folder: Path) -> list[str]:
    """The paper-style figures (per experiment, and the PLW view across them) and every table as CSV and LaTeX,
    in `folder`; returns the file names written, sorted."""
    import pandas as pd

    from evalsuite.report.figures import paper_figures
    from evalsuite.report.tables import write_tables

    folder.mkdir(parents=True, exist_ok=True)
    frames = [inputs.frame] + ([inputs.paper_frame] if inputs.paper_frame is not None else [])
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else inputs.frame
    paper_figures(frame, folder)
    write_tables(tables, folder)
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def report_tables(inputs: Inputs) -> dict[str, "pd.DataFrame"]:
    """The tables of the report, by file stem (tables.report_tables), with the paper's grid alongside the
    user's where asked (its experiment is named so) and the comparison's per-cell differences."""
    import pandas as pd

    from evalsuite.report.tables import provenance_table, report_tables as build

    frame = inputs.frame
    if inputs.paper_frame is not None:
        frame = pd.concat([frame, inputs.paper_frame.assign(experiment="WIT paper: " + inputs.paper_frame["experiment"])],
                          ignore_index=True)
    # a `run` column: checkpoint names are only unique within a run, so the status table is keyed by both
    results = pd.concat([r.results.assign(run=label) for r, label in zip(inputs.runs, inputs.labels)],
                        ignore_index=True)
    tables = build(frame, results, provenance_rows(inputs))
    tables["benchmarks"] = provenance_table(benchmark_rows(inputs))
    if inputs.compare_frame is not None:
        tables["compare"] = compare_table(inputs)
    return tables


def compare_table(inputs: Inputs) -> "pd.DataFrame":
    """Clean scores of every cell in both runs and their difference (other − this), cells one run lacks kept,
    with each side's n and failed / unscored items (a difference over other items is not like for like)."""
    from evalsuite.analysis.frame import benchmark_order
    from evalsuite.report.tables import benchmark_label

    diff = compared(inputs)
    diff = diff[(diff["condition"] == "clean") & (diff["metric"] == "score")]
    diff = diff.assign(_b=diff["benchmark"].map(lambda b: benchmark_order(b)))
    diff = diff.sort_values(["experiment", "stage", "_b", "lambda_p", "lambda_r"], kind="stable")
    columns = ["experiment", "stage", "benchmark", "lambda_p", "lambda_r", "value_a", "value_b", "diff", "present"]
    columns += [f"{c}_{s}" for c in ("n", "failed", "missing") for s in ("a", "b") if f"{c}_{s}" in diff.columns]
    out = diff[columns]
    out = out.assign(benchmark=out["benchmark"].map(benchmark_label))
    names = {"value_a": "this run", "value_b": "other run", "diff": "other − this"}
    names.update({f"{c}_{s}": f"{label} {side}" for c, label in (("n", "n"), ("failed", "failed"),
                                                                 ("missing", "unscored"))
                  for s, side in (("a", "(this)"), ("b", "(other)"))})
    return out.rename(columns=names).round(3)


def provenance_rows(inputs: Inputs) -> list[dict[str, Any]]:
    """One row per checkpoint of every run: how it was evaluated (backend, dtype, prompt format, judge, decoding,
    data source and BBH source, library versions) and what it is (lineage, training data and metrics, weights
    fingerprint)."""
    rows: list[dict[str, Any]] = []
    for run, label in zip(inputs.runs, inputs.labels):
        settings = run.run.get("settings", {}) or {}
        backend = settings.get("backend", {}) or {}
        options = settings.get("options", {}) or {}
        judges = {name: opts.get("judge") for name, opts in sorted(options.items()) if opts.get("judge")}
        common = {"run": label, "backend": backend.get("kind", "hf"), "dtype": backend.get("dtype", "auto"),
                  "judge": judges or "", "backend options": {k: v for k, v in sorted(backend.items())
                                                              if k not in ("kind", "dtype", "model")},
                  "data": settings.get("data") or "",
                  "perturbation": {k: settings.get(k) for k in ("kinds", "variants", "severity", "seed", "posix",
                                                                "paraphraser")},
                  "versions": run.run.get("versions", {})}
        for ck in run.checkpoints.to_dict("records"):
            text = {k: _text(ck.get(k)) for k in ("checkpoint", "experiment", "stage", "prompt_format", "base_model",
                                                  "parent", "dataset", "dataset_fingerprint", "fingerprint", "problem")}
            rows.append({"checkpoint": text["checkpoint"], "experiment": text["experiment"], "stage": text["stage"],
                         "cell": _cell_text(ck.get("lambda_p"), ck.get("lambda_r")),
                         "prompt_format": text["prompt_format"], "base_model": text["base_model"],
                         "parent": text["parent"], "dataset": text["dataset"],
                         "dataset_fingerprint": text["dataset_fingerprint"][:16], "final_loss": ck.get("final_loss"),
                         "reward_accuracy": ck.get("reward_accuracy"), "reward_margin": ck.get("reward_margin"),
                         "fingerprint": text["fingerprint"], "problem": text["problem"], **common})
    return rows


def benchmark_rows(inputs: Inputs) -> list[dict[str, Any]]:
    """One row per run × task: what its score is (metric and filter, scale) and how it was asked: the benchmark's
    settings (decoding: max_new_tokens, few-shot, variant) and where its items came from (data, `bbh_source`),
    as the run recorded them in its per-checkpoint results files."""
    import glob
    import json

    rows: list[dict[str, Any]] = []
    for run, label in zip(inputs.runs, inputs.labels):
        results = run.results[run.results["metric"] == "score"]
        scored = results.drop_duplicates("task").set_index("task")
        for task in sorted(set(run.results["task"].dropna()) - {"all"}):
            found = sorted((run.path / "checkpoints").glob(f"**/results_{glob.escape(task)}.json"))
            config: dict[str, Any] = {}
            if found:
                try:
                    config = json.loads(found[0].read_text(encoding="utf-8")).get("config", {}) or {}
                except (OSError, ValueError):
                    config = {}
            bench = dict(config.get("benchmark") or {})
            source = {k: bench.pop(k) for k in sorted(bench) if k.endswith("_source")}
            row = scored.loc[task] if task in scored.index else None
            rows.append({"run": label, "task": task,
                         "score": _text(row["score_metric"]) if row is not None else "",
                         "scale": _text(row["scale"]) if row is not None else "",
                         "settings": bench, "data": _text(config.get("data")),
                         "bbh_source": source.get("bbh_source", ""),
                         "other sources": {k: v for k, v in source.items() if k != "bbh_source"} or ""})
    return rows


def _text(value: Any) -> str:
    """A table's text value; missing (None, or NaN where pandas filled one) as ""."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _cell_text(p: Any, r: Any) -> str:
    try:
        return "" if p is None or r is None or math.isnan(p) or math.isnan(r) else f"({float(p):g}, {float(r):g})"
    except TypeError:
        return ""


def items_bytes(run: "RunTables") -> int:
    items = Path(run.path) / "items.parquet"
    parts = [items] if items.is_file() else list(items.glob("*.parquet"))
    return sum(p.stat().st_size for p in parts)


def with_texts(run: "RunTables", item_texts: ItemTexts) -> bool:
    if item_texts != "auto":
        return item_texts == "all"
    return items_bytes(run) <= AUTO_TEXTS_MAX_BYTES


def texts_notes(inputs: Inputs, item_texts: ItemTexts) -> list[str]:
    """Per run: why its item pages lack the responses and judge outputs ("" where they have them)."""
    notes = []
    for run in inputs.runs:
        if with_texts(run, item_texts):
            notes.append("")
        elif item_texts == "none":
            notes.append("responses and judge outputs left out (--item-texts none)")
        else:
            notes.append(f"responses and judge outputs left out: items.parquet is {items_bytes(run) / 2**20:.0f} MB; "
                         "`evalsuite report --item-texts all` includes them")
    return notes


def write_items(inputs: Inputs, out: Path,
                item_texts: ItemTexts = "auto") -> tuple[list[dict[str, str]], dict[str, dict[str, str]]]:
    """Each run's per-task item pages (items/ for the first run, items-runN/ for the others, so two runs'
    checkpoints of the same name never mix). Returns the links the index lists, and per experiment the page of
    each benchmark's task (heatmap cells open it on their checkpoint)."""
    from evalsuite.report.items import write_item_pages

    links: list[dict[str, str]] = []
    by_experiment: dict[str, dict[str, str]] = {}
    notes = texts_notes(inputs, item_texts)
    for i, run in enumerate(inputs.runs):
        folder = "items" if i == 0 else f"items-run{i + 1}"
        # read per checkpoint from the run folder
        pages = write_item_pages(run, out, folder=folder, texts=with_texts(run, item_texts))
        prefix = f"{inputs.labels[i]}: " if len(inputs.runs) > 1 else ""
        links += [{"href": href, "label": f"{prefix}{task}", "note": notes[i]} for task, href in sorted(pages.items())]
        results = run.results[run.results["task"].isin(list(pages))]
        for experiment, benchmark, task in sorted(set(zip(results["experiment"].fillna(""), results["benchmark"],
                                                          results["task"]))):
            by_experiment.setdefault(experiment, {}).setdefault(benchmark, pages[task])
    return links, by_experiment


# --- the page ----------------------------------------------------------------------------------------------------

TABLE_TITLES = {
    "table2_optimum": ("Optimum per benchmark (the paper's Table 2)",
                       "SFT grids, clean score: the best (λp, λr) of each benchmark (all ties listed) and its relative "
                       "gain over IT (0, 1)."),
    "table1_gains": ("Relative gains over IT (the paper's Tables 1 and 3)",
                     "Per experiment and benchmark: gain (%) of the best SFT cell over the (0, 1) cell."),
    "table3_dpo": ("DPO plasticity on the aggregate (the paper's Table 3)",
                   "DPO on (0, 1) against the best post-DPO cell, and DPO on the SFT-best cell (first in row-major "
                   "order on ties); the last row is the mean over experiments."),
    "plasticity": ("DPO plasticity per benchmark", "The same figures for each benchmark with SFT and DPO grids."),
    "robustness": ("Robustness summary", "Per cell, benchmark and perturbation kind: agreement, correct → wrong, "
                   "wrong → correct, drop rate (%), worst cases (score scale), POSIX."),
}
RUN_COLUMNS = ("run", "backend", "dtype", "judge", "backend options", "data", "perturbation", "versions")
COLLAPSE_ROWS = 40


STATUS_KEYS = ("run", "experiment", "stage", "lambda_p", "lambda_r", "checkpoint")  # the status table's non-task columns


def table_block(name: str, df: "pd.DataFrame", title: str, caption: str = "", status: bool = False) -> TableBlock:
    """A DataFrame as page text: numbers with the table's decimals (tables.py's attrs), missing as "–", status
    cells (a status table's task columns) classed so failed and skipped stand out."""
    from evalsuite.report.tables import TABLE_DECIMALS_ATTR

    decimals = df.attrs.get(TABLE_DECIMALS_ATTR, {})
    columns = [str(c) for c in df.columns]
    is_status = [status and c not in STATUS_KEYS for c in columns]
    rows = []
    for record in df.itertuples(index=False):
        rows.append([_table_cell(v, decimals.get(c, 2), st) for c, v, st in zip(columns, record, is_status)])
    return TableBlock(id=f"t-{name}", title=title, caption=caption, columns=columns, rows=rows,
                      collapsed=len(rows) > COLLAPSE_ROWS)


def _table_cell(value: Any, decimals: int, status: bool) -> TextCell:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return TextCell("–", "num")
    if isinstance(value, bool):
        return TextCell(str(value))
    if isinstance(value, int) or (hasattr(value, "is_integer") and isinstance(value, float) and decimals == 0):
        return TextCell(str(value), "num")
    if isinstance(value, float):
        return TextCell(f"{value:.{decimals}f}", "num")
    text = str(value)
    if status:
        if text.startswith("failed"):
            return TextCell(text, "st-failed")
        if text.startswith("skipped"):
            return TextCell(text, "st-skipped")
        if not text:
            return TextCell("not evaluated", "st-missing")
    return TextCell(text)


def page_context(inputs: Inputs, tables: Mapping[str, "pd.DataFrame"], files: Sequence[str],
                 items: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    from evalsuite.analysis import PAPER_CITATION
    from evalsuite.report.encoding import MISSING_FILL, NOT_SIGNIFICANT_LEGEND

    blocks = [table_block(name, tables[name], *TABLE_TITLES[name]) for name in TABLE_TITLES if name in tables]
    provenance = []
    if "status" in tables:
        provenance.append(table_block("status", tables["status"], "Status of every checkpoint × task",
                                      "ok, failed (with why) or skipped, from the run's records: nothing lost is hidden.",
                                      status=True))
    if "provenance" in tables:
        prov = tables["provenance"]
        run_cols = [c for c in RUN_COLUMNS if c in prov.columns]
        runs = prov[run_cols].drop_duplicates()
        provenance.append(table_block("runs", runs, "How each run evaluated",
                                      "Backend and its options, dtype, judges (model, endpoint kind, decoding), "
                                      "benchmark data, perturbation settings, library versions."))
    if "benchmarks" in tables:
        provenance.append(table_block("benchmarks", tables["benchmarks"], "Benchmarks as evaluated",
                                      "Per task: the score's metric and filter and its scale, the benchmark's settings "
                                      "(decoding, few-shot), the data and where BBH came from (bbh_source)."))
        provenance.append(table_block("checkpoints", prov[[c for c in prov.columns if c not in RUN_COLUMNS[1:]]],
                                      "Checkpoints", "Lineage, training data and metrics (final loss; DPO reward "
                                      "accuracy and margin), prompt format as evaluated, weights fingerprint."))
    compare = None
    if inputs.compare is not None:
        compare = {"label": inputs.compare_label,
                   "tables": [table_block("compare", tables["compare"], "Clean scores per cell in both runs",
                                          "Cells only one run has are kept (present: a_only / b_only); n, failed and "
                                          "unscored items of each side: a difference over other items or with "
                                          "failures is not like for like.")]}
    experiments = sorted(set(inputs.frame["experiment"]))
    return {
        "title": "evalsuite report" + (f": {', '.join(experiments[:3])}{' …' if len(experiments) > 3 else ''}"
                                       if experiments else ""),
        "runs": [{"name": label, "summary": run_summary(r), "judged": missing_judged(r)}
                 for r, label in zip(inputs.runs, inputs.labels)],
        "paper": {"setting": inputs.paper_key, "citation": PAPER_CITATION} if inputs.paper_key else None,
        "warnings": inputs.warnings, "compare": compare,
        "plw": "figures/plw.svg" if "plw.svg" in files else None,
        "tables": blocks, "provenance": provenance, "items": list(items),
        "files": [f"figures/{f}" for f in files],
        "not_significant_legend": NOT_SIGNIFICANT_LEGEND, "missing_fill": MISSING_FILL,
    }


def run_summary(run: "RunTables") -> str:
    """One line: checkpoints, tasks, conditions and failures of a run."""
    results = run.results
    status = results[(results["metric"] == "status") & (results["condition"] == "all")]
    failed = int(status["status"].fillna("").str.startswith("failed").sum())
    tasks = sorted(set(results["task"].dropna()))
    conditions = sorted(set(results["condition"].dropna()) - {"all"}, key=lambda c: (c != "clean", c))
    limit = (run.run.get("settings", {}) or {}).get("limit")
    size = f"at most {limit} item{'s' if limit != 1 else ''} per subset (limit)" if limit else "every item"
    return (f"{results['checkpoint'].nunique()} checkpoints; tasks {', '.join(tasks) or 'none'}; {size}; conditions "
            f"{', '.join(conditions) or 'none'}; {failed} checkpoint × task failed; state {run.run.get('state', '?')}")


def missing_judged(run: "RunTables") -> dict[str, str] | None:
    """The judged benchmarks (MT-Bench, AlpacaEval) a run left out and the flags that add them: they need a real
    judge model (a small local one gives noise, not a score)."""
    from evalsuite.benchmarks.registry import BENCHMARKS
    from evalsuite.report.tables import benchmark_label

    asked = {str(b).split(":")[0] for b in (run.run.get("settings", {}) or {}).get("benchmarks", [])}
    missing = sorted(name for name, cls in BENCHMARKS.items() if cls.needs_judge and name not in asked)
    if not missing:
        return None
    return {"names": " and ".join(benchmark_label(m) for m in missing), "plural": len(missing) > 1,
            "command": f"evalsuite run --benchmarks …,{','.join(missing)} --judge-model NAME --judge-base-url URL "
                       "--judge-api-key-env VAR"}
