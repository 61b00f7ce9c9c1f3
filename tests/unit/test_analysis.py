"""evalsuite.analysis: constructed grids with known answers, a run's results table turned into a grid frame, and
the WIT paper's published figures reproduced from the shipped grids (recomputed independently from the raw CSV
with plain Python where possible)."""

from __future__ import annotations

import csv
import io
import json
import math
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pytest

from evalsuite import analysis as A
from evalsuite.errors import ConfigError

NAN = float("nan")


# ---------------------------------------------------------------- constructed grid frames


def frame(cells: dict, experiment: str = "e", stage: str = "sft", benchmark: str = "mmlu", metric: str = "score",
          condition: str = "clean") -> pd.DataFrame:
    """A grid frame of one grid: cell → value; (0, 0) is the Base cell."""
    rows = [{"experiment": experiment, "stage": stage, "lambda_p": p, "lambda_r": r, "is_base": (p, r) == (0, 0),
             "benchmark": benchmark, "condition": condition, "metric": metric, "value": v}
            for (p, r), v in cells.items()]
    return A.sort_frame(pd.DataFrame(rows).pipe(_conform))


def _conform(df: pd.DataFrame) -> pd.DataFrame:
    from evalsuite.analysis.frame import conform

    return conform(df)


def cat(*frames: pd.DataFrame) -> pd.DataFrame:
    return A.sort_frame(pd.concat(frames, ignore_index=True))


def gains_by_cell(df: pd.DataFrame) -> dict:
    return {(r.lambda_p, r.lambda_r): r.gain for r in df.itertuples()}


def test_relative_gain_against_the_0_1_cell_of_the_same_grid():
    sft = frame({(0, 0): 40.0, (0, 1): 50.0, (0.2, 1): 55.0, (1, 1): 45.0})
    dpo = frame({(0, 0): 40.0, (0, 1): 60.0, (0.2, 1): 66.0}, stage="dpo")
    out = A.relative_gain(cat(sft, dpo))
    s = gains_by_cell(out[out.stage == "sft"])
    assert s[(0.2, 1)] == pytest.approx(10.0) and s[(1, 1)] == pytest.approx(-10.0) and s[(0, 1)] == 0
    assert s[(0, 0)] == pytest.approx(-20.0)  # Base gets its gain too
    assert gains_by_cell(out[out.stage == "dpo"])[(0.2, 1)] == pytest.approx(10.0)  # its own stage's (0, 1)


def test_relative_gain_lower_is_better_is_flipped_so_positive_is_better():
    posix = frame({(0, 1): 0.5, (0.4, 1): 0.4, (1, 1): 0.6}, benchmark="all", metric="posix")
    g = gains_by_cell(A.relative_gain(posix))
    assert g[(0.4, 1)] == pytest.approx(20.0)  # (IT − v) / IT
    assert g[(1, 1)] == pytest.approx(-20.0)
    assert {"posix", "correct_to_wrong", "performance_drop_rate", "unscored"} <= A.LOWER_IS_BETTER
    assert "score" not in A.LOWER_IS_BETTER and "agreement" not in A.LOWER_IS_BETTER


def test_relative_gain_uses_abs_ref_and_is_nan_without_a_reference():
    neg = frame({(0, 1): -2.0, (1, 1): -1.0}, metric="diff")
    assert gains_by_cell(A.relative_gain(neg))[(1, 1)] == pytest.approx(50.0)
    zero = frame({(0, 1): 0.0, (1, 1): 3.0})
    assert math.isnan(gains_by_cell(A.relative_gain(zero))[(1, 1)])
    no_ref = frame({(0, 0): 1.0, (1, 1): 3.0})
    assert all(math.isnan(v) for v in gains_by_cell(A.relative_gain(no_ref)).values())
    nan_cell = frame({(0, 1): 50.0, (1, 1): NAN})
    assert math.isnan(gains_by_cell(A.relative_gain(nan_cell))[(1, 1)])


def test_best_cells_keeps_ties_in_row_major_order_and_excludes_base():
    grid = {(0, 0): 99.0, (0, 1): 50.0, (0.2, 0.4): 60.0, (0.2, 0.2): 60.0, (1, 0.2): 60.0, (0.6, 1): NAN}
    assert A.best_cells(grid) == [(0.2, 0.2), (0.2, 0.4), (1.0, 0.2)]
    assert A.best_cells(frame(grid)) == [(0.2, 0.2), (0.2, 0.4), (1.0, 0.2)]
    assert A.best_cells(grid, lower_is_better=True) == [(0.0, 1.0)]
    assert A.best_cells({(0, 0): 1.0}) == [] and A.best_cells({(0, 1): NAN}) == []


def test_best_cells_ties_at_the_shown_precision():
    # 2 decimals: 50.004 and 50.001 both read 50.00, a tie; POSIX is shown with 3 decimals
    assert A.best_cells({(0, 1): 50.004, (1, 1): 50.001}) == [(0.0, 1.0), (1.0, 1.0)]
    assert A.best_cells({(0, 1): 50.006, (1, 1): 50.001}) == [(0.0, 1.0)]
    posix = frame({(0, 1): 0.3004, (1, 1): 0.3001, (0.4, 1): 0.3012}, benchmark="all", metric="posix")
    assert A.best_cells(posix) == [(0.0, 1.0), (1.0, 1.0)]  # lower is better, inferred from the metric
    assert A.decimals_for("posix") == 3 and A.decimals_for("score") == 2


