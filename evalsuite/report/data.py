"""The report's heatmap data: every grid of every view (experiment × condition × metric × benchmark × stage)
precomputed in Python, as compact per-grid arrays the page's small script lays out.

Colours, tooltips, best cells and number formats all come from `evalsuite.report.encoding` (the same
functions the static figures use), so the browser shows exactly the figures' colours; the script never
computes anything. One grid is five arrays over the experiment's λ lattice in row-major order (λp, then λr):

    v  printed value ("28.60"; null = no checkpoint at that lattice position)
    c  fill colour "#rrggbb" (Base white, failed/unscored grey)
    k  index into `text_colors` (dark or white text by the fill's luminance)
    f  flags: 1 best (red circle), 2 SFT-best (blue square, DPO grids), 4 not significant vs (0, 1),
       8 Base (0, 0), 16 IT (0, 1), 32 failed or unscored items
    t  tooltip text (n, CI, failed/missing, gain, p)

Lists rather than one object per cell keep the data small: the paper's full shape (71 checkpoints, five
benchmarks + two aggregates, clean + 3 kinds, every metric) is 1.4 MB, whatever the number of items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from evalsuite.analysis.frame import Cell
from evalsuite.report.encoding import STAGE_LABELS, condition_key
from evalsuite.report.tables import benchmark_label  # one label for tables, figures and the page

if TYPE_CHECKING:
    import pandas as pd

    from evalsuite.report.encoding import GridView

GroupKey = tuple[str, str, str, str, str]  # experiment, condition, metric, benchmark, stage
ROW_FIELDS = ("lambda_p", "lambda_r", "is_base", "value", "gain", "low", "high", "n", "failed", "missing", "p_vs_0_1",
              "status", "value_a", "value_b", "present", "n_a", "n_b", "failed_a", "failed_b", "missing_a", "missing_b")


FLAG_BEST, FLAG_SFT_BEST, FLAG_NOT_SIG, FLAG_BASE, FLAG_REF, FLAG_FAILED = 1, 2, 4, 8, 16, 32


@dataclass(frozen=True)
class MetricChoice:
    """One entry of the metric control: what is printed (`source` metric of the grid frame, or its gain) and
    a short note shown under the heatmaps."""

    key: str
    label: str
    source: str
    show_gain: bool = False
    note: str = ""


METRICS = (
    MetricChoice("score", "Score", "score", note="the benchmark's score (percent; MT-Bench 1–10); colour: gain vs IT (0, 1)"),
    MetricChoice("gain", "Gain vs IT (0, 1), %", "score", show_gain=True,
                 note="(v − IT) / |IT| × 100 within each stage; ΔDPO column: DPO − SFT score"),
    MetricChoice("agreement", "Agreement, %", "agreement", note="perturbed answer equals the clean answer"),
    MetricChoice("correct_to_wrong", "Correct → wrong, %", "correct_to_wrong",
                 note="share of (item, variant) pairs right when clean and wrong perturbed; lower is better"),
    MetricChoice("wrong_to_correct", "Wrong → correct, %", "wrong_to_correct",
                 note="share of pairs wrong when clean and right perturbed"),
    MetricChoice("performance_drop_rate", "Drop rate, %", "performance_drop_rate",
                 note="1 − perturbed / clean score of the same items (PromptBench); lower is better"),
    MetricChoice("worst_case_with_clean", "Worst case (HELM), %", "worst_case_with_clean",
                 note="per item the lowest score over the clean prompt and its variants"),
    MetricChoice("worst_case_perturbed", "Worst case (variants only), %", "worst_case_perturbed",
                 note="per item the lowest score over its perturbed variants"),
    MetricChoice("posix", "POSIX", "posix", note="prompt sensitivity index (lower is better; green = lower than IT)"),
    MetricChoice("posix_max_new_tokens", "POSIX (library normaliser)", "posix_max_new_tokens",
                 note="POSIX normalised by max_new_tokens, as the released library; lower is better"),
)


@dataclass(frozen=True)
class Source:
    """One grid frame shown as experiments of one kind: the user's runs ("run"), the paper's published grid
    ("paper", label prefixed), or per-cell differences between two runs ("compare")."""

    frame: "pd.DataFrame"
    kind: str = "run"
    prefix: str = ""
    # benchmark -> the item page of its task (relative to index.html), per experiment: heatmap cells link there
    pages: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def _tick(x: float) -> str:
    return f"{x:g}"


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


class Encoder:
    """Turns the grids of one experiment into the page's arrays (see the module docstring)."""

    def __init__(self, lp: Sequence[float], lr: Sequence[float]) -> None:
        self.positions = [(p, r) for p in lp for r in lr]
        self.text_colors: dict[str, int] = {}

    def text_index(self, fill: str) -> int:
        from evalsuite.report.encoding import text_color

        return self.text_colors.setdefault(text_color(fill), len(self.text_colors))

    def encode(self, view: "GridView", fills: Mapping[Cell, str], failed: Iterable[Cell],
               extra_tip: Mapping[Cell, str] | None = None) -> dict[str, list[Any]]:
        from evalsuite.report.encoding import REFERENCE_CELL, format_value

        failed = set(failed)
        best = set(view.best)
        out: dict[str, list[Any]] = {"v": [], "c": [], "k": [], "f": [], "t": []}
        for cell in self.positions:
            if cell not in view.values:
                for key in out:
                    out[key].append(None)
                continue
            fill = fills.get(cell)
            flags = ((FLAG_BEST if cell in best else 0) | (FLAG_SFT_BEST if cell == view.sft_best else 0)
                     | (FLAG_NOT_SIG if cell in view.not_significant else 0) | (FLAG_BASE if cell == view.base else 0)
                     | (FLAG_REF if cell == REFERENCE_CELL and cell != view.base else 0)
                     | (FLAG_FAILED if cell in failed else 0))
            tip = view.tooltip(cell)
            if extra_tip and cell in extra_tip:
                tip += "\n" + extra_tip[cell]
            out["v"].append(format_value(view.values[cell], view.metric))
            out["c"].append(fill)
            out["k"].append(self.text_index(fill) if fill else None)
            out["f"].append(flags)
            out["t"].append(tip)
        return out


