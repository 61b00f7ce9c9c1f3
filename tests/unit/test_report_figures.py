"""The paper's heatmap encoding (colours, labels, formats), the static figures and the report's tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evalsuite.report import encoding as enc
from evalsuite.report import figures as figs
from evalsuite.report import tables as tabs
from evalsuite.report.encoding import GridView

LAMBDAS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]

# The WIT paper's Fig. 2, Tulu-v2 / Llama-3.2-1B after SFT, the aggregate avg5_x1.25 (rows λp 0 → 1, columns
# λr 0 → 1); (0, 0) is the Base model.
PAPER_TULU_LLAMA1B = [
    [22.34, 28.74, 28.70, 28.75, 28.67, 28.60],
    [27.73, 30.72, 31.03, 31.19, 30.84, 30.65],
    [28.05, 30.10, 30.51, 31.14, 30.93, 31.12],
    [27.86, 29.34, 30.41, 30.85, 31.26, 31.61],
    [28.31, 29.89, 29.92, 30.46, 30.52, 30.88],
    [28.48, 28.77, 29.68, 30.50, 31.02, 31.04],
]


def paper_values() -> dict[tuple[float, float], float]:
    return {(p, r): PAPER_TULU_LLAMA1B[i][j] for i, p in enumerate(LAMBDAS) for j, r in enumerate(LAMBDAS)}


def gains_of(values: dict, lower_is_better: bool = False) -> dict:
    ref = values[(0.0, 1.0)]
    return {c: ((ref - v) if lower_is_better else (v - ref)) / abs(ref) * 100 for c, v in values.items()}


def independent_colors(gains: dict, base=(0.0, 0.0)) -> dict:
    """What matplotlib itself gives: TwoSlopeNorm(vcenter=0, vmin=min, vmax=max) over the trained cells."""
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm, to_hex

    trained = {c: g for c, g in gains.items() if c != base}
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(trained.values()), vmax=max(trained.values()))
    cmap = colormaps["RdYlGn"]
    return {c: to_hex(cmap(norm(g))) for c, g in trained.items()}


def cmap_hex(x: float) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["RdYlGn"](x))


# ---- encoding ------------------------------------------------------------------------------------------------


def test_colors_equal_matplotlib_on_the_papers_grid():
    gains = gains_of(paper_values())
    colors = enc.cell_colors(gains)
    assert colors == independent_colors(gains)
    assert (0.0, 0.0) not in colors  # Base uncoloured
    assert colors[(0.6, 1.0)] == cmap_hex(1.0)  # the best cell (31.61) is the darkest green
    assert colors[(0.2, 0.0)] == cmap_hex(0.0)  # the worst trained cell (27.73) the darkest red
    assert colors[(0.0, 1.0)] == cmap_hex(0.5)  # IT: gain 0, the yellow centre


def test_colors_equal_matplotlib_on_random_grids_and_lower_is_better():
    rng = np.random.default_rng(7)
    for _ in range(5):
        values = {(p, r): float(rng.uniform(0.1, 2.0)) for p in LAMBDAS for r in LAMBDAS}
        for lower in (False, True):
            gains = gains_of(values, lower)
            assert enc.cell_colors(gains) == independent_colors(gains)


def test_base_cell_never_enters_the_normalisation():
    gains = gains_of(paper_values())
    extreme = {**gains, (0.0, 0.0): -1000.0}
    assert enc.cell_colors(extreme) == enc.cell_colors(gains)
    # without a base, (0, 0) is an ordinary cell
    assert (0.0, 0.0) in enc.cell_colors(extreme, base=None)


def test_degenerate_grids_do_not_raise():
    assert enc.cell_colors({}) == {}
    assert enc.cell_colors({(0.0, 0.0): 5.0}) == {}  # only the base
    assert enc.cell_colors({(0.0, 1.0): math.nan, (1.0, 1.0): None}) == {}
    assert enc.cell_colors({(0.0, 1.0): 0.0}) == {(0.0, 1.0): cmap_hex(0.5)}  # single cell at 0: centre
    assert enc.cell_colors({(1.0, 1.0): 3.0}) == {(1.0, 1.0): cmap_hex(1.0)}  # single positive: darkest green
    assert enc.cell_colors({(1.0, 1.0): -3.0}) == {(1.0, 1.0): cmap_hex(0.0)}  # single negative: darkest red
    equal = enc.cell_colors({(0.0, 1.0): 0.0, (1.0, 1.0): 0.0})
    assert set(equal.values()) == {cmap_hex(0.5)}
    # all ≥ 0: 0 stays yellow, the positive side is stretched to its maximum; all ≤ 0 mirrored
    assert enc.cell_colors({(0.0, 1.0): 0.0, (0.2, 1.0): 2.0, (0.4, 1.0): 4.0}) == {
        (0.0, 1.0): cmap_hex(0.5), (0.2, 1.0): cmap_hex(0.75), (0.4, 1.0): cmap_hex(1.0)}
    assert enc.cell_colors({(0.0, 1.0): 0.0, (0.2, 1.0): -2.0, (0.4, 1.0): -4.0}) == {
        (0.0, 1.0): cmap_hex(0.5), (0.2, 1.0): cmap_hex(0.25), (0.4, 1.0): cmap_hex(0.0)}
    # NaN and ±inf cells are left out and do not stretch the scale
    mixed = {(0.0, 1.0): 0.0, (0.2, 1.0): 2.0, (0.4, 1.0): -1.0, (0.6, 1.0): math.nan, (0.8, 1.0): math.inf}
    colors = enc.cell_colors(mixed)
    assert set(colors) == {(0.0, 1.0), (0.2, 1.0), (0.4, 1.0)}
    assert colors[(0.2, 1.0)] == cmap_hex(1.0) and colors[(0.4, 1.0)] == cmap_hex(0.0)
    fills = enc.fills(mixed, list(mixed) + [(0.0, 0.0)])
    assert fills[(0.6, 1.0)] == enc.MISSING_FILL and fills[(0.0, 0.0)] == enc.BASE_FILL


def test_twenty_thousand_cells_are_coloured_quickly():
    import time

    rng = np.random.default_rng(0)
    gains = {(i / 1000, j / 100): float(g) for (i, j), g in zip(
        ((i, j) for i in range(200) for j in range(100)), rng.normal(size=20_000))}
    enc.cell_colors({(0.0, 1.0): 1.0})  # the import of matplotlib is not what is measured
    start = time.perf_counter()
    colors = enc.cell_colors(gains)
    assert time.perf_counter() - start < 2.0
    assert len(colors) == 19_999
    sample = dict(list(gains.items())[:300])
    assert enc.cell_colors(sample) == independent_colors(sample)


def test_text_color_and_formats():
    assert enc.text_color(cmap_hex(0.5)) == enc.DARK_TEXT  # pale yellow
    assert enc.text_color(cmap_hex(1.0)) == enc.LIGHT_TEXT  # darkest green
    assert enc.text_color(cmap_hex(0.0)) == enc.LIGHT_TEXT  # darkest red
    assert enc.text_color("#ffffff") == enc.DARK_TEXT and enc.text_color("none") == enc.DARK_TEXT
    assert enc.format_value(28.6, "score") == "28.60"
    assert enc.format_value(0.6612, "posix") == "0.661"
    assert enc.format_value(None, "score") == enc.format_value(math.nan, "score") == "n/a"
    assert enc.cell_text((0.0, 0.0), 22.34, "score") == "Base: 22.34"
    assert enc.cell_text((0.0, 1.0), 28.6, "score") == "IT: 28.60"
    assert enc.cell_text((0.2, 1.0), 28.6, "score") == "28.60"


def test_grid_view_from_frame_rows():
    rows = frame_rows("e", "sft", "mmlu", {(0.0, 0.0): 20.0, (0.0, 1.0): 30.0, (0.5, 1.0): 33.0, (1.0, 1.0): 33.0},
                      p={(0.5, 1.0): 0.2, (1.0, 1.0): 0.01})
    view = enc.grid_view(rows.assign(gain=[math.nan, 0.0, 10.0, 10.0]), title="t")
    assert view.base == (0.0, 0.0) and view.best == [(0.5, 1.0), (1.0, 1.0)]  # ties kept, row-major
    assert view.not_significant == {(0.5, 1.0)}
    assert view.lambda_p == [0.0, 0.5, 1.0] and view.lambda_r == [0.0, 1.0]
    assert "n=100" in view.tooltip((0.5, 1.0)) and "CI [" in view.tooltip((0.5, 1.0))


def test_tooltip_always_gives_the_significance_verdict():
    values = {(0.0, 0.0): 20.0, (0.0, 1.0): 30.0, (0.5, 1.0): 33.0, (1.0, 1.0): 31.0, (1.0, 0.5): math.nan,
              (0.5, 0.5): 32.0}
    rows = frame_rows("e", "sft", "mmlu", values, p={(0.5, 1.0): 0.031, (1.0, 1.0): 0.41})
    rows["status"] = [None, None, None, None, "failed: out of memory", None]
    view = enc.grid_view(rows.assign(gain=0.0), title="t")
    assert view.p == {(0.5, 1.0): 0.031, (1.0, 1.0): 0.41}
    assert view.status == {(1.0, 0.5): "failed: out of memory"}
    assert view.not_significant == {(1.0, 1.0)}
    assert view.tooltip((0.5, 1.0)).endswith("p = 0.031 vs IT (0, 1)")
    assert view.tooltip((1.0, 1.0)).endswith("not significantly different from IT (p = 0.41)")
    assert view.tooltip((1.0, 0.5)).endswith("not tested: failed: out of memory")
    assert view.tooltip((1.0, 0.5)).count("out of memory") == 1
    assert view.tooltip((0.5, 0.5)).endswith("not tested against (0, 1)")
    for special in ((0.0, 0.0), (0.0, 1.0)):  # Base and the reference: no verdict
        assert "p =" not in view.tooltip(special) and "tested" not in view.tooltip(special)
        assert view.significance(special) == ""
    # a view no test applies to (another metric, ΔDPO, a comparison of runs) says nothing about significance
    untested = enc.grid_view(frame_rows("e", "sft", "mmlu", values).assign(gain=0.0), title="t")
    assert "tested" not in untested.tooltip((0.5, 1.0)) and untested.significance((0.5, 1.0)) == ""
    # without a status column, a frame still works (no reasons)
    assert enc.grid_view(rows.drop(columns="status"), title="t").status == {}


# ---- figures -------------------------------------------------------------------------------------------------


def paper_view(**kw) -> GridView:
    values = paper_values()
    return GridView(title="Tulu-v2 / Llama-3.2-1B", metric="score", values=values, gains=gains_of(values), **kw)


def new_axes():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3))
    return fig, fig.add_subplot()


def texts_of(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_heatmap_draws_the_papers_encoding():
    from matplotlib.colors import to_hex
    from matplotlib.patches import Circle, Rectangle

    values = paper_values()
    values[(1.0, 0.0)] = math.nan  # a failed cell
    gains = gains_of(values)
    view = GridView(title="t", metric="score", values=values, gains=gains, best=[(0.6, 1.0), (0.2, 0.6)],
                    sft_best=(0.4, 1.0), not_significant={(0.2, 0.2), (0.4, 0.4)})
    fig, ax = new_axes()
    figs.heatmap(ax, view)
    (cells,) = [c for c in ax.collections if c.get_label() == figs.CELLS_LABEL]
    circles = [p for p in ax.patches if isinstance(p, Circle)]
    squares = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert len(cells.get_paths()) == 36 and len(circles) == 2 and len(squares) == 1
    texts = texts_of(ax)
    assert len(texts) == 36 + 2 + 2  # every value, the "Base:" and "IT:" labels, two "≈" marks
    assert texts.count(enc.NOT_SIGNIFICANT_MARK) == 2 and "n/a" in texts and "Base:" in texts and "IT:" in texts
    assert "22.34" in texts and "31.61" in texts
    base_label = next(t for t in ax.texts if t.get_text() == "Base:")
    assert to_hex(base_label.get_color()) == enc.BASE_LABEL_COLOR
    # fills are exactly encoding's colours; Base white, the failed cell grey
    colors = enc.cell_colors(gains)
    by_pos = {(round(path.vertices[:, 1].mean()), round(path.vertices[:, 0].mean())): to_hex(face)
              for path, face in zip(cells.get_paths(), cells.get_facecolors())}
    assert by_pos[(0, 0)] == enc.BASE_FILL and by_pos[(5, 0)] == enc.MISSING_FILL
    assert by_pos[(3, 5)] == colors[(0.6, 1.0)] and by_pos[(1, 2)] == colors[(0.2, 0.4)]
    # λp 0 on top, λr ticks on top, no colour bar
    assert ax.get_ylim()[0] > ax.get_ylim()[1]
    assert ax.xaxis.get_ticks_position() == "top"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.2", "0.4", "0.6", "0.8", "1"]
    assert len(fig.axes) == 1


def test_partial_cells_are_hatched_and_named_in_the_legend():
    values = paper_values()
    values[(1.0, 0.0)] = math.nan  # failed outright: grey "n/a", not hatched
    failed = {(1.0, 0.0): 1.0, (0.4, 0.4): 1.0}
    missing = {(0.2, 0.2): 3.0, (0.6, 1.0): 0.0}
    view = GridView(title="t", metric="score", values=values, gains=gains_of(values), failed=failed,
                    missing=missing)
    assert view.partial_cells() == [(0.2, 0.2), (0.4, 0.4)]
    fig, ax = new_axes()
    figs.heatmap(ax, view)
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 2 and all(p.get_hatch() == enc.PARTIAL_HATCH for p in hatched)
    assert {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in hatched} == {(1, 1), (2, 2)}
    assert "22.34" in texts_of(ax)  # numbers still printed
    labels = [h.get_label() for h in figs.legend_handles([view])]
    assert enc.PARTIAL_LEGEND in labels
    assert enc.PARTIAL_LEGEND not in [h.get_label() for h in figs.legend_handles([paper_view()])]
    fig = figs.small_multiples([[view]], ["a"], ["SFT"])
    assert enc.PARTIAL_LEGEND in [t.get_text() for t in fig.legends[0].get_texts()]


def test_sparse_three_cell_grid_keeps_only_its_rows_and_columns():
    from matplotlib.patches import Rectangle

    values = {(0.0, 0.0): 10.0, (0.0, 1.0): 20.0, (1.0, 1.0): 25.0}
    view = GridView(title="sparse", metric="score", values=values, gains=gains_of(values), best=[(1.0, 1.0)])
    assert view.lambda_p == [0.0, 1.0] and view.lambda_r == [0.0, 1.0]
    fig, ax = new_axes()
    figs.heatmap(ax, view)
    (cells,) = [c for c in ax.collections if c.get_label() == figs.CELLS_LABEL]
    assert len(cells.get_paths()) == 3
    empty = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_facecolor()[3] == 0]
    assert len(empty) == 1  # the (1, 0) position: outlined, no checkpoint
    assert texts_of(ax).count("25.00") == 1 and "n/a" not in texts_of(ax)  # (1, 0) is empty, not "n/a"
    # a grid without a base
    view = GridView(title="no base", metric="posix", values={(0.0, 1.0): 0.5, (0.5, 1.0): 0.4},
                    gains={(0.0, 1.0): 0.0, (0.5, 1.0): 20.0})
    assert view.base is None
    figs.heatmap(new_axes()[1], view)


def small_sheet(n: int = 6):
    rows = []
    for k in range(n):
        sft = paper_view(best=[(0.6, 1.0)], not_significant={(0.2, 0.2)})
        dpo = paper_view(best=[(0.6, 1.0)], sft_best=(0.6, 1.0))
        rows.append([sft, dpo if k != 2 else None, paper_view()])
    return rows


def test_small_multiples_layout():
    fig = figs.small_multiples(small_sheet(), [f"b{k}" for k in range(6)], ["SFT", "DPO", "ΔDPO"], title="x")
    assert len(fig.axes) == 18 and len(fig.legends) == 1
    assert sum(1 for ax in fig.axes if ax.collections) == 17  # one empty (None) panel
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("not significantly different" in t for t in legend) and any("SFT-best" in t for t in legend)


def test_byte_identical_saves(tmp_path):
    # a 3 × 3 sheet (with an empty panel) keeps this test quick; the 6 × 3 one is timed in the report benchmark
    fig = figs.small_multiples(small_sheet(2), ["a", "b"], ["SFT", "DPO", "ΔDPO"], title="x")
    paths_a = figs.save(fig, tmp_path / "a" / "sheet")
    paths_b = figs.save(fig, tmp_path / "b" / "sheet")  # the same figure saved again (no layout drift)
    fig2 = figs.small_multiples(small_sheet(2), ["a", "b"], ["SFT", "DPO", "ΔDPO"], title="x")
    paths_c = figs.save(fig2, tmp_path / "c" / "sheet", ("svg",))  # rebuilt: same bytes too
    assert [p.suffix for p in paths_a] == [".svg", ".pdf", ".png"]
    for a, b in zip(paths_a, paths_b):
        assert a.stat().st_size > 1000
        assert a.read_bytes() == b.read_bytes(), a.name
    assert paths_c[0].read_bytes() == paths_a[0].read_bytes()
    assert paths_a[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"CreationDate" not in paths_a[1].read_bytes() and b"<dc:date>" not in paths_a[0].read_bytes()


def test_plw_figure_one_line_per_experiment(tmp_path):
    rows = []
    for exp, shift in (("m/short", 0.0), ("m/long", 5.0)):
        for bench in ("mmlu", "aggregate_paper"):
            for p in LAMBDAS:
                v = 30 + shift + p
                rows.append({"experiment": exp, "stage": "sft", "benchmark": bench, "lambda_p": p, "lambda_r": 1.0,
                             "value": v, "low": v - 1, "high": v + 1})
    fig = figs.plw_figure(pd.DataFrame(rows))
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 2 and all(len(ax.lines) == 2 for ax in panels)
    assert all(len(ax.collections) == 2 for ax in panels)  # a CI band per line
    paths = figs.save(fig, tmp_path / "plw", ("svg",))
    assert paths[0].read_bytes() == figs.save(fig, tmp_path / "plw2", ("svg",))[0].read_bytes()


def test_paper_figures_from_the_shipped_grids(tmp_path):
    from evalsuite.analysis import paper_grids

    frame = paper_grids()
    frame = frame[frame["experiment"] == "Llama-3.2-1B/Tulu-v2"]
    paths = figs.paper_figures(frame, tmp_path, formats=("png",))
    names = sorted(p.name for p in paths)
    assert len(names) == 3 and "plw.png" in names
    assert any(n.endswith("_score.png") for n in names) and any(n.endswith("_posix.png") for n in names)
    assert len({figs.slug("a/b#1"), figs.slug("a_b#1"), figs.slug("a/b_1")}) == 3  # stems never collide


def test_experiment_sheet_marks_sft_best_and_colours_delta_by_sign():
    from evalsuite.analysis import relative_gain

    sft = {(0.0, 0.0): 10.0, (0.0, 1.0): 20.0, (0.5, 1.0): 24.0, (1.0, 1.0): 22.0}
    dpo = {(0.0, 0.0): 10.0, (0.0, 1.0): 21.0, (0.5, 1.0): 23.0, (1.0, 1.0): 26.0}
    frame = pd.concat([frame_rows("e", "sft", "mmlu", sft), frame_rows("e", "dpo", "mmlu", dpo)], ignore_index=True)
    rows, row_labels, col_labels = figs.experiment_sheet(relative_gain(frame), "e")
    assert col_labels == ["SFT", "DPO", "ΔDPO"] and row_labels == ["MMLU"]
    s, d, delta = rows[0]
    assert s.best == [(0.5, 1.0)] and d.best == [(1.0, 1.0)] and d.sft_best == (0.5, 1.0)
    assert delta.values == {(0.0, 1.0): 1.0, (0.5, 1.0): -1.0, (1.0, 1.0): 4.0} and delta.best == []
    colors = delta.colors()
    assert colors[(1.0, 1.0)] == cmap_hex(1.0) and colors[(0.5, 1.0)] == cmap_hex(0.0)


def test_condition_sheet_puts_kinds_side_by_side():
    from evalsuite.analysis import relative_gain

    values = {(0.0, 0.0): 0.5, (0.0, 1.0): 0.4, (1.0, 1.0): 0.3}
    frame = pd.concat([frame_rows("e", "sft", b, values, "posix", k) for b in ("bbh", "mmlu")
                       for k in ("typo", "format")], ignore_index=True)
    rows, row_labels, col_labels = figs.condition_sheet(relative_gain(frame), "e")
    assert row_labels == ["MMLU", "BBH"] and col_labels == ["format", "typo"]
    view = rows[0][0]
    assert view.best == [(1.0, 1.0)] and view.gains[(1.0, 1.0)] == pytest.approx(25.0)  # lower POSIX is better
    assert view.colors()[(1.0, 1.0)] == cmap_hex(1.0)


# ---- tables --------------------------------------------------------------------------------------------------


def frame_rows(experiment, stage, benchmark, values, metric="score", condition="clean", p=None) -> pd.DataFrame:
    p = p or {}
    return pd.DataFrame([{
        "experiment": experiment, "stage": stage, "lambda_p": c[0], "lambda_r": c[1], "is_base": c == (0.0, 0.0),
        "benchmark": benchmark, "condition": condition, "metric": metric, "value": v, "low": v - 1, "high": v + 1,
        "n": 100.0, "failed": 0, "missing": 0, "p_vs_0_1": p.get(c, math.nan)} for c, v in values.items()])


def test_optimum_gains_and_dpo_tables():
    sft = {(0.0, 0.0): 10.0, (0.0, 1.0): 20.0, (0.5, 1.0): 25.0, (1.0, 1.0): 25.0}
    dpo = {(0.0, 0.0): 10.0, (0.0, 1.0): 20.0, (0.5, 1.0): 22.0, (1.0, 1.0): 30.0}
    frame = pd.concat([frame_rows("m/d#1", "sft", "aggregate_paper", sft),
                       frame_rows("m/d#1", "dpo", "aggregate_paper", dpo),
                       frame_rows("m/d#1", "sft", "mmlu_generative", sft)], ignore_index=True)
    t2 = tabs.optimum_table(frame)
    row = t2[t2["benchmark"] == "mmlu_generative"].iloc[0]
    assert row["optimal (λp, λr)"] == "(0.5, 1); (1, 1)" and row["value"] == 25.0 and row["gain %"] == 25.0
    t1 = tabs.gains_table(frame)
    assert list(t1.columns)[0] == "experiment" and t1.iloc[0]["mmlu_generative gain %"] == 25.0
    t3 = tabs.dpo_table(frame)
    assert list(t3["experiment"]) == ["m/d#1", "mean over 1"]
    first = t3.iloc[0]
    assert first["best DPO cell(s)"] == "(1, 1)" and first["gain best %"] == 50.0
    assert first["SFT-best cell"] == "(0.5, 1)" and first["gain SFT-best %"] == 10.0
    assert t3.iloc[1]["gain best %"] == 50.0
    tables = tabs.report_tables(frame)
    assert {"table2_optimum", "table1_gains", "table3_dpo"} <= set(tables)


def test_tables_carry_failed_and_unscored_counts():
    sft = {(0.0, 0.0): 10.0, (0.0, 1.0): 20.0, (0.5, 1.0): 25.0, (1.0, 1.0): 25.0, (1.0, 0.5): math.nan}
    dpo = {(0.0, 0.0): 10.0, (0.0, 1.0): 20.0, (0.5, 1.0): 22.0, (1.0, 1.0): 30.0}

    def with_counts(rows, failed, missing):
        cells = list(zip(rows["lambda_p"], rows["lambda_r"]))
        return rows.assign(failed=[failed.get(c, 0) for c in cells], missing=[missing.get(c, 0) for c in cells])

    frame = pd.concat([
        with_counts(frame_rows("e", "sft", "mmlu", sft), {(1.0, 0.5): 1}, {(0.5, 1.0): 2, (1.0, 1.0): 3, (0.0, 1.0): 4}),
        with_counts(frame_rows("e", "dpo", "mmlu", dpo), {}, {(1.0, 1.0): 5, (0.0, 1.0): 1}),
    ], ignore_index=True)
    t2 = tabs.optimum_table(frame)
    row = t2.iloc[0]
    assert row["benchmark"] == "MMLU" and row["optimal (λp, λr)"] == "(0.5, 1); (1, 1)"
    assert list(t2.columns[3:6]) == ["value", "failed", "unscored"]
    assert (row["failed"], row["unscored"]) == (0, 5)  # summed over the tied optimal cells
    assert (row["IT failed"], row["IT unscored"], row["cells n/a"]) == (0, 4, 1)
    t1 = tabs.gains_table(frame)
    assert list(t1.columns) == ["experiment", "MMLU gain %", "MMLU failed", "MMLU unscored"]
    assert t1.iloc[0]["MMLU unscored"] == 9 and t1.iloc[0]["MMLU failed"] == 0  # best cells + IT
    pl = tabs.plasticity_table(frame)
    first = pl.iloc[0]
    assert first["benchmark"] == "MMLU" and {"failed", "unscored"} <= set(pl.columns)
    # DPO: (0, 1) 1 + best (1, 1) 5 + SFT-best (0.5, 1) 0; SFT: SFT-best (0.5, 1) 2
    assert (first["failed"], first["unscored"]) == (0, 8)


def test_benchmark_label_is_the_display_label():
    assert [tabs.benchmark_label(b) for b in ("mmlu", "bbh", "alpacaeval", "ifeval", "mtbench")] == [
        "MMLU", "BBH", "AlpacaEval", "IFEval", "MT-Bench"]
    assert tabs.benchmark_label("aggregate_paper") == "Paper's aggregate (=1.25× mean)"
    assert tabs.benchmark_label("mean") == "Mean of five"
    assert tabs.benchmark_label("my_task") == "my_task"


def test_robustness_table_per_cell_and_kind():
    frames = []
    for kind in ("typo", "format"):
        for metric, v in (("agreement", 90.0), ("correct_to_wrong", 5.0), ("posix", 0.12345)):
            frames.append(frame_rows("e", "sft", "mmlu", {(0.0, 1.0): v, (1.0, 1.0): v + 1}, metric, kind))
    frames.append(frame_rows("e", "sft", "mmlu", {(0.0, 1.0): 50.0}))  # clean score: not in the summary
    table = tabs.robustness_table(pd.concat(frames, ignore_index=True))
    assert list(table.columns) == ["experiment", "stage", "cell", "benchmark", "kind", "agreement",
                                   "correct_to_wrong", "posix", "failed", "unscored"]
    assert len(table) == 4 and list(table["cell"]) == ["(0, 1)", "(0, 1)", "(1, 1)", "(1, 1)"]
    assert table.iloc[0]["posix"] == 0.123
    assert "0.123" in tabs.to_latex(table)


def test_robustness_table_keeps_base_once_and_counts_per_row():
    frames = []
    for stage in ("sft", "dpo"):
        rows = frame_rows("e", stage, "mmlu", {(0.0, 0.0): 80.0, (0.0, 1.0): 90.0}, "agreement", "typo")
        frames.append(rows.assign(missing=[2, 1 if stage == "dpo" else 0], failed=[0, 0]))
    table = tabs.robustness_table(pd.concat(frames, ignore_index=True))
    assert list(table["stage"]) == ["base", "sft", "dpo"] and list(table["cell"]) == ["(0, 0)", "(0, 1)", "(0, 1)"]
    assert list(table["unscored"]) == [2, 0, 1] and list(table["failed"]) == [0, 0, 0]
    assert table.iloc[0]["benchmark"] == "MMLU"


def test_latex_escapes_names_and_files_are_deterministic(tmp_path):
    prov = tabs.provenance_table([
        {"experiment": "Llama/tulu#ab12cd34", "task": "mmlu_generative", "judge": {"model": "j", "kind": "openai"},
         "note": "100% & {x} ~ ^ \\ $"},
        {"experiment": "base", "task": "bbh_zeroshot", "judge": None},
    ])
    assert prov.iloc[0]["judge"] == '{"kind": "openai", "model": "j"}'
    tex = tabs.to_latex(prov)
    assert r"mmlu\_generative" in tex and r"tulu\#ab12cd34" in tex
    assert r"100\% \& \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$" in tex
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert tabs.latex_escape("optimal (λp, λr) ΔDPO") == r"optimal ($\lambda_p$, $\lambda_r$) $\Delta$DPO"
    tables = {"provenance": prov, "t2": tabs.optimum_table(frame_rows("e", "sft", "mmlu", {(0.0, 1.0): 1.0}))}
    first = tabs.write_tables(tables, tmp_path / "a")
    second = tabs.write_tables(tables, tmp_path / "b")
    assert [p.name for p in first] == ["provenance.csv", "provenance.tex", "t2.csv", "t2.tex"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
    assert b"\r\n" not in first[0].read_bytes()


def test_status_table_shows_every_checkpoint_and_task():
    results = pd.DataFrame([
        {"experiment": "e", "stage": "sft", "lambda_p": 0.0, "lambda_r": 1.0, "checkpoint": "c1", "task": "mmlu",
         "metric": "score", "status": "ok"},
        {"experiment": "e", "stage": "sft", "lambda_p": 0.0, "lambda_r": 1.0, "checkpoint": "c1", "task": "bbh",
         "metric": "status", "status": "failed: out of memory"},
        {"experiment": "e", "stage": "sft", "lambda_p": 1.0, "lambda_r": 1.0, "checkpoint": "c2", "task": "mmlu",
         "metric": "status", "status": "ok"},
    ])
    table = tabs.status_table(results)
    assert list(table["checkpoint"]) == ["c1", "c2"]
    assert table.iloc[0]["bbh"] == "failed: out of memory" and table.iloc[0]["mmlu"] == "ok"
    assert table.iloc[1]["bbh"] == ""  # never evaluated: shown empty, not dropped
    assert "run" not in table.columns


def test_status_table_keys_rows_by_run_and_checkpoint():
    def row(run, task, metric, status):
        return {"run": run, "experiment": "e", "stage": "sft", "lambda_p": 0.0, "lambda_r": 1.0,
                "checkpoint": "c1", "task": task, "metric": metric, "status": status}

    results = pd.DataFrame([row("r1", "mmlu", "status", "failed: oom"), row("r2", "mmlu", "score", "ok"),
                            row("r2", "bbh", "status", "skipped: no data")])
    table = tabs.status_table(results)
    assert list(table.columns[:2]) == ["run", "experiment"] and list(table["run"]) == ["r1", "r2"]
    assert list(table["checkpoint"]) == ["c1", "c1"]
    assert table.iloc[0]["mmlu"] == "failed: oom" and table.iloc[0]["bbh"] == ""
    assert table.iloc[1]["mmlu"] == "ok" and table.iloc[1]["bbh"] == "skipped: no data"
    assert list(tabs.status_table(results.iloc[0:0]).columns) == ["run", "checkpoint"]


def test_settings_sheet_lays_out_models_by_data_like_figure_3():
    from evalsuite import analysis as A

    gained = A.relative_gain(A.paper_grids())
    rows, row_labels, col_labels = figs.settings_sheet(gained, experiments=A.paper_settings())
    assert row_labels == ["Tulu-v2", "Alpaca-Cleaned", "LIMA"]
    assert col_labels == ["Llama-3.2-1B", "Gemma-2-2B", "Llama-3.2-3B", "Mistral-7B", "Llama-3-8B"]
    view = rows[row_labels.index("LIMA")][col_labels.index("Llama-3-8B")]
    assert view.title == "Llama-3-8B/LIMA" and len(view.cells) == 36 and view.base == (0.0, 0.0)
    p = A.plasticity(A.paper_grids()).set_index("experiment").loc["Llama-3-8B/LIMA"]
    assert view.best == p["best_dpo_cells"] and view.sft_best == p["sft_best_cell"]
    sft_rows, _, _ = figs.settings_sheet(gained, stage="sft", experiments=A.paper_settings())
    assert sft_rows[0][0].sft_best is None and sft_rows[0][0].values != rows[0][0].values
