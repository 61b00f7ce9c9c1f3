"""Paper-style static figures of λ grids (SVG, PDF, PNG), byte-identical on a re-run.

The figures use :mod:`evalsuite.report.encoding` for every colour and label, so they match the HTML report and
the WIT paper's heatmaps. Figures are built as bare ``matplotlib.figure.Figure`` objects (no pyplot: no global
figure registry to leak, no GUI backend; PNG goes through Agg), and only the paper-style set is drawn — per
experiment a small-multiples sheet (benchmarks + aggregate × SFT, DPO, ΔDPO) for the clean score and for
POSIX, plus one PLW sheet — so a full-scale run draws a few dozen panels, not one file per cell.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from evalsuite.report.encoding import (
    BASE_LABEL_COLOR,
    BEST_MARKER_COLOR,
    MISSING_FILL,
    NA_TEXT,
    NOT_SIGNIFICANT_LEGEND,
    NOT_SIGNIFICANT_MARK,
    PARTIAL_HATCH,
    PARTIAL_LEGEND,
    SFT_BEST_MARKER_COLOR,
    Cell,
    GridView,
    cell_label,
    format_value,
    grid_view,
    text_color,
)
from evalsuite.report.tables import benchmark_label

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SVG_HASHSALT = "evalsuite"
"""Fixed salt for the ids matplotlib writes into SVG (clip paths, glyphs): otherwise they are random."""

SAVE_METADATA = {
    "svg": {"Date": None},
    "pdf": {"CreationDate": None},
    "png": {"Software": None},
}
"""Metadata that would differ between runs or machines (dates; PNG's matplotlib version) is dropped."""

PANEL_INCHES = 2.5
CELLS_LABEL = "cells"
"""Label of the PolyCollection holding a heatmap's cell fills (find it in ``ax.collections``)."""
CELL_EDGE = "#ffffff"
EMPTY_EDGE = "#e6e6e6"
COLOUR_NOTE = "colour: relative gain vs IT (0, 1), RdYlGn, two-slope centred at 0 (per panel, Base excluded)"
DELTA_NOTE = "ΔDPO: DPO − SFT per cell, coloured by the change (green = DPO better)"
STAGE_COLUMNS = ("SFT", "DPO", "ΔDPO")
PARTIAL_GID = "partial"
"""``gid`` of the hatched overlay patch on a partial cell (some items failed or could not be scored)."""
PARTIAL_INK = (0.0, 0.0, 0.0, 0.35)


def heatmap(ax: "Axes", view: GridView, *, title: bool = True, fontsize: Optional[float] = None) -> "Axes":
    """Draw one λ grid with the paper's encoding on ``ax`` and return it.

    Rows λp from 0 (top) to 1 (bottom), columns λr with ticks and label on top, no colour bar. The existing
    cells are the squares of one ``PolyCollection`` labelled :data:`CELLS_LABEL` (row-major order, fills from
    :func:`encoding.fills`), each printing its absolute value; (0, 0) Base is white with "Base:" in
    red, (0, 1) reads "IT:"; a cell without a finite value is grey and reads "n/a"; lattice positions without a
    checkpoint (sparse grids) are left empty. Markers are extra patches: a red circle on each best cell, a blue
    square on ``sft_best``; cells not significantly different from IT get a small "≈" in their top-right corner.
    A partial cell (a value is shown, but ``failed`` or ``missing`` > 0) is hatched (:data:`PARTIAL_HATCH`, a
    transparent Rectangle with gid :data:`PARTIAL_GID`), so a number over fewer items never reads as complete.
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Circle, Rectangle

    rows, cols = view.lambda_p, view.lambda_r
    row_of = {p: i for i, p in enumerate(rows)}
    col_of = {r: j for j, r in enumerate(cols)}
    size = fontsize if fontsize is not None else _fontsize(len(rows), len(cols))
    fills = view.fills()

    def where(cell: Cell) -> Optional[tuple[int, int]]:
        i, j = row_of.get(cell[0]), col_of.get(cell[1])
        return None if i is None or j is None else (i, j)

    squares: list[list[tuple[float, float]]] = []
    square_fills: list[str] = []
    for cell in view.cells:
        pos = where(cell)
        if pos is None:
            continue
        i, j = pos
        value = view.values.get(cell, math.nan)
        finite = value is not None and math.isfinite(value)
        fill = fills[cell] if finite else MISSING_FILL
        squares.append([(j - 0.5, i - 0.5), (j + 0.5, i - 0.5), (j + 0.5, i + 0.5), (j - 0.5, i + 0.5)])
        square_fills.append(fill)
        ink = text_color(fill)
        label = cell_label(cell) if cell in (view.base, view.reference) else ""
        number = format_value(value, view.metric) if finite else NA_TEXT
        if label:
            ax.text(j, i - 0.2, label, ha="center", va="center", fontsize=size,
                    color=BASE_LABEL_COLOR if cell == view.base else ink)
            ax.text(j, i + 0.17, number, ha="center", va="center", fontsize=size, color=ink)
        else:
            ax.text(j, i, number, ha="center", va="center", fontsize=size, color=ink)
        if finite and view.partial(cell):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, facecolor="none", edgecolor=PARTIAL_INK,
                                   hatch=PARTIAL_HATCH, linewidth=0.0, zorder=1.5, gid=PARTIAL_GID))
        if cell in view.not_significant:
            ax.text(j + 0.45, i - 0.45, NOT_SIGNIFICANT_MARK, ha="right", va="top", fontsize=size * 0.9, color=ink)
    # all fills as ONE collection: drawing hundreds of separate patches dominated the save time
    cells = PolyCollection(squares, facecolors=square_fills, edgecolors=CELL_EDGE, linewidths=0.6, zorder=1,
                           label=CELLS_LABEL)
    ax.add_collection(cells, autolim=False)
    for cell in view.best:
        pos = where(cell)
        if pos is not None:
            ax.add_patch(Circle((pos[1], pos[0]), 0.44, fill=False, edgecolor=BEST_MARKER_COLOR, linewidth=1.3))
    if view.sft_best is not None and (pos := where(view.sft_best)) is not None:
        ax.add_patch(Rectangle((pos[1] - 0.4, pos[0] - 0.4), 0.8, 0.8, fill=False,
                               edgecolor=SFT_BEST_MARKER_COLOR, linewidth=1.3))
    _empty_positions(ax, view)
    _axes_style(ax, rows, cols, size)
    if title and view.title:
        ax.set_title(view.title, fontsize=size + 1.5)
    return ax


def _fontsize(nrows: int, ncols: int) -> float:
    """Smaller text for the paper's 6×6 grid, larger for sparse ones, so values fit their cells."""
    return max(5.5, min(9.0, 40.0 / max(nrows, ncols, 1)))


def _axes_style(ax: "Axes", rows: list[float], cols: list[float], size: float) -> None:
    ax.set_xlim(-0.5, len(cols) - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # λp 0 on top
    ax.set_aspect("equal")
    ax.set_xticks(range(len(cols)), [f"{c:g}" for c in cols], fontsize=size)
    ax.set_yticks(range(len(rows)), [f"{r:g}" for r in rows], fontsize=size)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("λr", fontsize=size + 1)
    ax.set_ylabel("λp", fontsize=size + 1)
    ax.tick_params(length=0, pad=2)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_facecolor("#ffffff")


def _empty_positions(ax: "Axes", view: GridView) -> None:
    """Outline lattice positions that have no checkpoint (sparse grids), so they read as "nothing here"."""
    from matplotlib.patches import Rectangle

    present = set(view.cells)
    for i, p in enumerate(view.lambda_p):
        for j, r in enumerate(view.lambda_r):
            if (p, r) not in present:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, facecolor="none", edgecolor=EMPTY_EDGE,
                                       linewidth=0.6, linestyle=(0, (2, 2))))