def grouped_rows(frame: "pd.DataFrame") -> dict[GroupKey, dict[Cell, dict[str, Any]]]:
    """The frame's rows of the metrics the report shows, as plain dicts per grid and cell. One pass over
    column lists: building thousands of small views from pandas group slices costs seconds at full scale,
    this costs milliseconds."""
    sources = {m.source for m in METRICS}
    frame = frame[frame["metric"].isin(sources)]
    keys = ["experiment", "condition", "metric", "benchmark", "stage"]
    fields = [f for f in ROW_FIELDS if f in frame.columns]
    columns = [frame[c].tolist() for c in keys + fields]
    groups: dict[GroupKey, dict[Cell, dict[str, Any]]] = {}
    width = len(keys)
    for values in zip(*columns):
        row = dict(zip(fields, values[width:]))
        cell = (float(row["lambda_p"]), float(row["lambda_r"]))
        groups.setdefault(tuple(str(v) for v in values[:width]), {})[cell] = row  # type: ignore[index]
    return groups


def _number(x: Any) -> float:
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _column(rows: Mapping[Cell, Mapping[str, Any]], field: str) -> dict[Cell, float]:
    return {c: _number(r.get(field)) for c, r in rows.items() if _finite(r.get(field))}


def grid_of(rows: Mapping[Cell, Mapping[str, Any]], metric: str, show: str = "value", best: Sequence[Cell] = (),
            sft_best: Cell | None = None, gains: bool = True) -> "GridView":
    """A GridView (encoding.py: the same object the figures draw) of one grid's rows: `show` is the column
    printed (value, or gain), gains colour it; cells with p ≥ the significance level are marked."""
    from evalsuite.report.encoding import REFERENCE_CELL, SIGNIFICANCE_LEVEL, GridView

    base = next((c for c, r in rows.items() if r.get("is_base")), None)
    not_sig = {c for c, r in rows.items() if _finite(r.get("p_vs_0_1")) and float(r["p_vs_0_1"]) >= SIGNIFICANCE_LEVEL
               and c != REFERENCE_CELL and c != base}
    return GridView(title="", metric=metric, values={c: _number(r.get(show)) for c, r in rows.items()},
                    gains={c: _number(r.get("gain")) for c, r in rows.items()} if gains else {}, base=base,
                    best=list(best), sft_best=sft_best, not_significant=not_sig, n=_column(rows, "n"),
                    low=_column(rows, "low"), high=_column(rows, "high"), failed=_column(rows, "failed"),
                    missing=_column(rows, "missing"), p=_column(rows, "p_vs_0_1"),
                    status={c: r["status"] for c, r in rows.items()
                            if isinstance(r.get("status"), str) and r["status"] not in ("", "ok")})