def test_optimal_cells_on_a_sparse_three_cell_grid_and_with_ties():
    sparse = frame({(0, 0): 30.0, (0, 1): 40.0, (1, 1): 44.0})
    tied = frame({(0, 1): 5.0, (0.2, 1): 6.0, (0.8, 0.2): 6.0}, benchmark="mtbench")
    t = A.optimal_cells(cat(sparse, tied)).set_index("benchmark")
    assert list(t.index) == ["mmlu", "mtbench"]  # the paper's benchmark order
    assert t.loc["mmlu", "cells"] == [(1.0, 1.0)] and t.loc["mmlu", "value"] == 44.0
    assert t.loc["mmlu", "ref_value"] == 40.0 and t.loc["mmlu", "gain"] == pytest.approx(10.0)
    assert t.loc["mtbench", "cells"] == [(0.2, 1.0), (0.8, 0.2)] and t.loc["mtbench", "ties"] == 2
    assert (t.loc["mtbench", "lambda_p"], t.loc["mtbench", "lambda_r"]) == (0.2, 1.0)
    only_base = frame({(0, 0): 30.0}, benchmark="bbh")
    assert A.optimal_cells(only_base).empty


def test_delta_dpo_per_cell_where_both_stages_have_it():
    sft = frame({(0, 0): 40.0, (0, 1): 50.0, (1, 1): 45.0, (0.2, 1): 47.0})
    dpo = frame({(0, 0): 40.0, (0, 1): 52.0, (1, 1): 44.0}, stage="dpo")
    d = A.delta_dpo(cat(sft, dpo))
    assert set(d.stage) == {"delta"}
    assert {(r.lambda_p, r.lambda_r): r.value for r in d.itertuples()} == {(0, 0): 0.0, (0, 1): 2.0, (1, 1): -1.0}
    assert d.loc[d.is_base, "value"].tolist() == [0.0]


def five(cells_values: dict, experiment="e", stage="sft") -> pd.DataFrame:
    """Grids of the five benchmarks: benchmark → {cell: value}."""
    return cat(*(frame(v, experiment, stage, b) for b, v in cells_values.items()))


def test_paper_aggregate_and_plain_mean():
    f = five({"mmlu": {(0, 1): 40.0, (1, 1): 40.0}, "bbh": {(0, 1): 30.0, (1, 1): 30.0},
              "alpacaeval": {(0, 1): 20.0, (1, 1): 20.0}, "ifeval": {(0, 1): 10.0, (1, 1): NAN},
              "mtbench": {(0, 1): 5.0}})
    agg = A.paper_aggregate(f)
    paper = agg[agg.benchmark == "aggregate_paper"].set_index(["lambda_p", "lambda_r"])
    mean = agg[agg.benchmark == "mean"].set_index(["lambda_p", "lambda_r"])
    assert paper.loc[(0, 1), "value"] == pytest.approx((40 + 30 + 20 + 10 + 50) / 4)
    assert mean.loc[(0, 1), "value"] == pytest.approx((40 + 30 + 20 + 10 + 50) / 5)
    assert paper.loc[(0, 1), "value"] == pytest.approx(1.25 * mean.loc[(0, 1), "value"])
    # (1, 1): IFEval NaN and MT-Bench absent → no aggregate, and how many are missing
    assert math.isnan(paper.loc[(1, 1), "value"]) and paper.loc[(1, 1), "missing_benchmarks"] == 2
    assert paper.loc[(0, 1), "missing_benchmarks"] == 0
    assert A.AGGREGATE_LABELS["aggregate_paper"].startswith("Paper's aggregate")
    both = A.with_aggregates(f)
    assert set(both.benchmark) == set(A.BENCHMARKS) | {"aggregate_paper", "mean"}


def test_plasticity_and_friends_on_a_constructed_grid():
    sft = frame({(0, 0): 10.0, (0, 1): 50.0, (0.2, 1): 55.0, (0.4, 1): 55.0, (1, 1): 40.0},
                benchmark="aggregate_paper")
    dpo = frame({(0, 0): 10.0, (0, 1): 60.0, (0.2, 1): 63.0, (0.4, 1): 54.0, (1, 1): 66.0}, stage="dpo",
                benchmark="aggregate_paper")
    f = cat(sft, dpo)
    p = A.plasticity(f).iloc[0]
    assert p.dpo_ref == 60.0 and p.best_dpo_cells == [(1.0, 1.0)] and p.best_dpo == 66.0
    assert p.gain_best == pytest.approx(10.0)
    assert p.sft_best_cells == [(0.2, 1.0), (0.4, 1.0)] and p.sft_best_cell == (0.2, 1.0)  # ties → first
    assert p.dpo_at_sft_best == 63.0 and p.gain_sft_best == pytest.approx(5.0)
    s = A.plasticity_summary(A.plasticity(f))
    assert s["experiments"] == 1 and s["gain_best"] == pytest.approx(10.0)
    r = A.selection_regret(f).iloc[0]
    assert r.regret == pytest.approx(3.0) and r.regret_pct == pytest.approx(3 / 66 * 100)
    low = A.dpo_lowers_share(f).iloc[0]
    assert (low.lowered, low.cells, low.share) == (1, 4, 25.0)  # only (0.4, 1): 55 → 54; Base left out
    rho = A.sft_dpo_rank_correlation(f).iloc[0]
    assert rho.cells == 4 and -1 <= rho.rho <= 1
    from scipy.stats import spearmanr
    assert rho.rho == pytest.approx(spearmanr([50, 55, 55, 40], [60, 63, 54, 66]).statistic)