def small_multiples(
    rows: Sequence[Sequence[Optional[GridView]]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: Optional[str] = None,
    note: Optional[str] = COLOUR_NOTE,
) -> "Figure":
    """One figure of panels: ``rows[i][j]`` drawn with :func:`heatmap` (None → an empty "n/a" panel).

    Rows are typically benchmarks + the aggregate, columns SFT, DPO, ΔDPO. Column labels head the top row,
    row labels prefix the first column's λp axis label. A legend at the bottom names the markers that occur
    (best cell, SFT-best cell, not significant, n/a) and how colour is read (``note``).
    """
    nrows = max(len(rows), 1)
    ncols = max((len(r) for r in rows), default=1) or 1
    views = [v for r in rows for v in r if v is not None]
    handles = legend_handles(views)
    width = MARGIN_LEFT + MARGIN_RIGHT + PANEL_INCHES * ncols
    note_lines = _wrap(note, width) if note else []
    legend_cols = max(1, min(LEGEND_COLUMNS, ncols, len(handles)))  # one panel column: one legend column
    legend_rows = len(note_lines) + math.ceil(len(handles) / legend_cols) * 1.4
    fig, axes = _panel_grid(nrows, ncols, PANEL_INCHES, PANEL_INCHES, title=bool(title), legend_rows=legend_rows)
    for i in range(nrows):
        for j in range(ncols):
            ax = axes[i][j]
            view = rows[i][j] if i < len(rows) and j < len(rows[i]) else None
            if view is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, NA_TEXT, ha="center", va="center", color="#808080", transform=ax.transAxes)
            else:
                heatmap(ax, view, title=False)
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=10, fontweight="bold")
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(f"{row_labels[i]}\nλp", fontsize=9)
                if view is None:
                    ax.text(-0.05, 0.5, row_labels[i], ha="right", va="center", rotation=90, fontsize=9,
                            transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.12 / fig.get_figheight(), va="top")
    if handles or note_lines:
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                   ncols=legend_cols, fontsize=7, frameon=False,
                   title="\n".join(note_lines) or None, title_fontsize=7)
    return fig