def _failed_cells(rows: Mapping[Cell, Mapping[str, Any]]) -> list[Cell]:
    """Cells drawn hatched: failed or unscored items, no value, or (a comparison) a different n on each side."""
    return [c for c, r in rows.items()
            if (_number(r.get("failed")) or 0) > 0 or (_number(r.get("missing")) or 0) > 0 or not _finite(r.get("value"))
            or _n_differs(r)]


def _n_differs(row: Mapping[str, Any]) -> bool:
    a, b = _number(row.get("n_a")), _number(row.get("n_b"))
    return (math.isfinite(a) or math.isfinite(b)) and a != b


def _extra_tips(rows: Mapping[Cell, Mapping[str, Any]], metric: str) -> dict[Cell, str]:
    """What a tooltip adds beyond GridView's (which says the value, n, CI, failed/missing, status and p): in a
    comparison, both runs' values, which run has the cell, and each side's n and failed/unscored items."""
    from evalsuite.report.encoding import format_value

    def count(x: Any) -> str:
        return f"{_number(x):g}" if _finite(x) else "–"

    tips: dict[Cell, str] = {}
    for c, r in rows.items():
        parts = []
        if "present" in r:
            parts.append(f"this run {format_value(r.get('value_a'), metric)}, other run "
                         f"{format_value(r.get('value_b'), metric)}"
                         + ("" if r.get("present") == "both" else f" ({r.get('present')})"))
            if "n_a" in r:
                parts.append(f"n: this run {count(r.get('n_a'))}, other run {count(r.get('n_b'))}"
                             + (" (differ: not the same items)" if _n_differs(r) else ""))
            bad = [f"{what}: this run {count(r.get(f'{key}_a'))}, other run {count(r.get(f'{key}_b'))}"
                   for key, what in (("failed", "failed"), ("missing", "unscored items"))
                   if (_number(r.get(f"{key}_a")) or 0) > 0 or (_number(r.get(f"{key}_b")) or 0) > 0]
            parts += bad
        if parts:
            tips[c] = "\n".join(parts)
    return tips