def test_plasticity_without_a_dpo_reference_or_second_stage():
    sft = frame({(0, 1): 50.0, (1, 1): 55.0}, benchmark="aggregate_paper")
    dpo = frame({(1, 1): 56.0}, stage="dpo", benchmark="aggregate_paper")
    p = A.plasticity(cat(sft, dpo)).iloc[0]
    assert math.isnan(p.dpo_ref) and math.isnan(p.gain_best) and p.dpo_at_sft_best == 56.0
    assert A.plasticity(sft).empty  # SFT only: nothing to say about DPO
    assert math.isnan(A.plasticity_summary(A.plasticity(sft))["gain_best"])


def test_plw_curve_and_compare_runs():
    f = cat(frame({(0, 0): 1.0, (0, 1): 50.0, (0.4, 1): 52.0, (0.4, 0.2): 70.0}, experiment="short"),
            frame({(0, 1): 40.0, (1, 1): 41.0}, experiment="long"))
    curve = A.plw_curve(f)
    assert [(r.experiment, r.lambda_p, r.value) for r in curve.itertuples()] == [
        ("long", 0.0, 40.0), ("long", 1.0, 41.0), ("short", 0.0, 50.0), ("short", 0.4, 52.0)]
    assert {"low", "high", "n"} <= set(curve.columns)
    b = frame({(0, 0): 1.0, (0, 1): 51.0, (0.4, 1): 52.0, (1, 1): 3.0}, experiment="short")
    c = A.compare_runs(f[f.experiment == "short"], b).set_index(["lambda_p", "lambda_r"])
    assert c.loc[(0, 1), "diff"] == 1.0 and c.loc[(0, 1), "present"] == "both"
    assert c.loc[(1, 1), "present"] == "b_only" and c.loc[(0.4, 0.2), "present"] == "a_only"
    assert math.isnan(c.loc[(1, 1), "diff"])


# ---------------------------------------------------------------- a run's results table

def result(checkpoint, stage, cell, task, benchmark, metric, value, *, experiment="", base_model="org/base-1b",
           condition="clean", scale="proportion", low=None, high=None, n=100.0, status="ok"):
    return {"experiment": experiment, "checkpoint": checkpoint, "stage": stage,
            "lambda_p": cell[0] if cell else None, "lambda_r": cell[1] if cell else None, "parent": None,
            "base_model": base_model, "prompt_format": "tulu", "task": task, "benchmark": benchmark,
            "condition": condition, "metric": metric,
            "score_metric": "score,none" if scale == "rating_1_10" else "exact_match,flexible-extract",
            "scale": scale, "value": value, "low": low, "high": high, "n": n, "status": status}


def results_table() -> pd.DataFrame:
    """Base 1B evaluated once; two experiments on it (SFT + DPO) and one on another base model; MMLU scores as
    proportions, MT-Bench on 1–10, robustness and POSIX rows, a McNemar row, an unscored count, a failed task."""
    E1, E2, E3 = "base-1b/tulu#aaaaaaaa", "base-1b/lima#bbbbbbbb", "base-3b/tulu#cccccccc"
    rows = [
        result("base", "base", None, "mmlu_generative", "mmlu", "score", 0.30, low=0.25, high=0.35),
        result("base", "base", None, "mt_bench", "mtbench", "score", 3.0, scale="rating_1_10"),
        result("base", "hf", None, "mmlu_generative", "mmlu", "score", 0.50, base_model="org/base-3b"),
        result("e1/sft_0_1", "sft", (0.0, 1.0), "mmlu_generative", "mmlu", "score", 0.40, experiment=E1),
        result("e1/sft_0.6_1", "sft", (0.6000000001, 1.0), "mmlu_generative", "mmlu", "score", 0.45,
               experiment=E1, low=0.40, high=0.50),
        result("e1/sft_0.6_1", "sft", (0.6, 1.0), "mmlu_generative", "mmlu", "mcnemar_p_vs_0_1", 0.03,
               experiment=E1),
        result("e1/sft_0.6_1", "sft", (0.6, 1.0), "mmlu_generative", "mmlu", "unscored", 2.0, experiment=E1),
        result("e1/sft_0.6_1", "sft", (0.6, 1.0), "mmlu_generative", "mmlu", "score", 0.44, experiment=E1,
               condition="typo"),
        result("e1/sft_0.6_1", "sft", (0.6, 1.0), "mmlu_generative", "mmlu", "agreement", 0.9, experiment=E1,
               condition="typo"),
        result("e1/sft_0.6_1", "sft", (0.6, 1.0), "mmlu_generative", "mmlu", "posix", 0.31, experiment=E1,
               condition="typo"),
        result("e1/sft_0.6_1", "sft", (0.6, 1.0), "mt_bench", "mtbench", "score", 5.5, experiment=E1,
               scale="rating_1_10"),
        result("e1/sft_0.6_1", "sft", (0.6, 1.0), "mmlu_generative", "mmlu", "status", None, experiment=E1,
               condition="all"),
        result("e1/dpo_0.6_1", "dpo", (0.6, 1.0), "mmlu_generative", "mmlu", "score", 0.47, experiment=E1),
        # MT-Bench failed on this DPO cell: no score row, only the status
        {**result("e1/dpo_0.6_1", "dpo", (0.6, 1.0), "mt_bench", None, "status", None, experiment=E1,
                  condition="all", scale=None), "status": "failed: judge unreachable"},
        result("e2/sft_1_1", "sft", (1.0, 1.0), "mmlu_generative", "mmlu", "score", 0.41, experiment=E2),
        result("e3/sft_0_1", "sft", (0.0, 1.0), "mmlu_generative", "mmlu", "score", 0.55, experiment=E3,
               base_model="org/base-3b"),
        result("bare", "hf", None, "mmlu_generative", "mmlu", "score", 0.1, base_model=None),
    ]
    return pd.DataFrame(rows)


