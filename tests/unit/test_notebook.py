"""The DPO plasticity notebook: its jupytext source and the committed .ipynb stay in sync; executed on the paper's
grids it prints the paper's +8.01 % and +2.44 % and figures that an independent computation here (plain Python on
the shipped CSV, scipy for Spearman) reproduces; executed on a run folder made in this session by the real
pipeline (tiny random model: `evalsuite train grid --dpo` with TRL, then `evalsuite run` with perturbations),
every section runs and shows the numbers `evalsuite.analysis` gives on the same tables. Plus the item-level
analysis functions on constructed items, and Holm's correction against its definition."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalsuite import analysis as A
from evalsuite.analysis import limits as L
from evalsuite.analysis import paired as P
from evalsuite.report import notebook as NB
from tests.conftest import EVALSUITE, ROOT, build_tiny_model, write_jsonl
from tests.unit.test_analysis import raw_grids, raw_settings

SOURCE = ROOT / "notebooks" / "dpo_plasticity.py"
COMMITTED = ROOT / "notebooks" / "dpo_plasticity.ipynb"
CELLS = ((0.0, 1.0), (0.5, 1.0), (1.0, 1.0))
# answers skewed (A 5, B 4, C 2, D 1): a cell that settles on one letter scores by which letter it is
ANSWERS = [0, 1, 0, 2, 1, 0, 3, 1, 0, 2, 1, 0]
QUESTIONS = [{"question": f"Which colour is item {i} about {s}?", "subject": s,
              "choices": ["red", "green", "blue", "black"], "answer": ANSWERS[4 * k + i]}
             for k, s in enumerate(("anatomy", "astronomy", "virology")) for i in range(4)]


def stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream")


def errors(nb) -> list[str]:
    return [f"{o['ename']}: {o['evalue']}" for c in nb.cells for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


# ---------------------------------------------------------------- the committed pair

def test_source_and_committed_notebook_are_in_sync():
    """Same cells (type and source) in the jupytext source and the committed .ipynb, and the committed one
    carries its outputs for the paper's grids (it reads on a code-hosting site without running)."""
    import jupytext
    import nbformat

    source = jupytext.read(str(SOURCE))
    committed = nbformat.read(str(COMMITTED), as_version=4)
    mine = [(c.cell_type, c.source.strip()) for c in source.cells]
    theirs = [(c.cell_type, c.source.strip()) for c in committed.cells if "injected-parameters" not in
              c.get("metadata", {}).get("tags", [])]
    assert mine == theirs, "notebooks/dpo_plasticity.ipynb has drifted from its .py source: re-run `make notebook`"
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in source.cells)
    data = NB.shown(committed)
    assert round(data["headline"]["gain_best"], 2) == 8.01 and round(data["headline"]["gain_sft_best"], 2) == 2.44
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in committed.cells for o in c.get("outputs", []))
    assert not errors(committed)


# ---------------------------------------------------------------- Part 1: the paper's grids

@pytest.fixture(scope="module")
def paper_nb(tmp_path_factory):
    import nbformat

    out = tmp_path_factory.mktemp("nb-paper")
    ipynb, html = NB.execute([], out)
    page = html.read_text(encoding="utf-8") if html is not None else ""
    assert "Fig. 3" in page and "+8.01 %" in page
    # the HTML opens offline: nothing loaded from the network (nbconvert's CDN scripts are left out)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page) and "cdnjs" not in page
    nb = nbformat.read(str(ipynb), as_version=4)
    assert nb.metadata["papermill"]["input_path"] == "notebooks/dpo_plasticity.py"  # no machine's paths
    return nb


