"""The report's tables as presentation DataFrames, and their CSV + LaTeX files.

Each function turns an analysis output (a grid frame, or rows the report already holds) into a small table a
reader or a paper can use directly: the paper's Table 2 (optimal (λp, λr) per benchmark and its gain over IT),
Table 1-style relative gains, Table 3 (DPO on (0, 1) vs the best post-DPO cell), DPO plasticity per benchmark,
the robustness summary, and provenance/status. Numbers stay numeric (rounded to the precision they are shown
with: 2 decimals, POSIX 3) so the CSVs are machine-readable; cells are written "(λp, λr)", ties joined by "; ".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from evalsuite.report.encoding import Cell

ROBUSTNESS_COLUMNS = ("agreement", "correct_to_wrong", "wrong_to_correct", "performance_drop_rate",
                      "worst_case_perturbed", "worst_case_with_clean", "posix")
"""Robustness summary columns, in this order (those present in the frame)."""

TABLE_DECIMALS_ATTR = "decimals"
"""``DataFrame.attrs`` key: {column: decimals} used when writing LaTeX (default 2)."""


# ---- small formatting helpers ------------------------------------------------------------------------------


def format_cell(cell: Optional["Cell"]) -> str:
    """(0.2, 1.0) → "(0.2, 1)"; None → ""."""
    if cell is None:
        return ""
    return f"({float(cell[0]):g}, {float(cell[1]):g})"


def format_cells(cells: Optional[Iterable["Cell"]]) -> str:
    """Tied cells in row-major order, "; "-joined."""
    return "; ".join(format_cell(c) for c in (cells or []))


BENCHMARK_LABELS = {"mmlu": "MMLU", "bbh": "BBH", "alpacaeval": "AlpacaEval", "ifeval": "IFEval",
                    "mtbench": "MT-Bench", "all": "All benchmarks"}
"""Display names of the benchmark keys (the aggregates' come from ``analysis.AGGREGATE_LABELS``)."""


def benchmark_label(name: str) -> str:
    """THE display label of a benchmark key, for tables, figures and the HTML report: "mmlu" → "MMLU", …,
    "aggregate_paper" → "Paper's aggregate (=1.25× mean)" (it is 1.25× the mean: say so), "mean" → "Mean of
    five"; unknown names as is."""
    from evalsuite.analysis import AGGREGATE_LABELS

    name = str(name)
    return AGGREGATE_LABELS.get(name) or BENCHMARK_LABELS.get(name, name)


COUNT_COLUMNS = ("failed", "unscored")
"""Beside every shown value: failed units ("failed: …" statuses) and items that could not be scored."""


def _count(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


CellCounts = tuple[int, int, bool, bool]  # failed, unscored, has a finite value, is the Base cell


def _cell_counts(frame: "pd.DataFrame", stage: str, condition: str,
                 metric: str) -> dict[tuple[str, str], dict["Cell", CellCounts]]:
    """(experiment, benchmark) → cell → (failed, unscored, has a finite value, is base) for one stage,
    condition and metric."""
    rows = frame[(frame["stage"] == stage) & (frame["condition"] == condition) & (frame["metric"] == metric)]
    n = len(rows)
    failed = rows["failed"].tolist() if "failed" in rows.columns else [0] * n
    missing = rows["missing"].tolist() if "missing" in rows.columns else [0] * n
    is_base = rows["is_base"].astype(bool).tolist() if "is_base" in rows.columns else [False] * n
    out: dict[tuple[str, str], dict["Cell", CellCounts]] = {}
    for e, b, p, r, v, f, m, base in zip(rows["experiment"], rows["benchmark"], rows["lambda_p"],
                                         rows["lambda_r"], rows["value"], failed, missing, is_base):
        has = math.isfinite(_round(v, 12))
        out.setdefault((e, b), {})[(float(p), float(r))] = (int(_count(f)), int(_count(m)), has, bool(base))
    return out


def _sum_counts(grid: Mapping["Cell", CellCounts], cells: Iterable[Optional["Cell"]]) -> tuple[int, int]:
    """Failed and unscored summed over ``cells`` (each once; None and absent cells skipped)."""
    seen = {(float(c[0]), float(c[1])) for c in cells if c is not None}
    return (sum(grid[c][0] for c in seen if c in grid), sum(grid[c][1] for c in seen if c in grid))


def _cells_na(grid: Mapping["Cell", CellCounts]) -> int:
    """Trained cells of a grid without a value (failed or not scored): an optimum is over the others only."""
    return sum(1 for (_, _, has, base) in grid.values() if not has and not base)


def _round(value: Any, digits: int) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return round(v, digits) if math.isfinite(v) else math.nan


def _decimals(metric: str) -> int:
    from evalsuite.analysis import decimals_for

    return decimals_for(metric)


def _with_decimals(df: "pd.DataFrame", decimals: Mapping[str, int]) -> "pd.DataFrame":
    df.attrs[TABLE_DECIMALS_ATTR] = dict(decimals)
    return df


# ---- the tables ----------------------------------------------------------------------------------------------


def optimum_table(frame: "pd.DataFrame", stage: str = "sft", condition: str = "clean",
                  metric: str = "score") -> "pd.DataFrame":
    """The paper's Table 2: per experiment × benchmark the optimal (λp, λr) (all ties), its value with the
    failed/unscored counts of the optimal cell(s) (summed over ties), the IT (0, 1) value with its counts, the
    relative gain (%), and "cells n/a": trained cells without a value (failed, not scored), which the optimum
    could not consider. An optimum is never shown without these counts."""
    import pandas as pd

    from evalsuite.analysis import REFERENCE_CELL, optimal_cells

    opt = optimal_cells(frame, stage=stage, condition=condition, metric=metric)
    counts = _cell_counts(frame, stage, condition, metric) if len(opt) else {}
    d = _decimals(metric)
    rows = []
    for r in opt.to_dict("records"):
        grid = counts.get((r["experiment"], r["benchmark"]), {})
        failed, unscored = _sum_counts(grid, r["cells"])
        it_failed, it_unscored = _sum_counts(grid, [REFERENCE_CELL])
        rows.append({"experiment": r["experiment"], "benchmark": benchmark_label(r["benchmark"]),
                     "optimal (λp, λr)": format_cells(r["cells"]), "value": _round(r["value"], d),
                     "failed": failed, "unscored": unscored, "IT (0, 1)": _round(r["ref_value"], d),
                     "IT failed": it_failed, "IT unscored": it_unscored, "gain %": _round(r["gain"], 2),
                     "cells n/a": _cells_na(grid)})
    cols = ["experiment", "benchmark", "optimal (λp, λr)", "value", "failed", "unscored", "IT (0, 1)", "IT failed",
            "IT unscored", "gain %", "cells n/a"]
    return _with_decimals(pd.DataFrame(rows, columns=cols), {"value": d, "IT (0, 1)": d})


def gains_table(frame: "pd.DataFrame", stage: str = "sft", condition: str = "clean",
                metric: str = "score") -> "pd.DataFrame":
    """Table 1-style relative gains: one row per experiment, per benchmark (paper order, then the aggregates)
    the gain (%) of the best cell over IT (0, 1) of that stage, and beside it "<benchmark> failed" /
    "<benchmark> unscored": the counts of the cells the gain is computed from (best cell(s) and IT (0, 1)).
    Empty where a grid is missing."""
    import pandas as pd

    from evalsuite.analysis import REFERENCE_CELL, optimal_cells
    from evalsuite.analysis.frame import benchmark_order

    opt = optimal_cells(frame, stage=stage, condition=condition, metric=metric)
    if opt.empty:
        return pd.DataFrame(columns=["experiment"])
    counts = _cell_counts(frame, stage, condition, metric)
    benches = sorted(opt["benchmark"].unique().tolist(), key=benchmark_order)
    out: dict[str, dict[str, Any]] = {}
    for r in opt.to_dict("records"):
        label = benchmark_label(r["benchmark"])
        failed, unscored = _sum_counts(counts.get((r["experiment"], r["benchmark"]), {}),
                                       [*r["cells"], REFERENCE_CELL])
        row = out.setdefault(r["experiment"], {"experiment": r["experiment"]})
        row.update({f"{label} gain %": _round(r["gain"], 2), f"{label} failed": failed,
                    f"{label} unscored": unscored})
    cols = ["experiment"] + [f"{benchmark_label(b)} {k}" for b in benches for k in ("gain %", *COUNT_COLUMNS)]
    wide = pd.DataFrame([out[e] for e in sorted(out)], columns=cols)
    for c in cols[1:]:
        if not c.endswith("gain %"):
            wide[c] = wide[c].astype("Int64")  # empty (not 0) where that experiment has no such grid
    return _with_decimals(wide, {})


def dpo_table(frame: "pd.DataFrame", benchmark: str = "aggregate_paper", condition: str = "clean",
              metric: str = "score", mean_row: bool = True) -> "pd.DataFrame":
    """The paper's Table 3 (and its plasticity figures): per experiment, DPO on (0, 1), the best post-DPO
    cell(s) and value with its gain (%), the SFT-best cell (first on ties) with DPO's value there and its gain,
    and "failed"/"unscored": the counts summed over the DPO cells whose values are shown ((0, 1), the best
    cell(s), the SFT-best cell; each once) and over the SFT-best cell in the SFT grid (it chose that cell);
    a final "mean" row averages the gains over experiments (the paper's +8.01 % / +2.44 % on its grids) and
    sums the counts."""
    import pandas as pd

    from evalsuite.analysis import REFERENCE_CELL, plasticity, plasticity_summary

    table = plasticity(frame, benchmark=benchmark, condition=condition, metric=metric)
    d = _decimals(metric)
    dpo_counts = _cell_counts(frame, "dpo", condition, metric) if len(table) else {}
    sft_counts = _cell_counts(frame, "sft", condition, metric) if len(table) else {}
    rows = []
    for r in table.to_dict("records"):
        sft_best = r["sft_best_cell"]
        f_dpo, u_dpo = _sum_counts(dpo_counts.get((r["experiment"], benchmark), {}),
                                   [REFERENCE_CELL, *r["best_dpo_cells"], sft_best])
        f_sft, u_sft = _sum_counts(sft_counts.get((r["experiment"], benchmark), {}), [sft_best])
        rows.append({"experiment": r["experiment"], "DPO on (0, 1)": _round(r["dpo_ref"], d),
                     "best DPO cell(s)": format_cells(r["best_dpo_cells"]), "best DPO": _round(r["best_dpo"], d),
                     "gain best %": _round(r["gain_best"], 2), "SFT-best cell": format_cell(sft_best),
                     "DPO at SFT-best": _round(r["dpo_at_sft_best"], d),
                     "gain SFT-best %": _round(r["gain_sft_best"], 2), "failed": f_dpo + f_sft,
                     "unscored": u_dpo + u_sft})
    if mean_row and rows:
        summary = plasticity_summary(table)
        # the means leave out experiments without a gain (a missing cell): say over how many they are
        counted = sorted({summary["gain_best_n"], summary["gain_sft_best_n"]})
        label = f"mean over {summary['experiments']}"
        if counted != [summary["experiments"]]:
            label = f"mean over {'/'.join(map(str, counted))} of {summary['experiments']}"
        rows.append({"experiment": label, "DPO on (0, 1)": math.nan,
                     "best DPO cell(s)": "", "best DPO": math.nan, "gain best %": _round(summary["gain_best"], 2),
                     "SFT-best cell": "", "DPO at SFT-best": math.nan,
                     "gain SFT-best %": _round(summary["gain_sft_best"], 2),
                     "failed": sum(r["failed"] for r in rows), "unscored": sum(r["unscored"] for r in rows)})
    cols = ["experiment", "DPO on (0, 1)", "best DPO cell(s)", "best DPO", "gain best %", "SFT-best cell",
            "DPO at SFT-best", "gain SFT-best %", "failed", "unscored"]
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        out.insert(1, "benchmark", benchmark_label(benchmark))
    return _with_decimals(out, {"DPO on (0, 1)": d, "best DPO": d, "DPO at SFT-best": d})


def plasticity_table(frame: "pd.DataFrame", condition: str = "clean", metric: str = "score",
                     exclude: Sequence[str] = ("aggregate_paper", "mean")) -> "pd.DataFrame":
    """DPO plasticity for every benchmark that has both an SFT and a DPO grid (no mean rows): the
    :func:`dpo_table` columns, one block per benchmark in the paper's order. The aggregates are left out by
    default: Table 3 (:func:`dpo_table`) is the aggregate's, and "mean" has the same gains (it is 0.8× it)."""
    import pandas as pd

    from evalsuite.analysis.frame import benchmark_order

    have = frame[(frame["condition"] == condition) & (frame["metric"] == metric)]
    stages = have.groupby("benchmark")["stage"].agg(lambda s: set(s))
    benches = sorted((b for b, s in stages.items() if {"sft", "dpo"} <= s and b not in exclude),
                     key=benchmark_order)
    parts = [dpo_table(frame, b, condition, metric, mean_row=False) for b in benches]
    parts = [p for p in parts if len(p)]
    if not parts:
        return dpo_table(frame.iloc[0:0], "none", condition, metric, mean_row=False)
    out = pd.concat(parts, ignore_index=True)
    return _with_decimals(out, parts[0].attrs.get(TABLE_DECIMALS_ATTR, {}))


STAGE_ORDER = ("base", "sft", "dpo")


def robustness_table(frame: "pd.DataFrame", metrics: Sequence[str] = ROBUSTNESS_COLUMNS) -> "pd.DataFrame":
    """The robustness summary: one row per experiment × stage × cell × benchmark × perturbation kind, the
    columns agreement, correct→wrong, wrong→correct, drop rate (all %), worst case (paper scale) and POSIX, as
    present in the frame, then "failed" and "unscored" (that row's counts; the largest over its metrics). The
    clean condition is not a perturbation kind and is left out. The Base cell, which the grid frame carries
    under both stages, is one row with stage "base"."""
    import pandas as pd

    from evalsuite.analysis.frame import benchmark_order

    rows = frame[(frame["condition"] != "clean") & frame["metric"].isin(list(metrics))]
    index = ["experiment", "stage", "lambda_p", "lambda_r", "benchmark", "condition"]
    if rows.empty:
        return pd.DataFrame(columns=["experiment", "stage", "cell", "benchmark", "kind", *metrics,
                                     *COUNT_COLUMNS])
    if "is_base" in rows.columns and rows["is_base"].astype(bool).any():
        base = rows["is_base"].astype(bool)
        rows = pd.concat([rows[~base], rows[base].assign(stage="base")], ignore_index=True)
        rows = rows.drop_duplicates(subset=[*index, "metric"], keep="first")
    rows = rows.assign(failed=rows["failed"] if "failed" in rows.columns else 0,
                       missing=rows["missing"] if "missing" in rows.columns else 0)
    rows = rows.assign(failed=rows["failed"].map(_count), missing=rows["missing"].map(_count))
    # groupby + unstack, not pivot_table(dropna=False): that fills in the cross product of the index levels
    wide = rows.groupby([*index, "metric"], sort=False, dropna=False)["value"].first().unstack("metric")
    wide = wide.reindex(columns=[m for m in metrics if m in wide.columns])
    counts = rows.groupby(index, sort=False)[["failed", "missing"]].max()
    wide = wide.join(counts).reset_index()
    wide = wide.assign(_b=wide["benchmark"].map(lambda b: benchmark_order(b)),
                       _s=wide["stage"].map(lambda s: (STAGE_ORDER.index(s), "") if s in STAGE_ORDER
                                            else (len(STAGE_ORDER), str(s))))
    wide = wide.sort_values(["experiment", "_s", "lambda_p", "lambda_r", "_b", "condition"], kind="stable")
    out = pd.DataFrame({
        "experiment": wide["experiment"].to_numpy(), "stage": wide["stage"].to_numpy(),
        "cell": [format_cell(c) for c in zip(wide["lambda_p"], wide["lambda_r"])],
        "benchmark": wide["benchmark"].map(benchmark_label).to_numpy(), "kind": wide["condition"].to_numpy()})
    decimals = {}
    for m in metrics:
        if m in wide.columns:
            d = _decimals(m)
            out[m] = wide[m].astype(float).round(d).to_numpy()
            decimals[m] = d
    out["failed"] = wide["failed"].fillna(0).astype(int).to_numpy()
    out["unscored"] = wide["missing"].fillna(0).astype(int).to_numpy()
    return _with_decimals(out.reset_index(drop=True), decimals)


def provenance_table(rows: Iterable[Mapping[str, Any]], columns: Optional[Sequence[str]] = None) -> "pd.DataFrame":
    """Plain dicts (one per checkpoint, run or setting) as a table; nested values (dicts, lists) as sorted JSON,
    so a judge's identity or decoding settings print the same on every run. Columns: ``columns`` or the union
    in first-seen order."""
    import pandas as pd

    rows = [dict(r) for r in rows]
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    data = [{c: _plain(r.get(c)) for c in columns} for r in rows]
    return pd.DataFrame(data, columns=list(columns))


def _plain(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple, set)):
        v = sorted(value) if isinstance(value, set) else value
        return json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)
    if value is None:
        return ""
    return value