def row(f: pd.DataFrame, **where) -> pd.Series:
    got = A.select(f, **where)
    assert len(got) == 1, got
    return got.iloc[0]


def test_grid_from_results_scales_values_to_the_papers_scale():
    f = A.grid_from_results(results_table())
    e1 = "base-1b/tulu#aaaaaaaa"
    r = row(f, experiment=e1, stage="sft", lambda_p=0.6, benchmark="mmlu", condition="clean", metric="score")
    assert r.value == pytest.approx(45.0) and (r.low, r.high) == pytest.approx((40.0, 50.0))
    assert r.p_vs_0_1 == 0.03 and r.missing == 2 and r.failed == 0 and r.lambda_p == 0.6
    assert row(f, experiment=e1, stage="sft", lambda_p=0.6, benchmark="mtbench", metric="score").value == 5.5
    typo = dict(experiment=e1, stage="sft", lambda_p=0.6, benchmark="mmlu", condition="typo")
    assert row(f, **typo, metric="agreement").value == pytest.approx(90.0)
    assert row(f, **typo, metric="posix").value == pytest.approx(0.31)  # not a proportion
    assert math.isnan(row(f, **typo, metric="score").p_vs_0_1)
    assert not f.metric.isin(["status", "mcnemar_p_vs_0_1"]).any()
    assert list(f.columns[:len(A.GRID_COLUMNS)]) == A.GRID_COLUMNS


def test_grid_from_results_attaches_base_to_every_experiment_of_its_model_under_both_stages():
    f = A.grid_from_results(results_table())
    base = f[f.is_base]
    got = {(r.experiment, r.stage, r.benchmark, r.value) for r in base.itertuples()}
    for e in ("base-1b/tulu#aaaaaaaa", "base-1b/lima#bbbbbbbb"):
        for stage in ("sft", "dpo"):
            assert (e, stage, "mmlu", 30.0) in got and (e, stage, "mtbench", 3.0) in got
    assert {(r.experiment, r.stage, r.value) for r in base.itertuples() if r.experiment.startswith("base-3b")} == {
        ("base-3b/tulu#cccccccc", "sft", 50.0), ("base-3b/tulu#cccccccc", "dpo", 50.0)}
    assert (base.lambda_p == 0).all() and (base.lambda_r == 0).all()
    assert "" not in set(f.experiment)  # the bare HF dir with no base model is on no grid


def test_grid_from_results_shows_a_failed_task_as_a_nan_cell():
    f = A.grid_from_results(results_table())
    r = row(f, experiment="base-1b/tulu#aaaaaaaa", stage="dpo", lambda_p=0.6, benchmark="mtbench", metric="score")
    assert math.isnan(r.value) and r.failed == 1
    ok = row(f, experiment="base-1b/tulu#aaaaaaaa", stage="dpo", lambda_p=0.6, benchmark="mmlu", metric="score")
    assert ok.failed == 0 and ok.value == pytest.approx(47.0)
    agg = A.paper_aggregate(f)
    assert agg.value.isna().all()  # the constructed run never has all five benchmarks


def test_grid_from_results_refuses_two_checkpoints_on_one_cell():
    t = results_table()
    dup = t.iloc[[3]].assign(checkpoint="e1/sft_0_1_again")
    with pytest.raises(ConfigError, match="e1/sft_0_1_again"):
        A.grid_from_results(pd.concat([t, dup], ignore_index=True))
    second_base = t.iloc[[0]].assign(checkpoint="base-again", stage="hf")  # one base model evaluated twice
    with pytest.raises(ConfigError, match="base-again"):
        A.grid_from_results(pd.concat([t, second_base], ignore_index=True))


def test_grid_cells_gives_one_grid_in_row_major_order():
    f = A.grid_from_results(results_table())
    where = dict(experiment="base-1b/tulu#aaaaaaaa", stage="sft", benchmark="mmlu", condition="clean",
                 metric="score")
    assert A.grid_cells(f, **where) == {(0.0, 0.0): 30.0, (0.0, 1.0): 40.0, (0.6, 1.0): 45.0}
    with pytest.raises(ValueError, match="several grids"):
        A.grid_cells(f, experiment="base-1b/tulu#aaaaaaaa", benchmark="mmlu", condition="clean", metric="score")


def test_grid_from_runs_takes_base_from_the_own_run_else_the_first_that_has_one():
    t = results_table()
    e1 = "base-1b/tulu#aaaaaaaa"
    later = t[t.experiment == e1].assign(experiment="base-1b/alpaca#dddddddd")  # its run has no base
    again = t[t.checkpoint == "base"].assign(value=0.9)  # the base re-evaluated in a second run
    run2 = pd.concat([later, again.iloc[[0]]], ignore_index=True)
    f = A.grid_from_runs([t, run2])
    base = f[f.is_base & (f.benchmark == "mmlu") & (f.stage == "sft")].set_index("experiment")["value"]
    assert base[e1] == pytest.approx(30.0) and base["base-1b/alpaca#dddddddd"] == pytest.approx(90.0)
    run3 = t[t.experiment == e1].assign(experiment="base-1b/alpaca#dddddddd")
    f = A.grid_from_runs([t, run3])  # no base in its own run: the first run's
    base = f[f.is_base & (f.benchmark == "mmlu") & (f.stage == "dpo")].set_index("experiment")["value"]
    assert base["base-1b/alpaca#dddddddd"] == pytest.approx(30.0)
    src = f[f.is_base].groupby("experiment")["base_source"].agg(set)
    assert src["base-1b/alpaca#dddddddd"] == {"run 0"} and src[e1] == {""}  # borrowed vs its own run's
    assert set(f.loc[~f.is_base, "base_source"]) == {""}
    named = A.grid_from_runs([t, run3], sources=["runs/a", "runs/b"])
    assert set(named.loc[named.is_base & (named.experiment == "base-1b/alpaca#dddddddd"), "base_source"]) == {
        "runs/a"}
    with pytest.raises(ConfigError, match="two results for one grid cell"):
        A.grid_from_runs([t, t])