def experiment_views(groups: Mapping[GroupKey, Mapping[Cell, Mapping[str, Any]]], kind: str,
                     encoder: Encoder) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """condition → metric key → [{b: benchmark, g: {stage: grid arrays}}] for one experiment's grids (SFT/DPO
    with `gain`, ΔDPO as stage "delta"). SFT and DPO grids are coloured by the gain over the (0, 1) cell of
    the same stage, their best cell(s) circled (`analysis.best_cells`: ties kept) and, on DPO grids, the
    SFT-best cell marked (first in row-major order on ties, the paper's rule). Differences (ΔDPO, or a
    comparison's per-cell differences) are coloured by their own signed value, green = better, and have no
    best cell."""
    from evalsuite.analysis import LOWER_IS_BETTER, best_cells, decimals_for
    from evalsuite.analysis.frame import benchmark_order
    from evalsuite.report.encoding import fills

    signed_only = kind == "compare"

    def best(rows: Mapping[Cell, Mapping[str, Any]], metric: str) -> list[Cell]:
        values = {c: _number(r.get("value")) for c, r in rows.items() if not r.get("is_base")}
        return best_cells(values, metric in LOWER_IS_BETTER, decimals_for(metric))

    sft_best = {} if signed_only else {
        (cond, metric, bench): (cells[0] if cells else None)
        for (_, cond, metric, bench, stage), rows in groups.items() if stage == "sft"
        for cells in [best(rows, metric)]}
    views: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for (_, cond, metric, bench, stage), rows in sorted(groups.items()):
        signed = signed_only or stage == "delta"
        if stage == "delta":  # Base is the same model under both stages: no difference to show
            rows = {c: r for c, r in rows.items() if not r.get("is_base")}
        if not rows:
            continue
        failed = _failed_cells(rows)
        tips = _extra_tips(rows, metric)
        top = [] if signed else best(rows, metric)
        mark = sft_best.get((cond, metric, bench)) if stage == "dpo" else None
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        for choice in (c for c in METRICS if c.source == metric):
            gain_view = choice.show_gain and not signed
            view = grid_of(rows, "gain" if gain_view else metric, "gain" if gain_view else "value", top, mark,
                           gains=not signed)
            if signed:  # every cell is a difference (a comparison's Base too), all on one scale
                colour = fills({c: sign * v for c, v in view.values.items()}, view.cells, None)
            else:
                colour = fills(view.gains, view.cells, view.base)
            grid = encoder.encode(view, colour, failed, tips)
            views.setdefault(cond, {}).setdefault(choice.key, {}).setdefault(bench, {})[stage] = grid
    return {cond: {key: [{"b": b, "g": g} for b, g in sorted(per.items(), key=lambda kv: benchmark_order(kv[0]))]
                   for key, per in metrics.items()}
            for cond, metrics in views.items()}


def with_gains_and_delta(frame: "pd.DataFrame") -> "pd.DataFrame":
    """SFT and DPO rows with their gain over (0, 1), plus the ΔDPO rows (stage "delta", gain NaN)."""
    import pandas as pd

    from evalsuite.analysis import delta_dpo, relative_gain

    gained = relative_gain(frame)
    delta = delta_dpo(frame)
    return pd.concat([gained, delta.assign(gain=float("nan"))], ignore_index=True) if not delta.empty else gained


def compare_frame(compared: "pd.DataFrame") -> "pd.DataFrame":
    """`analysis.compare_runs`' output (with each side's n_a/n_b, failed_a/_b, missing_a/_b where given) as a
    frame of differences (value = other run − this run) the views take; cells only one run has stay, with no
    value, and say so in their tooltip. failed / missing are both sides' together (the cell is hatched where
    either has any, or where the two n differ)."""
    def both(column: str) -> Any:
        if f"{column}_a" not in compared.columns:
            return 0
        return compared[f"{column}_a"].fillna(0) + compared[f"{column}_b"].fillna(0)

    return compared.assign(value=compared["diff"], failed=both("failed"), missing=both("missing"))


def experiments_payload(source: Source) -> list[dict[str, Any]]:
    """One entry per experiment of a source: its label, lattice, stages and views."""
    frame = source.frame if source.kind == "compare" else with_gains_and_delta(source.frame)
    groups = grouped_rows(frame)
    by_experiment: dict[str, dict[GroupKey, dict[Cell, dict[str, Any]]]] = {}
    for key, rows in groups.items():
        by_experiment.setdefault(key[0], {})[key] = rows
    out = []
    for experiment, grids in sorted(by_experiment.items()):
        cells = {c for rows in grids.values() for c in rows}
        lp, lr = sorted({c[0] for c in cells}), sorted({c[1] for c in cells})
        encoder = Encoder(lp, lr)
        views = experiment_views(grids, source.kind, encoder)
        stages = [s for s in ("sft", "dpo", "delta") if any(k[4] == s for k in grids)]
        label = f"{source.prefix}{experiment}" if experiment else (source.prefix or "(no experiment)")
        entry = {"key": experiment, "label": label, "kind": source.kind, "lp": [_tick(x) for x in lp],
                 "lr": [_tick(x) for x in lr], "stages": stages, "views": views,
                 "text_colors": list(encoder.text_colors)}
        pages = source.pages.get(experiment)
        if pages and "checkpoint" in source.frame.columns:
            entry["pages"] = dict(sorted(pages.items()))
            entry["ckpt"] = checkpoints_on_lattice(source.frame[source.frame["experiment"] == experiment],
                                                   encoder.positions)
        out.append(entry)
    return out