def status_table(results: "pd.DataFrame") -> "pd.DataFrame":
    """Status of every checkpoint × task (from a run's results table): "ok", "failed: …", "skipped: …", one
    column per task — so nothing lost or failed is hidden. A checkpoint × task without a status row but with
    results reads "ok"; one with neither is left empty. When the results carry a ``run`` column (several runs
    in one report, whose checkpoint names repeat) rows are keyed by (run, checkpoint) and ``run`` is the first
    column; otherwise by checkpoint."""
    import pandas as pd

    by_run = "run" in results.columns
    ids = ["run", "checkpoint"] if by_run else ["checkpoint"]
    if results.empty:
        return pd.DataFrame(columns=ids)
    keys = (["run"] if by_run else []) + [k for k in ("experiment", "stage", "lambda_p", "lambda_r", "checkpoint")
                                          if k in results.columns]
    have = results[keys + ["task"]].drop_duplicates()
    status = results[results["metric"] == "status"] if "status" in results.columns else results.iloc[0:0]
    worst: dict[tuple[Any, ...], str] = {}
    for *ident, task, st in status[[*ids, "task", "status"]].itertuples(index=False):
        st = "ok" if st is None or (isinstance(st, float) and math.isnan(st)) else str(st)
        key = (*ident, task)
        prev = worst.get(key)
        worst[key] = st if prev in (None, "ok") else prev  # keep the first non-ok status
    tasks = sorted(set(have["task"]))
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rec in have.to_dict("records"):
        ident = tuple(rec[k] for k in ids)
        row = out.setdefault(ident, {k: rec[k] for k in keys})
        row[rec["task"]] = worst.get((*ident, rec["task"]), "ok")
    wide = pd.DataFrame(list(out.values()), columns=keys + tasks)
    sort_keys = [k for k in ("run", "experiment", "stage", "lambda_p", "lambda_r", "checkpoint") if k in wide.columns]
    wide = wide.sort_values(sort_keys, kind="stable", na_position="first").reset_index(drop=True)
    wide[tasks] = wide[tasks].fillna("")
    return wide