def test_grid_frame_reads_run_folders(tmp_path: Path):
    """grid_frame goes through evalsuite.run.records.read_run (records_version 2). ASSUMED here: read_run needs
    run.json with records_version 2 and results.parquet with the spec's columns; the other tables are written
    empty with the spec's columns in case it reads them."""
    t = results_table()
    for name, part in (("a", t[~t.experiment.isin(["base-3b/tulu#cccccccc"])]),
                       ("b", t[t.base_model == "org/base-3b"])):
        run = tmp_path / name
        run.mkdir()
        part.to_parquet(run / "results.parquet", index=False)
        (run / "run.json").write_text(json.dumps({"records_version": 2}))
        for table, columns in (("items", ["experiment", "checkpoint", "task", "condition", "item_id", "variant"]),
                               ("prompts", ["task", "condition", "item_id", "variant", "prompt"]),
                               ("checkpoints", ["experiment", "checkpoint", "stage"])):
            pd.DataFrame(columns=columns).to_parquet(run / f"{table}.parquet", index=False)
    f = A.grid_frame([tmp_path / "a", tmp_path / "b"])
    assert set(f.experiment) == {"base-1b/tulu#aaaaaaaa", "base-1b/lima#bbbbbbbb", "base-3b/tulu#cccccccc"}
    assert {"aggregate_paper", "mean"} <= set(f.benchmark)
    with pytest.raises(ConfigError):
        A.grid_frame([tmp_path / "a", tmp_path / "a"])  # the same cells twice are not pooled


# ---------------------------------------------------------------- the paper's grids

def raw_grids() -> dict[tuple[str, str, str, str], dict[tuple[float, float], float]]:
    """The shipped CSV read with the csv module: (model, dataset, stage, metric) → trained cell → value."""
    text = files("evalsuite.analysis").joinpath("data", "wit_paper_grids.csv").read_text(encoding="utf-8")
    grids: dict = {}
    for r in csv.DictReader(io.StringIO(text)):
        if r["cell"] == "wit":
            key = (r["model"], r["dataset"], r["stage"], r["metric"])
            grids.setdefault(key, {})[(float(r["lambda_p"]), float(r["lambda_r"]))] = float(r["value"])
    return grids


def raw_settings(grids: dict) -> set[tuple[str, str]]:
    return {(model, dataset) for model, dataset, _, _ in grids}


def test_paper_grids_loader():
    f = A.paper_grids()
    assert len(f) == 15 * 36 * 8 and len(A.paper_settings()) == 15
    assert set(f.benchmark) == set(A.BENCHMARKS) | {"aggregate_paper", "all"}
    assert set(f.loc[f.benchmark == "all", "metric"]) == {"posix"} and set(f.condition) == {"clean"}
    assert f.is_base.sum() == 15 * 8 and set(f[f.is_base][["lambda_p", "lambda_r"]].itertuples(index=False)) == {(0, 0)}
    assert set(f.loc[f.stage == "dpo", "benchmark"]) == {"aggregate_paper"}
    assert A.paper_setting("llama-3.2-1b:tulu-v2") == "Llama-3.2-1B/Tulu-v2"
    with pytest.raises(ConfigError, match="Llama-3.2-1B:Tulu-v2"):
        A.paper_setting("Llama-3.2-1B:Tulu")
    assert "2507.07817" in A.PAPER_CITATION and "TACL" in A.PAPER_CITATION


def test_paper_plasticity_8_01_and_2_44():
    s = A.plasticity_summary(A.plasticity(A.paper_grids()))
    assert s["experiments"] == 15
    assert abs(round(s["gain_best"], 2) - 8.01) < 0.005
    assert abs(round(s["gain_sft_best"], 2) - 2.44) < 0.005
    # independently, from the raw CSV in plain Python
    grids = raw_grids()
    best, at_sft_best = [], []
    for setting in raw_settings(grids):
        sft, dpo = grids[(*setting, "sft", "avg5_x1.25")], grids[(*setting, "dpo", "avg5_x1.25")]
        ref = dpo[(0.0, 1.0)]
        top = max(sft.values())
        first = min(c for c, v in sft.items() if v == top)  # row-major first of the ties
        best.append((max(dpo.values()) - ref) / ref * 100)
        at_sft_best.append((dpo[first] - ref) / ref * 100)
    assert sum(best) / 15 == pytest.approx(s["gain_best"], abs=1e-9)
    assert sum(at_sft_best) / 15 == pytest.approx(s["gain_sft_best"], abs=1e-9)