LEGEND_COLUMNS = 2


def _wrap(note: str, width_inches: float) -> list[str]:
    """The legend note's lines, wrapped to the figure's width (7 pt text: ~17 characters per inch)."""
    import textwrap

    chars = max(30, int(width_inches * 17))
    return [line for part in note.split("\n") for line in textwrap.wrap(part, chars)]


MARGIN_LEFT = 0.75  # inches: row label + λp label + tick labels
MARGIN_RIGHT = 0.15
MARGIN_TOP = 0.65  # inches above the top row: tick labels, λr label, column title
LEGEND_INCHES = 0.14  # per legend line (7 pt)


def _panel_grid(nrows: int, ncols: int, width: float, height: float, *, title: bool, legend_rows: float,
                wspace: float = 0.3, hspace: float = 0.3) -> tuple["Figure", Any]:
    """A figure of nrows × ncols axes with fixed margins in inches.

    Fixed geometry instead of matplotlib's constrained layout: constrained layout re-solves on every draw
    (so two saves of one figure differ by fractions of a point) and dominates the drawing time.
    """
    from matplotlib.figure import Figure

    top = MARGIN_TOP + (0.3 if title else 0.0)
    bottom = 0.2 + LEGEND_INCHES * legend_rows
    w = MARGIN_LEFT + MARGIN_RIGHT + width * ncols
    h = top + bottom + height * nrows
    fig = Figure(figsize=(w, h))
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={
        "left": MARGIN_LEFT / w, "right": 1 - MARGIN_RIGHT / w, "top": 1 - top / h, "bottom": bottom / h,
        "wspace": wspace, "hspace": hspace})
    return fig, axes