def report_tables(frame: "pd.DataFrame", results: Optional["pd.DataFrame"] = None,
                  provenance: Optional[Iterable[Mapping[str, Any]]] = None) -> dict[str, "pd.DataFrame"]:
    """Every table the report writes, by file stem, in a fixed order (empty tables left out)."""
    tables: dict[str, "pd.DataFrame"] = {}
    if len(frame):
        tables["table2_optimum"] = optimum_table(frame)
        tables["table1_gains"] = gains_table(frame)
        if "aggregate_paper" in set(frame["benchmark"]):
            tables["table3_dpo"] = dpo_table(frame)
        tables["plasticity"] = plasticity_table(frame)
        tables["robustness"] = robustness_table(frame)
    if results is not None:
        tables["status"] = status_table(results)
    if provenance is not None:
        tables["provenance"] = provenance_table(provenance)
    return {k: v for k, v in tables.items() if len(v)}


# ---- files ---------------------------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
}
_LATEX_UNICODE = {
    "λ": r"$\lambda$", "Δ": r"$\Delta$", "≈": r"$\approx$", "→": r"$\to$", "−": "-", "×": r"$\times$",
    "≥": r"$\geq$", "≤": r"$\leq$", "…": r"\ldots{}", "–": "--", "—": "---",
}