def test_paper_best_lambda_p_at_most_0_6_in_61_of_75():
    f = A.paper_grids()
    assert A.best_lambda_p_share(f) == (61, 75)
    assert A.best_lambda_p_share(f, rule="all") == (59, 75)
    assert A.best_lambda_p_share(f, rule="last") == (59, 75)
    grids = raw_grids()
    count = 0
    settings = raw_settings(grids)
    for setting in settings:
        for metric in A.BENCHMARKS:
            grid = grids[(*setting, "sft", metric)]
            top = max(grid.values())
            count += min(p for (p, _), v in grid.items() if v == top) <= 0.6
    assert (count, len(settings) * len(A.BENCHMARKS)) == (61, 75)


def test_paper_aggregate_reproduces_the_printed_avg5():
    f = A.paper_grids()
    mine = A.paper_aggregate(f)
    mine = mine[mine.benchmark == "aggregate_paper"]
    printed = f[(f.benchmark == "aggregate_paper") & (f.stage == "sft")]
    key = ["experiment", "lambda_p", "lambda_r"]
    both = mine.merge(printed, on=key, suffixes=("_mine", "_printed"))
    assert len(both) == 15 * 36 and (mine.missing_benchmarks == 0).all()
    # each of the four percentages is rounded to ±0.005 and MT-Bench to ±0.005 (×10 / 4), the print to ±0.005
    bound = (4 * 0.005 + 10 * 0.005) / 4 + 0.005
    diff = (both.value_mine - both.value_printed).abs().max()
    assert diff <= bound + 1e-9 and diff == pytest.approx(0.02, abs=1e-9)
    # with_aggregates keeps the printed numbers and adds the plain mean
    w = A.with_aggregates(f)
    assert len(w[w.benchmark == "aggregate_paper"]) == len(f[f.benchmark == "aggregate_paper"])
    assert len(w[w.benchmark == "mean"]) == 15 * 36


def test_paper_extras_rank_correlation_lowered_share_regret():
    f = A.paper_grids()
    rho = A.sft_dpo_rank_correlation(f)
    assert len(rho) == 15 and (rho.cells == 35).all() and rho.rho.between(-1, 1).all()
    low = A.dpo_lowers_share(f)
    grids = raw_grids()
    sft, dpo = grids[("Llama-3-8B", "LIMA", "sft", "avg5_x1.25")], grids[("Llama-3-8B", "LIMA", "dpo", "avg5_x1.25")]
    expected = sum(dpo[c] < sft[c] for c in sft)
    assert low.set_index("experiment").loc["Llama-3-8B/LIMA", "lowered"] == expected
    regret = A.selection_regret(f)
    assert (regret.regret >= 0).all()
    p = A.plasticity(f).set_index("experiment")
    r = regret.set_index("experiment")
    assert (r.regret == p.best_dpo - p.dpo_at_sft_best).all()


def test_two_tasks_of_one_benchmark_in_a_run_are_separate_grids_named_by_task():
    E = "base-1b/tulu#aaaaaaaa"
    rows = [result("base", "base", None, "mmlu_generative", "mmlu", "score", 0.30),
            result("base", "base", None, "mmlu_loglikelihood", "mmlu", "score", 0.35),
            result("base", "base", None, "bbh_zeroshot", "bbh", "score", 0.20)]
    for cell in ((0.0, 1.0), (1.0, 1.0)):
        ck = f"sft_{cell[0]:g}"
        rows += [result(ck, "sft", cell, "mmlu_generative", "mmlu", "score", 0.40 + cell[0] / 10, experiment=E),
                 result(ck, "sft", cell, "bbh_zeroshot", "bbh", "score", 0.25, experiment=E)]
    rows.append(result("sft_0", "sft", (0.0, 1.0), "mmlu_loglikelihood", "mmlu", "score", 0.50, experiment=E))
    rows.append({**result("sft_1", "sft", (1.0, 1.0), "mmlu_loglikelihood", None, "status", None, experiment=E,
                          condition="all", scale=None), "status": "failed: out of memory"})
    f = A.grid_from_results(pd.DataFrame(rows))  # no duplicate-cell ConfigError
    assert {"mmlu_generative", "mmlu_loglikelihood", "bbh"} <= set(f.benchmark) and "mmlu" not in set(f.benchmark)
    assert A.grid_cells(f, experiment=E, stage="sft", benchmark="mmlu_generative", condition="clean",
                        metric="score") == pytest.approx({(0, 0): 30.0, (0, 1): 40.0, (1, 1): 50.0})
    failed = row(f, experiment=E, stage="sft", lambda_p=1.0, benchmark="mmlu_loglikelihood", metric="score")
    assert math.isnan(failed.value) and failed.failed == 1  # the status row without a benchmark found its task
    agg = A.paper_aggregate(f)
    agg = agg[agg.benchmark == "aggregate_paper"]
    assert agg.value.isna().all() and (agg.missing_benchmarks == 4).all()  # only bbh is a plain benchmark name
    # one task per benchmark: the registry name stays
    assert "mmlu" in set(A.grid_from_results(results_table()).benchmark)