def legend_handles(views: Iterable[GridView]) -> list[Any]:
    """Legend entries for the markers that actually occur in ``views``."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    views = list(views)
    handles: list[Any] = []
    if any(v.best for v in views):
        handles.append(Line2D([], [], marker="o", markersize=8, markerfacecolor="none", linestyle="none",
                              markeredgecolor=BEST_MARKER_COLOR, label="best cell (ties: all circled)"))
    if any(v.sft_best is not None for v in views):
        handles.append(Line2D([], [], marker="s", markersize=8, markerfacecolor="none", linestyle="none",
                              markeredgecolor=SFT_BEST_MARKER_COLOR, label="SFT-best cell"))
    if any(v.not_significant for v in views):
        handles.append(Line2D([], [], linestyle="none", label=f"{NOT_SIGNIFICANT_LEGEND} (cell corner)"))
    if any(not (v.values.get(c) is not None and math.isfinite(v.values[c])) for v in views for c in v.cells):
        handles.append(Patch(facecolor=MISSING_FILL, edgecolor="none", label=f"{NA_TEXT}: failed / not scored"))
    if any(v.partial_cells() for v in views):
        handles.append(Patch(facecolor="#ffffff", edgecolor="#808080", hatch=PARTIAL_HATCH, label=PARTIAL_LEGEND))
    return handles


def plw_figure(curves: "pd.DataFrame", *, title: Optional[str] = None, lambda_r: float = 1.0) -> "Figure":
    """The PLW paper's view: score against λp at λr = ``lambda_r``, one line per experiment, CI as a band.

    ``curves``: columns experiment, lambda_p, value, optional low/high (CI), optional benchmark (one panel per
    benchmark, in the paper's order) and stage (a line per experiment × stage when several). Experiments are
    never pooled: each is its own line.
    """
    import numpy as np

    from evalsuite.analysis.frame import benchmark_order

    data = curves.copy()
    if "benchmark" not in data:
        data["benchmark"] = "score"
    benches = sorted(data["benchmark"].dropna().unique().tolist(), key=benchmark_order)
    series_keys = ["experiment"] + (["stage"] if "stage" in data and data["stage"].nunique() > 1 else [])
    labels = sorted({_series_label(k) for k, _ in data.groupby(series_keys, sort=True)}) if len(data) else []
    n = max(len(benches), 1)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, grid = _panel_grid(nrows, ncols, 3.2, 2.4, title=True, legend_rows=1 + 1.4 * math.ceil(len(labels) / 3),
                            wspace=0.35, hspace=0.6)
    axes = grid.ravel()
    colours = _palette(len(labels))
    colour_of = dict(zip(labels, colours))
    for ax, bench in zip(axes, benches):
        sub = data[data["benchmark"] == bench]
        for key, group in sub.groupby(series_keys, sort=True):
            group = group.sort_values("lambda_p")
            x = group["lambda_p"].to_numpy(dtype=float)
            y = group["value"].to_numpy(dtype=float)
            label = _series_label(key)
            colour = colour_of[label]
            ax.plot(x, y, marker="o", markersize=3, linewidth=1.2, color=colour, label=label)
            if {"low", "high"} <= set(group.columns):
                lo = group["low"].to_numpy(dtype=float)
                hi = group["high"].to_numpy(dtype=float)
                ok = np.isfinite(lo) & np.isfinite(hi)
                if ok.any():
                    ax.fill_between(x[ok], lo[ok], hi[ok], color=colour, alpha=0.18, linewidth=0)
        ax.set_title(benchmark_label(bench), fontsize=9)
        ax.set_xlabel(f"λp (λr = {lambda_r:g})", fontsize=8)
        ax.set_ylabel("score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, linewidth=0.3, color="#dddddd")
    for ax in axes[len(benches):]:
        ax.set_axis_off()
    if labels:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=colour_of[l], marker="o", markersize=3, label=l) for l in labels]
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=min(3, len(labels)), fontsize=7,
                   frameon=False, title="shaded: confidence interval", title_fontsize=7)
    fig.suptitle(title or f"Score against λp at λr = {lambda_r:g} (one line per experiment)", fontsize=10,
                 y=1 - 0.12 / fig.get_figheight(), va="top")
    return fig


def _series_label(key: Any) -> str:
    if isinstance(key, tuple):
        return key[0] if len(key) == 1 else f"{key[0]} ({key[1]})"
    return str(key)


def _palette(n: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(n)]


def save(fig: "Figure", stem: Path, formats: Sequence[str] = ("svg", "pdf", "png"), *, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``stem.<fmt>`` for each format; identical bytes for identical figures.

    SVG ids are salted with a fixed string, dates are left out of SVG/PDF metadata and the matplotlib version
    out of PNG's; PNG from Agg carries no timestamp.
    """
    import matplotlib

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT, "svg.fonttype": "path"}):
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            fig.savefig(path, format=fmt, dpi=dpi, metadata=SAVE_METADATA.get(fmt))
            paths.append(path)
    return paths


# ---- the paper-style figure set of a grid frame -------------------------------------------------------------