def latex_escape(text: Any) -> str:
    """Text safe inside a LaTeX tabular under plain pdflatex: the special characters escaped (e.g.
    "mmlu_generative" → "mmlu\\_generative", "#" → "\\#"), λ/Δ/≈/→ as math. "λp"/"λr" become $\\lambda_p$."""
    s = str(text)
    s = s.replace("λp", "\0LP\0").replace("λr", "\0LR\0")
    out = "".join(_LATEX_SPECIAL.get(ch, _LATEX_UNICODE.get(ch, ch)) for ch in s)
    return out.replace("\0LP\0", r"$\lambda_p$").replace("\0LR\0", r"$\lambda_r$")


def _format_latex_value(value: Any, digits: int) -> str:
    """Numbers with ``digits`` decimals (integers as is), missing as "--", text escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    if isinstance(value, bool):
        return latex_escape(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return latex_escape(value)


def to_latex(df: "pd.DataFrame") -> str:
    """A booktabs tabular of ``df`` (no index): every name and value escaped, numbers with
    ``df.attrs["decimals"]`` decimals per column (default 2), numeric columns right-aligned.

    Written directly rather than through ``Styler.to_latex``: the same output shape (toprule/midrule/
    bottomrule), but ~50× faster on the robustness summary's thousand rows."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    decimals = df.attrs.get(TABLE_DECIMALS_ATTR, {})
    align = "".join("r" if is_numeric_dtype(df[c]) and not is_bool_dtype(df[c]) else "l" for c in df.columns)
    lines = [f"\\begin{{tabular}}{{{align or 'l'}}}", "\\toprule",
             " & ".join(latex_escape(c) for c in df.columns) + " \\\\", "\\midrule"]
    columns = [[_format_latex_value(v, decimals.get(c, 2)) for v in df[c].tolist()] for c in df.columns]
    lines += [" & ".join(cells) + " \\\\" for cells in zip(*columns)]
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def write_tables(tables: Mapping[str, "pd.DataFrame"], out_dir: Path) -> list[Path]:
    """Write each table as ``<name>.csv`` and ``<name>.tex`` under ``out_dir``; same bytes on a re-run
    (no index, "\\n" line ends, fixed float formatting). Returns the paths in the order written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, df in tables.items():
        csv = out_dir / f"{name}.csv"
        df.to_csv(csv, index=False, lineterminator="\n")
        tex = out_dir / f"{name}.tex"
        tex.write_text(to_latex(df), encoding="utf-8", newline="\n")
        paths += [csv, tex]
    return paths