def test_failures_spread_to_every_condition_of_the_task_and_skipped_kinds_get_a_nan_cell():
    E = "base-1b/tulu#aaaaaaaa"
    rows = []
    for ck, cell in (("sft_0", (0.0, 1.0)), ("sft_1", (1.0, 1.0))):
        for cond in ("clean", "typo", "format"):
            rows.append(result(ck, "sft", cell, "mmlu_generative", "mmlu", "score", 0.5, experiment=E,
                               condition=cond))
    # sft_0.5 failed to load: only a status row; sft_0.2 failed after clean
    rows.append({**result("sft_0.5", "sft", (0.5, 1.0), "mmlu_generative", "mmlu", "status", None, experiment=E,
                          condition="all"), "status": "failed: could not load"})
    rows.append(result("sft_0.2", "sft", (0.2, 1.0), "mmlu_generative", "mmlu", "score", 0.45, experiment=E))
    rows.append({**result("sft_0.2", "sft", (0.2, 1.0), "mmlu_generative", "mmlu", "status", None, experiment=E,
                          condition="all"), "status": "failed: CUDA error"})
    # sft_1 cannot be asked the template kind
    rows.append({**result("sft_1", "sft", (1.0, 1.0), "mmlu_generative", "mmlu", "status", None, experiment=E,
                          condition="template"), "status": "skipped: no chat template"})
    f = A.grid_from_results(pd.DataFrame(rows))
    assert list(f.columns[:len(A.GRID_COLUMNS)]) == A.GRID_COLUMNS and A.GRID_COLUMNS[-1] == "status"
    where = dict(experiment=E, stage="sft", benchmark="mmlu", metric="score")
    for lp in (0.5, 0.2):
        for cond in ("typo", "format", "template"):  # template: named by another checkpoint's status
            r = row(f, **where, lambda_p=lp, condition=cond)
            assert math.isnan(r.value) and r.failed == 1 and r.status.startswith("failed: "), (lp, cond)
    assert math.isnan(row(f, **where, lambda_p=0.5, condition="clean").value)
    clean = row(f, **where, lambda_p=0.2, condition="clean")
    assert clean.value == pytest.approx(45.0) and clean.failed == 1 and clean.status == "failed: CUDA error"
    skipped = row(f, **where, lambda_p=1.0, condition="template")
    assert math.isnan(skipped.value) and skipped.failed == 0 and skipped.status == "skipped: no chat template"
    ok = row(f, **where, lambda_p=1.0, condition="typo")
    assert ok.value == pytest.approx(50.0) and ok.failed == 0 and ok.status == ""
    assert A.with_aggregates(f).status.notna().all() and A.delta_dpo(f).status.eq("").all()


def test_optimal_cells_value_and_gain_are_those_of_the_first_tied_cell():
    # 60.004 and 60.001 are both 60.00 as shown: a tie, the first in row-major order is (0.2, 1)
    f = frame({(0, 1): 50.0, (0.2, 1): 60.001, (0.4, 1): 60.004})
    o = A.optimal_cells(f).iloc[0]
    assert o.cells == [(0.2, 1.0), (0.4, 1.0)] and (o.lambda_p, o.lambda_r) == (0.2, 1.0)
    assert o.value == 60.001 and o.gain == pytest.approx((60.001 - 50) / 50 * 100)


def test_plasticity_summary_counts_only_experiments_with_a_gain():
    table = pd.DataFrame({"experiment": ["a", "b", "c"], "gain_best": [10.0, NAN, 20.0],
                          "gain_sft_best": [NAN, NAN, 4.0]})
    s = A.plasticity_summary(table)
    assert s["experiments"] == 3
    assert (s["gain_best"], s["gain_best_n"]) == (15.0, 2) and (s["gain_sft_best"], s["gain_sft_best_n"]) == (4.0, 1)
    none = A.plasticity_summary(table.assign(gain_best=NAN))
    assert math.isnan(none["gain_best"]) and none["gain_best_n"] == 0


def test_cell_chosen_by_another_benchmarks_sft_grid():
    """selection_by_benchmark: MMLU's SFT grid picks (1, 1), the aggregate's picks (0.2, 1); DPO is read on the
    aggregate both times."""
    agg_sft = frame({(0, 1): 50.0, (0.2, 1): 55.0, (1, 1): 40.0}, benchmark="aggregate_paper")
    mmlu_sft = frame({(0, 1): 30.0, (0.2, 1): 31.0, (1, 1): 35.0}, benchmark="mmlu")
    agg_dpo = frame({(0, 1): 60.0, (0.2, 1): 63.0, (1, 1): 54.0}, stage="dpo", benchmark="aggregate_paper")
    f = cat(agg_sft, mmlu_sft, agg_dpo)
    t = A.selection_by_benchmark(f, ["aggregate_paper", "mmlu"]).set_index("sft_benchmark")
    assert t.loc["aggregate_paper", "sft_best_cell"] == (0.2, 1.0) and t.loc["mmlu", "sft_best_cell"] == (1.0, 1.0)
    assert t.loc["mmlu", "dpo_at_sft_best"] == 54.0 and t.loc["mmlu", "gain_sft_best"] == pytest.approx(-10.0)
    assert t.loc["mmlu", "regret"] == pytest.approx(9.0) and not t.loc["mmlu", "picked_best"]
    assert t.loc["aggregate_paper", "picked_best"] and t.loc["aggregate_paper", "regret"] == 0
    from scipy.stats import spearmanr

    assert t.loc["mmlu", "rho"] == pytest.approx(spearmanr([30, 31, 35], [60, 63, 54]).statistic)
    s = A.selection_summary(A.selection_by_benchmark(f, ["aggregate_paper", "mmlu"])).set_index("sft_benchmark")
    assert s.loc["mmlu", "mean_gain_sft_best"] == pytest.approx(-10.0) and s.loc["mmlu", "picked_best"] == 0