def _independent_paper_figures() -> dict:
    """The paper-part figures from the raw CSV in plain Python (+ scipy's Spearman), not through evalsuite."""
    from scipy.stats import spearmanr

    grids = raw_grids()
    best, at_sft, rhos, regrets, regret_pct, lowered, cells = [], [], [], [], [], 0, 0
    per_setting = {}
    for setting in raw_settings(grids):
        sft, dpo = grids[(*setting, "sft", "avg5_x1.25")], grids[(*setting, "dpo", "avg5_x1.25")]
        sft = {c: v for c, v in sft.items() if c != (0.0, 0.0)}
        dpo = {c: v for c, v in dpo.items() if c != (0.0, 0.0)}
        ref, top = dpo[(0.0, 1.0)], max(sft.values())
        first = min(c for c, v in sft.items() if v == top)
        best.append((max(dpo.values()) - ref) / ref * 100)
        at_sft.append((dpo[first] - ref) / ref * 100)
        order = sorted(sft)
        rhos.append(spearmanr([sft[c] for c in order], [dpo[c] for c in order]).statistic)
        regrets.append(max(dpo.values()) - dpo[first])
        regret_pct.append(regrets[-1] / max(dpo.values()) * 100)
        lowered += sum(dpo[c] < sft[c] for c in order)
        cells += len(order)
        per_setting["/".join(setting)] = (best[-1], at_sft[-1])
    return {"per_setting": per_setting, "gain_best": sum(best) / len(best), "gain_sft_best": sum(at_sft) / len(at_sft),
            "rho_min": min(rhos), "rho_max": max(rhos), "rho_median": float(np.median(rhos)),
            "lowered_cells": lowered, "cells": cells, "regret_mean": sum(regrets) / len(regrets),
            "regret_pct_mean": sum(regret_pct) / len(regret_pct)}


def test_paper_part_prints_8_01_and_2_44_and_the_figures_the_paper_does_not_show(paper_nb):
    assert not errors(paper_nb)
    text = stream_text(paper_nb)
    assert "Best post-DPO cell vs DPO on (0, 1): +8.01 % (mean over 15 settings" in text
    assert "DPO on the SFT-best cell vs DPO on (0, 1): +2.44 % (mean over 15 settings" in text
    expected = _independent_paper_figures()
    assert round(expected["gain_best"], 2) == 8.01 and round(expected["gain_sft_best"], 2) == 2.44
    data = NB.shown(paper_nb)
    for key in ("gain_best", "gain_sft_best"):
        assert data["headline"][key] == pytest.approx(expected[key], abs=1e-9)
    summary = data["beyond_summary"]
    for key in ("rho_min", "rho_max", "rho_median", "regret_mean", "regret_pct_mean"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-9), key
    assert (summary["lowered_cells"], summary["cells"]) == (expected["lowered_cells"], expected["cells"]) == (200, 525)
    m = re.search(r"Spearman ρ \(SFT vs DPO grid\): ([0-9.]+) to ([0-9.]+), median ([0-9.]+)", text)
    assert m and tuple(map(float, m.groups())) == (round(expected["rho_min"], 2), round(expected["rho_max"], 2),
                                                   round(expected["rho_median"], 2))
    assert "DPO lowers the aggregate in 200 of 525 cells (38.1 %)" in text
    # Table 3: one row per setting plus the mean row, each gain as in the independent computation
    table3 = pd.DataFrame(data["table3"])
    assert len(table3) == 16 and table3["gain best %"].iloc[-1] == pytest.approx(8.01, abs=0.005)
    rows = table3.iloc[:-1].set_index("experiment")
    assert set(rows.index) == set(expected["per_setting"])
    for setting, (gain_best, gain_sft_best) in expected["per_setting"].items():
        assert rows.loc[setting, "gain best %"] == pytest.approx(round(gain_best, 2), abs=1e-9), setting
        assert rows.loc[setting, "gain SFT-best %"] == pytest.approx(round(gain_sft_best, 2), abs=1e-9), setting
    # per benchmark: the aggregate's row equals the headline, IFEval's SFT choice costs most after DPO
    sel = pd.DataFrame(data["selection_by_benchmark"]).set_index("sft_benchmark")
    assert list(sel.index) == ["aggregate_paper", *A.BENCHMARKS]
    assert sel.loc["aggregate_paper", "mean_gain_sft_best"] == pytest.approx(expected["gain_sft_best"], abs=1e-9)
    grids = raw_grids()
    gains = []
    for setting in raw_settings(grids):  # choose by IFEval after SFT, measure DPO's aggregate there
        ifeval = {c: v for c, v in grids[(*setting, "sft", "ifeval")].items() if c != (0.0, 0.0)}
        dpo = grids[(*setting, "dpo", "avg5_x1.25")]
        pick = min(c for c, v in ifeval.items() if v == max(ifeval.values()))
        gains.append((dpo[pick] - dpo[(0.0, 1.0)]) / dpo[(0.0, 1.0)] * 100)
    assert sel.loc["ifeval", "mean_gain_sft_best"] == pytest.approx(sum(gains) / len(gains), abs=1e-9)
    assert "No RUN_DIRS given" in text