def slug(name: str) -> str:
    """A file-name-safe, unique stem for an experiment key (which holds "/" and "#")."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
    return f"{clean[:60]}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:6]}"


def experiment_sheet(
    frame: "pd.DataFrame", experiment: str, *, condition: str = "clean", metric: str = "score",
    benchmarks: Optional[Sequence[str]] = None,
) -> tuple[list[list[Optional[GridView]]], list[str], list[str]]:
    """The views of one experiment's small-multiples sheet: rows = benchmarks (+ aggregate), columns = SFT,
    DPO, ΔDPO.

    ``frame``: a grid frame with a ``gain`` column (``analysis.relative_gain``); ΔDPO is ``analysis.delta_dpo``
    of it. All three panels of a row share one λ lattice. On DPO panels the blue square marks the SFT grid's
    best cell (first in row-major order on ties, the paper's rule).
    """
    from evalsuite.analysis import LOWER_IS_BETTER, delta_dpo  # type: ignore[attr-defined]
    from evalsuite.analysis.frame import benchmark_order, select

    exp = select(frame, experiment=experiment, condition=condition, metric=metric)
    if benchmarks is None:
        present = set(exp["benchmark"].unique().tolist())
        benchmarks = sorted((b for b in present if b != "mean" or "aggregate_paper" not in present),
                            key=benchmark_order)
    delta = delta_dpo(exp) if len(exp) else exp
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows: list[list[Optional[GridView]]] = []
    for bench in benchmarks:
        sft = select(exp, stage="sft", benchmark=bench)
        dpo = select(exp, stage="dpo", benchmark=bench)
        dlt = select(delta, benchmark=bench) if len(delta) else delta
        lattice = select(exp, benchmark=bench)
        lp = sorted(set(lattice["lambda_p"].astype(float)))
        lr = sorted(set(lattice["lambda_r"].astype(float)))
        sft_view = grid_view(sft, title=f"{bench} SFT", metric=metric, lambda_p=lp, lambda_r=lr) if len(sft) else None
        sft_best = sft_view.best[0] if sft_view is not None and sft_view.best else None
        dpo_view = (grid_view(dpo, title=f"{bench} DPO", metric=metric, sft_best=sft_best, lambda_p=lp, lambda_r=lr)
                    if len(dpo) else None)
        delta_view = None
        if len(dlt):
            dlt = dlt.assign(gain=sign * dlt["value"].astype(float), p_vs_0_1=math.nan)
            delta_view = grid_view(dlt[~dlt["is_base"]], title=f"{bench} ΔDPO", metric=metric, lambda_p=lp,
                                   lambda_r=lr)
            delta_view.best = []  # the largest change is not a "best cell" claim
        rows.append([sft_view, dpo_view, delta_view])
    keep = [j for j in range(len(STAGE_COLUMNS)) if any(r[j] is not None for r in rows)]  # e.g. no DPO at all
    return ([[r[j] for j in keep] for r in rows], [benchmark_label(b) for b in benchmarks],
            [STAGE_COLUMNS[j] for j in keep])


def condition_sheet(
    frame: "pd.DataFrame", experiment: str, *, metric: str = "posix", stage: str = "sft",
) -> tuple[list[list[Optional[GridView]]], list[str], list[str]]:
    """One stage's grids of ``metric`` for every condition at once: rows = benchmarks, columns = conditions
    (perturbation kinds). The paper's Fig. 4 (POSIX after SFT) in one sheet instead of one per kind, which keeps
    the figure count — and the report's time — small. ``frame`` needs the ``gain`` column."""
    from evalsuite.analysis.frame import benchmark_order, select

    rows_of = select(frame, experiment=experiment, stage=stage, metric=metric)
    conditions = sorted(set(rows_of["condition"].tolist()), key=lambda c: (c != "clean", c))
    benchmarks = sorted(set(rows_of["benchmark"].tolist()), key=benchmark_order)
    rows: list[list[Optional[GridView]]] = []
    for bench in benchmarks:
        lattice = select(rows_of, benchmark=bench)
        lp = sorted(set(lattice["lambda_p"].astype(float)))
        lr = sorted(set(lattice["lambda_r"].astype(float)))
        row: list[Optional[GridView]] = []
        for cond in conditions:
            grid = select(lattice, condition=cond)
            row.append(grid_view(grid, title=f"{bench} {cond}", metric=metric, lambda_p=lp, lambda_r=lr)
                       if len(grid) else None)
        rows.append(row)
    return rows, [benchmark_label(b) for b in benchmarks], list(conditions)


def settings_sheet(
    frame: "pd.DataFrame", *, stage: str = "dpo", benchmark: str = "aggregate_paper", condition: str = "clean",
    metric: str = "score", experiments: Optional[Sequence[str]] = None,
) -> tuple[list[list[Optional[GridView]]], list[str], list[str]]:
    """The layout of the paper's Figs. 2–4: one panel per experiment ("MODEL/DATA"), rows = the data (the part
    after the first "/"), columns = the models, each panel the ``stage`` grid of ``benchmark``. On DPO panels
    the blue square marks that experiment's SFT-best cell (first on ties), as in Fig. 3. ``frame`` needs the
    ``gain`` column (``analysis.relative_gain``); ``experiments`` fixes the order (default: sorted), e.g.
    ``analysis.paper_settings()`` for the paper's own."""
    from evalsuite.analysis.frame import select
    from evalsuite.analysis.gains import best_cells

    rows_of = select(frame, stage=stage, benchmark=benchmark, condition=condition, metric=metric)
    present = set(rows_of["experiment"].tolist())
    order = [e for e in (experiments if experiments is not None else sorted(present)) if e in present]
    models = list(dict.fromkeys(e.split("/", 1)[0] for e in order))
    datasets = list(dict.fromkeys(e.split("/", 1)[1] if "/" in e else "" for e in order))
    views: list[list[Optional[GridView]]] = [[None] * len(models) for _ in datasets]
    for experiment in order:
        model, _, data = experiment.partition("/")
        grid = select(rows_of, experiment=experiment)
        sft_best = None
        if stage == "dpo":  # the first tied best SFT cell, the paper's rule (as analysis.plasticity)
            sft_cells = best_cells(select(frame, experiment=experiment, stage="sft", benchmark=benchmark,
                                          condition=condition, metric=metric))
            sft_best = sft_cells[0] if sft_cells else None
        views[datasets.index(data)][models.index(model)] = grid_view(
            grid, title=experiment, metric=metric, sft_best=sft_best)
    return views, datasets, models


def paper_figures(frame: "pd.DataFrame", out_dir: Path, *, formats: Sequence[str] = ("svg", "pdf", "png"),
                  dpi: int = 150) -> list[Path]:
    """Write the paper-style figure set of a grid frame to ``out_dir`` and return the files.

    Per experiment: ``<slug>_score.*`` (clean score, benchmarks + aggregate × SFT/DPO/ΔDPO) and, where the
    frame has POSIX rows, ``<slug>_posix.*`` (after SFT, benchmarks × perturbation kinds); across experiments
    ``plw.*`` (score against λp at λr = 1, one line per experiment: never pooled). Robustness metrics other
    than POSIX, DPO's POSIX and the other conditions are in the HTML report (switchable), not drawn here.
    """
    from evalsuite.analysis import plw_curve, relative_gain  # type: ignore[attr-defined]

    out_dir = Path(out_dir)
    if frame.empty:
        return []
    gained = relative_gain(frame)
    paths: list[Path] = []
    for experiment in sorted(gained["experiment"].unique().tolist()):
        stem = out_dir / slug(experiment)
        rows, row_labels, col_labels = experiment_sheet(gained, experiment, condition="clean", metric="score")
        if rows:
            fig = small_multiples(rows, row_labels, col_labels, title=f"{experiment} — score (clean)",
                                  note=f"{COLOUR_NOTE}\n{DELTA_NOTE}" if "ΔDPO" in col_labels else COLOUR_NOTE)
            paths += save(fig, stem.with_name(f"{stem.name}_score"), formats, dpi=dpi)
        posix = gained[(gained["experiment"] == experiment) & gained["metric"].astype(str).str.startswith("posix")]
        for metric in sorted(set(posix["metric"].tolist())):
            rows, row_labels, col_labels = condition_sheet(gained, experiment, metric=metric)
            if rows:
                fig = small_multiples(rows, row_labels, col_labels, title=f"{experiment} — {metric} after SFT "
                                      f"(lower is better: green)", note=COLOUR_NOTE)
                paths += save(fig, stem.with_name(f"{stem.name}_{metric}"), formats, dpi=dpi)
    curves = plw_curve(frame)
    if len(curves):
        paths += save(plw_figure(curves), out_dir / "plw", formats, dpi=dpi)
    return paths