def test_plasticity_extras_hides_rho_below_the_cells_it_needs_and_pools_the_share():
    sft = cat(frame({(0, 1): 50.0, (0.2, 1): 55.0, (1, 1): 40.0}, benchmark="aggregate_paper"),
              frame({(0, 1): 50.0, (0.2, 1): 55.0, (1, 1): 40.0}, experiment="f", benchmark="aggregate_paper"))
    dpo = cat(frame({(0, 1): 60.0, (0.2, 1): 54.0, (1, 1): 66.0}, stage="dpo", benchmark="aggregate_paper"),
              frame({(0, 1): 40.0, (0.2, 1): 54.0, (1, 1): 30.0}, experiment="f", stage="dpo",
                    benchmark="aggregate_paper"))
    f = cat(sft, dpo)
    shown = A.plasticity_extras(f, min_cells=3)
    assert shown["rho"].notna().all() and list(shown["p_value"]) == pytest.approx([1 / 3, 1 / 3])  # 2 of 3! orders
    hidden = A.plasticity_extras(f)  # default: 5 cells, the fewest that can reach p < 0.05
    assert hidden["rho"].isna().all() and list(hidden["lowered"]) == [1, 3]
    s = A.extras_summary(hidden)
    assert (s["lowered_cells"], s["cells"]) == (4, 6) and s["lowered_share"] == pytest.approx(400 / 6)
    assert math.isnan(s["rho_min"]) and s["regret_mean"] == pytest.approx((66 - 54 + 54 - 54) / 2)


def test_limits_name_what_a_small_grid_cannot_show():
    from evalsuite.analysis import limits as L

    sft = frame({(0, 1): 50.0, (0.5, 1): 55.0, (1, 1): 40.0})
    dpo = frame({(0, 1): 50.0, (0.5, 1): 55.0, (1, 1): 40.0}, stage="dpo").assign(p_vs_0_1=0.5)  # DPO moved nothing
    f = cat(sft, dpo).assign(n=5.0)
    items = pd.DataFrame({"experiment": "e", "benchmark": "mmlu", "condition": "clean", "correct": [True, False]})
    found = L.limits(f, items).set_index("topic")["finding"]
    assert "lacks mmlu" not in found["aggregate"] and "bbh, alpacaeval, ifeval, mtbench" in found["aggregate"]
    assert "3 cells" in found["rank correlation"] and "0.33" in found["rank correlation"]
    assert "5 items in the smallest cell" in found["items"]
    assert "smallest possible adjusted p is 0.12" in found["significance"]  # 2 cells × 2 · 0.5⁵
    # the bound is set by the cell with the most items: one cell that lost items does not silence the others
    mixed = f.assign(n=[500.0 if (st, p) != ("dpo", 1.0) else 4.0 for st, p in zip(f.stage, f.lambda_p)])
    topics = set(L.limits(mixed, items)["topic"])
    assert "significance" not in topics and "items" in topics
    # no items of this benchmark, or no tested cell: nothing claimed about significance
    assert "significance" not in set(L.limits(f, items.iloc[0:0])["topic"])
    assert "significance" not in set(L.limits(f.assign(p_vs_0_1=NAN), items)["topic"])
    assert "DPO changed no cell's score" in found["DPO"]
    # a grid large enough, with DPO that moved and all five benchmarks, has none of these
    cells = {(p, r): 40.0 + 3 * p + r for p in (0, 0.2, 0.4) for r in (0.6, 1)}
    big = cat(*(frame(cells, benchmark=b).assign(n=500.0) for b in A.BENCHMARKS),
              *(frame({c: v + 1 + c[0] for c, v in cells.items()}, stage="dpo", benchmark=b).assign(n=500.0)
                for b in A.BENCHMARKS))
    assert L.limits(A.with_aggregates(big)).empty
    assert L.limits(cat(sft)).set_index("topic").loc["DPO", "finding"].startswith("no DPO cell")


def test_spearman_p_is_exact_on_few_cells_and_scipys_on_many():
    from itertools import permutations

    from scipy.stats import spearmanr

    a, b = [1, 2, 3, 4, 5], [1, 3, 2, 4, 5]  # rho 0.9: scipy's t approximation says 0.037
    rho, p = A.spearman(a, b)
    rhos = [spearmanr(a, list(order)).statistic for order in permutations(b)]
    exact = sum(abs(r) >= 0.9 - 1e-12 for r in rhos) / len(rhos)
    assert rho == pytest.approx(0.9) and p == pytest.approx(exact) == pytest.approx(10 / 120)
    ties = [50, 55, 55, 40]  # ties: average ranks, still every ordering
    rho_t, p_t = A.spearman(ties, [60, 63, 54, 66])
    rhos = [spearmanr(ties, list(order)).statistic for order in permutations([60, 63, 54, 66])]
    assert p_t == pytest.approx(sum(abs(r) >= abs(rho_t) - 1e-12 for r in rhos) / len(rhos))
    many = list(range(12))
    other = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10]
    assert A.spearman(many, other)[1] == pytest.approx(spearmanr(many, other).pvalue)


def test_posix_change_is_dpo_minus_sft_per_cell_and_kind():
    sft = frame({(0, 0): 0.5, (0, 1): 0.30, (1, 1): 0.20}, metric="posix", condition="typo", benchmark="bbh")
    dpo = frame({(0, 0): 0.5, (0, 1): 0.25, (1, 1): 0.26}, stage="dpo", metric="posix", condition="typo",
                benchmark="bbh")
    score = frame({(0, 1): 30.0}, benchmark="bbh")
    out = A.posix_change(cat(sft, dpo, score)).set_index(["lambda_p", "lambda_r"])
    assert len(out) == 2 and out.loc[(0.0, 1.0), "value"] == pytest.approx(-0.05)
    assert out.loc[(1.0, 1.0), "value"] == pytest.approx(0.06) and set(out.condition) == {"typo"}