# ---------------------------------------------------------------- Part 2: a run made by the real pipeline

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """base/ + SFT cells (0, 1), (0.5, 1), (1, 1) trained with the WIT loss, DPO (TRL) on each, all from one
    `evalsuite train grid --dpo`; then `evalsuite run` on MMLU questions from a local file, clean and under
    typo and format perturbations with two variants each."""
    root = tmp_path_factory.mktemp("nb-grid")
    models = root / "models"
    base = build_tiny_model(models / "base", seed=0, max_positions=1024)
    # the questions asked later, as instructions: the cells learn them differently (λ), DPO moves them again
    asked = [(f"The following are multiple choice questions (with answers) about {q['subject']}.\n\n"
              f"{q['question']}\n" + "".join(f"{'ABCD'[k]}. {c}\n" for k, c in enumerate(q["choices"])) + "Answer:",
              "ABCD"[q["answer"]], "ABCD"[(q["answer"] + 1) % 4]) for q in QUESTIONS]
    sft = write_jsonl(root / "sft.jsonl", [{"prompt": p, "response": a} for p, a, _ in asked])
    prefs = write_jsonl(root / "prefs.jsonl", [{"prompt": p, "chosen": a, "rejected": b} for p, a, b in asked])
    cells = ",".join(f"{p:g}:{r:g}" for p, r in CELLS)
    train = subprocess.run(
        EVALSUITE + ["train", "grid", "--cells", cells, "--dpo", f"model={base}", f"dataset.path={sft}",
                     f"output_dir={models}", "global_batch_size=4", "training.per_device_train_batch_size=4",
                     "training.max_steps=30", "training.learning_rate=1e-2", "max_length=128", "precision=fp32",
                     f"dpo.dataset.path={prefs}", "dpo.global_batch_size=4",
                     "dpo.training.per_device_train_batch_size=4", "dpo.training.max_steps=15",
                     "dpo.training.learning_rate=1e-2", "dpo.max_length=128", "dpo.precision=fp32"],
        cwd=ROOT, capture_output=True, text=True)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-3000:]
    data = root / "mmlu"
    data.mkdir()
    write_jsonl(data / "test.jsonl", QUESTIONS)
    out = root / "run"
    run = subprocess.run(EVALSUITE + ["run", "--models", str(models), "--benchmarks", "mmlu,mmlu:generative",
                                      "--perturb", "typo,format", "--variants", "2", "--data", str(data), "--dtype", "float32",
                                      "--out", str(out), "--no-report"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def run_nb(trained_run, tmp_path_factory):
    import nbformat

    out = tmp_path_factory.mktemp("nb-run")
    ipynb, html = NB.execute([trained_run], out)
    assert ipynb.name == f"dpo_plasticity-{trained_run.name}.ipynb" and html is not None and html.is_file()
    return nbformat.read(str(ipynb), as_version=4)


def _records(table: pd.DataFrame) -> list:
    return NB.payload(table)


def _same(shown: list, expected: list) -> None:
    assert len(shown) == len(expected)
    for a, b in zip(shown, expected):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float) and isinstance(b[k], float):
                assert a[k] == pytest.approx(b[k], abs=1e-12), k
            else:
                assert a[k] == b[k], k


def test_run_part_every_section_runs_and_shows_what_analysis_computes(run_nb, trained_run):
    from evalsuite.report import tables as T

    assert not errors(run_nb), errors(run_nb)
    data = NB.shown(run_nb)
    frame = A.grid_frame([trained_run])
    items = P.item_frame([trained_run])
    experiments = sorted(set(frame["experiment"]))
    assert len(experiments) == 1 and "1 run folder(s), 1 experiment(s)" in stream_text(run_nb)
    _same(data["limits"], _records(L.limits(frame, items)))
    _same(data["posix_change"], _records(A.posix_change(frame)))
    _same(data["plasticity"], _records(T.plasticity_table(frame)))
    _same(data["gain_intervals"], _records(P.gain_intervals(items, stage="dpo", resamples=2000, seed=0)))
    _same(data["cell_tests"], _records(P.cell_tests(frame, stage="dpo")))
    _same(data["flips"], _records(P.flips(items)))
    agreement = P.agreement_change(items, resamples=2000, seed=0)
    _same(data["agreement_change"], _records(agreement))
    _same(data["agreement_spread"], _records(P.agreement_spread(agreement)))
    tasks = ["mmlu_loglikelihood", "mmlu_generative"]  # two tasks of one benchmark: one grid each
    for task in tasks:
        _same(data[f"beyond_run/{task}"],
              _records(A.plasticity_extras(frame, benchmark=task)))
    # the grid is three cells of twelve items: the notebook says what cannot be concluded instead of drawing it
    topics = {r["topic"] for r in data["limits"]}
    assert {"aggregate", "rank correlation", "items"} <= topics
    assert all(r["rho"] is None for t in tasks for r in data[f"beyond_run/{t}"])  # 3 cells: no ρ shown
    assert "table3_run" not in data  # no aggregate without all five benchmarks
    images = [o for c in run_nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # Fig. 3 of Part 1 and the run's SFT / DPO / ΔDPO sheet
    # shape of what the real pipeline produced: 3 trained cells per stage, 12 paired items each
    assert len(data["flips"]) == 6 and {r["n"] for r in data["flips"]} == {12}
    assert {r["benchmark"] for r in data["flips"]} == set(tasks)
    assert len(data["gain_intervals"]) == 4 and {r["n"] for r in data["gain_intervals"]} == {12}
    assert {r["condition"] for r in data["agreement_change"]} == {"typo", "format"}
    assert len(data["posix_change"]) > 0  # POSIX on the generative task


def test_run_part_numbers_agree_with_the_runs_own_table(trained_run):
    """Where the item-level figures and the run's table measure the same thing, they are equal: gains from
    items equal the table's relative gains (every item scored), agreement from items equals the run's."""
    frame = A.relative_gain(A.grid_frame([trained_run]))
    items = P.item_frame([trained_run])
    g = P.gain_intervals(items, stage="dpo", resamples=200)
    table = frame[(frame.stage == "dpo") & (frame.condition == "clean") & (frame.metric == "score") & ~frame.is_base]
    assert len(g) == 4
    compared = 0
    for row in g.to_dict("records"):
        t = table[(table.benchmark == row["benchmark"]) & (table.lambda_p == row["lambda_p"])
                  & (table.lambda_r == row["lambda_r"])].iloc[0]
        assert row["mean"] * 100 == pytest.approx(t["value"], abs=1e-9)
        if not math.isnan(t["gain"]):
            compared += 1
            assert row["gain"] == pytest.approx(t["gain"], abs=1e-9)
            assert row["low"] <= row["gain"] + 1e-9 and row["gain"] <= row["high"] + 1e-9
    assert compared >= 2  # the log-likelihood task's (0, 1) cell scores above 0: its gains are defined
    for kind in ("typo", "format"):
        agree = P.item_agreement(items, kind)
        runs = frame[(frame.metric == "agreement") & (frame.condition == kind) & ~frame.is_base]
        assert len(runs) == 12  # 2 tasks × 3 cells × 2 stages
        for row in runs.to_dict("records"):
            mine = agree[(agree.stage == row["stage"]) & (agree.benchmark == row["benchmark"])
                         & (agree.lambda_p == row["lambda_p"]) & (agree.lambda_r == row["lambda_r"])]
            assert len(mine) == 12
            assert mine["agreement"].mean() * 100 == pytest.approx(row["value"], abs=1e-9)


def test_make_notebook_target_names_the_run_and_refuses_a_folder_that_is_not_one(tmp_path):
    proc = subprocess.run(["make", "-s", "notebook", f"RUN={tmp_path}", f"NOTEBOOK_OUT={tmp_path / 'out'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "not an evalsuite run folder" in (proc.stdout + proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the item-level functions on constructed items

def _items(scores: dict, stage: str = "dpo", answers: dict | None = None, condition: str = "clean") -> pd.DataFrame:
    rows = []
    for cell, values in scores.items():
        for i, v in enumerate(values):
            rows.append({"experiment": "e", "checkpoint": f"{stage}{cell}", "stage": stage, "lambda_p": cell[0],
                         "lambda_r": cell[1], "task": "mmlu", "benchmark": "mmlu", "condition": condition,
                         "item_id": f"q{i}", "variant": 0, "score": v, "correct": None if v is None else v == 1.0,
                         "answer": (answers or {}).get((cell, i))})
    return pd.DataFrame(rows)


def test_gain_intervals_pair_items_and_bootstrap_the_ratio():
    ref = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    cell = [1, 1, 1, 0, 1, 1, 1, 0, 1, None]  # the last item unscored: left out of both sides
    g = P.gain_intervals(_items({(0.0, 1.0): ref, (1.0, 1.0): cell}), resamples=500, seed=3).iloc[0]
    x, y = np.array(cell[:9], float), np.array(ref[:9], float)
    assert g["n"] == 9 and g["gain"] == pytest.approx((x.mean() - y.mean()) / y.mean() * 100)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 9, size=(500, 9))
    assert (y[idx].mean(1) > 0).all()  # every resample has a reference: a plain percentile interval
    boot = (x[idx].mean(1) - y[idx].mean(1)) / y[idx].mean(1) * 100
    assert (g["low"], g["high"]) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))


def test_gain_interval_is_unbounded_where_resamples_lose_the_reference():
    """One right answer in six for the reference: a third of the resamples have no right answer there, so the
    gain has no upper bound; those resamples are kept as +inf, not dropped (which would report a finite end)."""
    ref = [1, 0, 0, 0, 0, 0]
    cell = [1, 1, 1, 0, 0, 0]
    gain, low, high = P.bootstrap_gain(np.array(cell, float), np.array(ref, float), resamples=2000, seed=0)
    assert gain == pytest.approx(200.0) and math.isinf(high) and high > 0 and math.isfinite(low)
    undefined = P.bootstrap_gain(np.zeros(4), np.zeros(4), resamples=100)  # no reference: no relative gain
    assert all(math.isnan(v) for v in undefined)
    ties = P.bootstrap_gain(np.array([1.0, 0, 0, 0]), np.array([1.0, 0, 0, 0]), resamples=500)
    assert ties[0] == 0.0 and ties[1:] == (0.0, 0.0)  # resamples with no right answer on either side: 0, not NaN


def test_holm_against_its_definition():
    p = [0.01, 0.04, 0.03, 0.005, float("nan"), 0.5]
    valid = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(valid)
    expected = {}
    for rank, (v, i) in enumerate(valid):
        expected[i] = max(min(1.0, (m - j) * valid[j][0]) for j in range(rank + 1))
    got = P.holm(p)
    assert math.isnan(got[4])
    assert [got[i] for i in sorted(expected)] == pytest.approx([expected[i] for i in sorted(expected)])
    assert got[3] == pytest.approx(0.025) and got[0] == pytest.approx(0.04) and got[5] == pytest.approx(0.5)


def test_flips_count_each_way_and_test_each_cell():
    sft = _items({(0.0, 1.0): [1, 1, 0, 0, 1, 0], (1.0, 1.0): [1, 1, 1, 1, 1, 1]}, stage="sft")
    dpo = _items({(0.0, 1.0): [1, 0, 1, 1, 1, 0], (1.0, 1.0): [0, 0, 0, 0, 0, 0]}, stage="dpo")
    f = P.flips(pd.concat([sft, dpo])).set_index(["lambda_p", "lambda_r"])
    a = f.loc[(0.0, 1.0)]
    assert (a.right_to_wrong, a.wrong_to_right, a.both_right, a.both_wrong) == (1, 2, 2, 1)
    b = f.loc[(1.0, 1.0)]
    assert (b.right_to_wrong, b.wrong_to_right, b.n) == (6, 0, 6)
    from scipy.stats import binomtest

    assert b.p == pytest.approx(binomtest(0, 6, 0.5).pvalue) and b.p_holm == pytest.approx(min(1, 2 * b.p))


def test_agreement_change_is_paired_per_item():
    answers_sft = {((0.0, 1.0), i): a for i, a in enumerate("ABCD")}
    clean_sft = _items({(0.0, 1.0): [1, 1, 1, 1]}, "sft", answers_sft)
    typo_sft = _items({(0.0, 1.0): [1, 0, 1, 0]}, "sft", {((0.0, 1.0), i): a for i, a in enumerate("ACCA")}, "typo")
    clean_dpo = _items({(0.0, 1.0): [1, 1, 1, 1]}, "dpo", answers_sft)
    typo_dpo = _items({(0.0, 1.0): [1, 1, 1, 1]}, "dpo", answers_sft, "typo")
    t = P.agreement_change(pd.concat([clean_sft, typo_sft, clean_dpo, typo_dpo]), resamples=300).iloc[0]
    assert (t.sft, t.dpo, t.delta, t.n) == (50.0, 100.0, 50.0, 4)
    assert t.low <= 50.0 <= t.high


def test_limit_bounds_are_exact():
    # Spearman: 2/k! is the smallest two-sided exact p (checked against all orderings of k points)
    from scipy.stats import spearmanr

    for k in (3, 4, 5):
        rhos = [spearmanr(range(k), order).statistic for order in permutations(range(k))]
        extreme = sum(abs(r) >= 1 - 1e-12 for r in rhos) / len(rhos)
        assert extreme == pytest.approx(L.smallest_spearman_p(k))
    assert L.smallest_spearman_p(4) > 0.05 > L.smallest_spearman_p(5)
    from scipy.stats import binomtest

    assert L.smallest_holm_mcnemar_p(8, 1) == pytest.approx(binomtest(0, 8, 0.5).pvalue)


def test_cell_tests_holm_over_each_grids_other_cells():
    rows = []
    for bench, ps in (("mmlu", {(0.0, 1.0): 0.9, (0.5, 1.0): 0.01, (1.0, 1.0): 0.04, (1.0, 0.5): float("nan")}),
                      ("bbh", {(0.0, 1.0): 0.9, (0.5, 1.0): 0.03})):
        for (lp, lr), p in ps.items():
            rows.append({"experiment": "e", "stage": "dpo", "lambda_p": lp, "lambda_r": lr, "is_base": False,
                         "benchmark": bench, "condition": "clean", "metric": "score", "value": 50.0, "p_vs_0_1": p})
    rows.append({**rows[0], "stage": "sft", "lambda_p": 0.5, "p_vs_0_1": 0.001})  # another stage: not tested
    t = P.cell_tests(pd.DataFrame(rows)).set_index(["benchmark", "lambda_p", "lambda_r"])
    assert set(t.index) == {("mmlu", 0.5, 1.0), ("mmlu", 1.0, 1.0), ("bbh", 0.5, 1.0)}  # no (0, 1), no NaN p
    assert t.loc[("mmlu", 0.5, 1.0), "p_holm"] == pytest.approx(0.02) and t.loc[("mmlu", 0.5, 1.0), "tests"] == 2
    assert t.loc[("mmlu", 1.0, 1.0), "p_holm"] == pytest.approx(0.04) and t.loc[("bbh", 0.5, 1.0), "p_holm"] == 0.03
    assert t["significant"].all()


def test_item_frame_refuses_one_cell_twice(trained_run, tmp_path):
    from evalsuite.errors import ConfigError

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    with pytest.raises(ConfigError, match="two results for one item of one grid cell"):
        P.item_frame([trained_run, copy])


def test_show_escapes_names_and_the_html_page_keeps_them_text(tmp_path):
    import nbformat

    evil = "<script>alert(1)</script>"
    b = NB.bundle("t", pd.DataFrame({"experiment": [evil], "gain": [1.234]}), caption=evil)
    assert evil not in b["text/html"] and "&lt;script&gt;" in b["text/html"] and "1.23" in b["text/html"]
    assert b[NB.MIME] == {"name": "t", "data": [{"experiment": evil, "gain": 1.234}]}
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "show(...)", outputs=[nbformat.v4.new_output("display_data", data=b)])])
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    page = NB.render_html(path)
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert NB.shown(path)["t"][0]["experiment"] == evil


def test_shown_numbers_stay_valid_json_with_unbounded_and_missing_values():
    """An interval with an infinite end and a NaN gain reach the notebook as null: nbformat would otherwise write
    the `Infinity` / `NaN` tokens, which are not JSON and break strict readers (web renderers)."""
    import json

    import nbformat

    b = NB.bundle("g", pd.DataFrame({"gain": [float("nan"), 200.0], "high": [float("inf"), 5.0], "n": [6, 12]}))
    assert b[NB.MIME]["data"] == [{"gain": None, "high": None, "n": 6}, {"gain": 200.0, "high": 5.0, "n": 12}]
    assert "inf" in b["text/plain"]  # the reader still sees the unbounded end
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "show(...)", outputs=[nbformat.v4.new_output("display_data", data=b)])])
    json.loads(nbformat.writes(nb), parse_constant=lambda token: pytest.fail(f"{token} in the notebook"))