def checkpoints_on_lattice(frame: "pd.DataFrame", positions: Sequence[Cell]) -> dict[str, list[str | None]]:
    """stage -> the checkpoint at each lattice position (None where there is none): what a heatmap cell opens
    on its item page."""
    rows = frame[frame["stage"].isin(["sft", "dpo"]) & frame["checkpoint"].notna()]
    rows = rows.drop_duplicates(["stage", "lambda_p", "lambda_r"])
    names = {(st, (float(p), float(r))): str(c) for st, p, r, c in
             zip(rows["stage"], rows["lambda_p"], rows["lambda_r"], rows["checkpoint"])}
    return {st: [names.get((st, pos)) for pos in positions] for st in ("sft", "dpo")
            if any(k[0] == st for k in names)}


def _options(keys: Iterable[str], labels: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "label": labels.get(k, k)} for k in keys]


def report_payload(sources: Sequence[Source], compare: Source | None = None, compare_label: str = "") -> dict[str, Any]:
    """Everything index.data.js holds: experiments (runs first, then the paper's), the control options (only
    conditions and metrics that occur), labels, defaults, and the comparison's experiments if any."""
    from evalsuite.analysis.frame import benchmark_order

    experiments = [e for s in sources for e in experiments_payload(s)]
    compared = experiments_payload(compare) if compare is not None else []
    present_conditions: set[str] = set()
    present_metrics: set[str] = set()
    benchmarks: set[str] = set()
    for exp in experiments + compared:
        for cond, metrics in exp["views"].items():
            present_conditions.add(cond)
            for key, rows in metrics.items():
                present_metrics.add(key)
                benchmarks.update(r["b"] for r in rows)
    conditions = sorted(present_conditions, key=condition_key)
    metrics = [m for m in METRICS if m.key in present_metrics]
    runs = [i for i, e in enumerate(experiments) if e["kind"] == "run"]
    chosen = runs if len(runs) <= 4 else runs[:1]
    chosen += [i for i, e in enumerate(experiments) if e["kind"] == "paper"]
    return {
        "experiments": experiments,
        "compare": {"label": compare_label, "experiments": compared} if compare is not None else None,
        "conditions": _options(conditions, {"clean": "clean (unperturbed)"}),
        "metrics": [{"key": m.key, "label": m.label} for m in metrics],
        "metric_notes": {m.key: m.note for m in metrics},
        "benchmark_order": sorted(benchmarks, key=benchmark_order),
        "benchmark_labels": {b: benchmark_label(b) for b in sorted(benchmarks)},
        "stage_labels": STAGE_LABELS,
        "defaults": {"condition": "clean" if "clean" in present_conditions else (conditions[0] if conditions else ""),
                     "metric": "score" if "score" in present_metrics else (metrics[0].key if metrics else ""),
                     "experiments": chosen},
    }


def to_script(payload: Any, variable: str = "EVALSUITE_DATA") -> str:
    """`window.<variable> = {...};` with sorted keys and no whitespace: identical bytes for identical data.
    "<", ">" and "&" are written as \\u escapes so no string in the data can close the script element or
    open a comment, and U+2028/2029 likewise (line terminators in older JavaScript)."""
    import json

    from evalsuite.paths import json_safe

    text = json.dumps(json_safe(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return f"window.{variable} = {text};\n"
