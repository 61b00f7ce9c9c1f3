"""Item-level analysis of a run's grid, where the published grids have nothing to offer: intervals on every
gain, paired tests corrected for the number of cells, the items DPO flips in each cell, and how DPO changes
answer agreement under a perturbation, cell by cell.

The unit is the item (`items.parquet`: one row per checkpoint × task × condition × item × variant). Two cells
are compared on the items both scored (same item id and variant), so a failed or unscored item is left out of
both sides and counted in `n`, never filled in.

- Intervals: a paired percentile bootstrap over items of the relative gain
  (mean(cell) − mean(ref)) / |mean(ref)| × 100; both means are taken on the same resampled items.
- Multiple comparisons: Holm's step-down correction (it controls the family-wise error rate under any
  dependence between the tests, which the cells of one grid have) over the cells of one grid (experiment ×
  stage × benchmark), the reference (0, 1) itself and Base excluded.
- Flips SFT → DPO: per cell, items right after SFT and wrong after DPO and the reverse (0/1 scores), with
  McNemar's test per cell, Holm-corrected over the cells of the grid; rated items (MT-Bench) count
  improved / worsened instead.
- Agreement: per item, the share of its perturbed variants whose extracted answer equals the clean answer
  (variants without an answer on either side left out); its mean over items equals the run's pair-level
  agreement whenever every item has the same number of answered variants.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from evalsuite.analysis.frame import LAMBDA_DECIMALS, REFERENCE_CELL, STAGES, Cell, split_benchmarks
from evalsuite.errors import ConfigError
from evalsuite.metrics.resampling import resampled_means
from evalsuite.metrics.scores import bootstrap_ci
from evalsuite.metrics.significance import mcnemar

if TYPE_CHECKING:
    import pandas as pd

ITEM_COLUMNS = ["experiment", "checkpoint", "stage", "lambda_p", "lambda_r", "task", "benchmark", "condition",
                "item_id", "variant", "score", "correct", "answer"]
PAIR_KEY = ["item_id", "variant"]
RESAMPLES = 2000
SIGNIFICANCE_LEVEL = 0.05


def item_frame(run_dirs: Sequence[Path]) -> "pd.DataFrame":
    """The items of the trained grid cells of one or more run folders (Base and off-grid checkpoints left out),
    λ rounded onto the grid like `grid_frame`'s, and `benchmark` named as `grid_frame` names it (the task's
    name where one run evaluated several tasks of a benchmark). Responses and judgements are not loaded."""
    import pandas as pd

    from evalsuite.run.records import read_items

    parts = [read_items(Path(d), columns=ITEM_COLUMNS) for d in run_dirs]
    split = set().union(*(split_benchmarks(p) for p in parts)) if parts else set()
    rows = []
    for part in parts:
        part = part[part["stage"].isin(STAGES) & part["lambda_p"].notna() & part["lambda_r"].notna()
                    & (part["experiment"].fillna("") != "")].copy()
        part["benchmark"] = part["benchmark"].where(~part["benchmark"].isin(split), part["task"])
        rows.append(part)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=ITEM_COLUMNS)
    for column in ("lambda_p", "lambda_r"):
        out[column] = out[column].astype(float).round(LAMBDA_DECIMALS)
    key = ["experiment", "stage", "lambda_p", "lambda_r", "benchmark", "condition", "item_id", "variant"]
    dup = out[out.duplicated(key, keep=False)]
    if len(dup):  # the same cell in two runs (or two checkpoints on one cell): pairing would multiply rows
        first = dup.iloc[0]
        raise ConfigError(f"two results for one item of one grid cell: experiment {first['experiment']!r} "
                          f"{first['stage']} cell ({first['lambda_p']:g}, {first['lambda_r']:g}) "
                          f"{first['benchmark']} {first['condition']} item {first['item_id']!r} from "
                          f"{', '.join(sorted(set(map(str, dup['checkpoint']))))}; give each cell once")
    return out.sort_values(["experiment", "stage", "benchmark", "condition", "lambda_p", "lambda_r", "item_id",
                            "variant"], kind="stable").reset_index(drop=True)


def _sorted(table: "pd.DataFrame") -> "pd.DataFrame":
    """Rows in one fixed order: experiment, benchmark (the paper's order first), condition (clean first), λp, λr."""
    from evalsuite.analysis.frame import benchmark_order

    if table.empty:
        return table.reset_index(drop=True)
    keys = {"_b": table["benchmark"].map(benchmark_order)}
    if "condition" in table:
        keys["_c"] = table["condition"].map(lambda c: (c != "clean", c))
    by = ["experiment", "_b", *(["_c"] if "_c" in keys else []), *(c for c in ("lambda_p", "lambda_r") if c in table)]
    return table.assign(**keys).sort_values(by, kind="stable").drop(columns=list(keys)).reset_index(drop=True)


def _paired(a: "pd.DataFrame", b: "pd.DataFrame", column: str = "score") -> "pd.DataFrame":
    """Rows of two cells on the items both have a `column` value for, as columns a and b."""
    both = a[[column]].join(b[[column]], how="inner", lsuffix="_a", rsuffix="_b").dropna()
    return both.rename(columns={f"{column}_a": "a", f"{column}_b": "b"}).sort_index()


def _grids(items: "pd.DataFrame", stages: Sequence[str],
           condition: str) -> Iterator[tuple[str, str, list[Cell], dict[tuple[str, Cell], "pd.DataFrame"]]]:
    """Per (experiment, benchmark) of `condition`: the sorted trained cells present under every stage in
    `stages`, and each (stage, cell)'s rows indexed by item and variant. The items are split once here, never
    filtered again per cell (a full grid's items are millions of rows)."""
    rows = items[(items["condition"] == condition) & items["stage"].isin(stages)]
    for (experiment, benchmark), grid in rows.groupby(["experiment", "benchmark"], sort=True):
        by_cell = {(stage, (float(p), float(r))): g.set_index(PAIR_KEY)
                   for (stage, p, r), g in grid.groupby(["stage", "lambda_p", "lambda_r"], sort=True)}
        per_stage = [{c for s, c in by_cell if s == stage} for stage in set(stages)]
        if all(per_stage):
            yield experiment, benchmark, sorted(set.intersection(*per_stage)), by_cell


def bootstrap_gain(cell: np.ndarray, ref: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """(gain, low, high): the relative gain (%) of mean(cell) over mean(ref) on paired items and its paired
    percentile-bootstrap interval (both means on the same resampled items: `resampled_means` draws the same
    indices for two arrays of one length and one seed). All NaN where the reference mean is 0: no relative gain
    is defined. A resample whose reference mean is 0 has an unbounded gain: +inf where the cell's mean is above,
    -inf below, 0 where both are 0 (no difference). Those resamples are kept, never dropped, so where they are
    more than (1 − confidence)/2 of all, the interval's end is infinite: the data cannot bound the gain."""
    x, y = np.asarray(cell, dtype=float), np.asarray(ref, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("bootstrap_gain: cell and ref must be paired, non-empty")
    if y.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    point = (x.mean() - y.mean()) / abs(y.mean()) * 100.0
    gx, gy = resampled_means(x, resamples, seed), resampled_means(y, resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        gains = np.where(gy != 0, (gx - gy) / np.abs(gy) * 100.0, np.sign(gx - gy) * np.inf)
    gains[(gy == 0) & (gx == gy)] = 0.0
    alpha = (1 - confidence) / 2
    # linear interpolation as in metrics.scores; between an infinite and a finite draw it is undefined
    method = "linear" if np.isfinite(gains).all() else "inverted_cdf"
    low, high = np.quantile(gains, [alpha, 1 - alpha], method=method)
    return float(point), float(low), float(high)


def gain_intervals(items: "pd.DataFrame", stage: str = "dpo", condition: str = "clean", *,
                   resamples: int = RESAMPLES, seed: int = 0, confidence: float = 0.95) -> "pd.DataFrame":
    """Per experiment × benchmark × trained cell of one stage (the (0, 1) cell itself left out): the relative gain
    (%) over the (0, 1) cell of the same stage on the items both scored, with its paired bootstrap interval.
    Columns: experiment, stage, benchmark, condition, lambda_p, lambda_r, n, mean, ref_mean (item scale:
    proportions as 0–1, MT-Bench 1–10), gain, low, high. Grids without a (0, 1) cell give no rows."""
    import pandas as pd

    out = []
    for experiment, benchmark, cells, rows in _grids(items, [stage], condition):
        if REFERENCE_CELL not in cells:
            continue
        ref = rows[(stage, REFERENCE_CELL)]
        for cell in cells:
            if cell == REFERENCE_CELL:
                continue
            pair = _paired(rows[(stage, cell)], ref)
            if pair.empty:
                continue
            g, low, high = bootstrap_gain(pair["a"].to_numpy(), pair["b"].to_numpy(), resamples=resamples,
                                          seed=seed, confidence=confidence)
            out.append({"experiment": experiment, "stage": stage, "benchmark": benchmark, "condition": condition,
                        "lambda_p": cell[0], "lambda_r": cell[1], "n": len(pair), "mean": float(pair["a"].mean()),
                        "ref_mean": float(pair["b"].mean()), "gain": g, "low": low, "high": high})
    columns = ["experiment", "stage", "benchmark", "condition", "lambda_p", "lambda_r", "n", "mean", "ref_mean",
               "gain", "low", "high"]
    return _sorted(pd.DataFrame(out, columns=columns))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN and is not counted in m): the
    i-th smallest of m p-values becomes max over j ≤ i of min(1, (m − j + 1) · p_(j))."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def cell_tests(frame: "pd.DataFrame", stage: str = "dpo", alpha: float = SIGNIFICANCE_LEVEL) -> "pd.DataFrame":
    """The run's paired test of each trained cell against the (0, 1) cell of its stage (`p_vs_0_1` of the clean
    score: McNemar for 0/1 scores, a paired bootstrap otherwise), Holm-corrected over the cells of each grid
    (experiment × benchmark). Columns: experiment, stage, benchmark, lambda_p, lambda_r, value, p, p_holm,
    significant (p_holm < alpha), tests (the m of that grid's correction)."""
    import pandas as pd

    rows = frame[(frame["stage"] == stage) & (frame["condition"] == "clean") & (frame["metric"] == "score")
                 & ~frame["is_base"].astype(bool) & frame["p_vs_0_1"].notna()
                 & ~((frame["lambda_p"] == REFERENCE_CELL[0]) & (frame["lambda_r"] == REFERENCE_CELL[1]))]
    out = []
    for (_, _), grid in rows.groupby(["experiment", "benchmark"], sort=True):
        adjusted = holm(grid["p_vs_0_1"].to_numpy())
        for row, p_holm in zip(grid.to_dict("records"), adjusted):
            out.append({"experiment": row["experiment"], "stage": stage, "benchmark": row["benchmark"],
                        "lambda_p": row["lambda_p"], "lambda_r": row["lambda_r"], "value": row["value"],
                        "p": row["p_vs_0_1"], "p_holm": float(p_holm), "significant": bool(p_holm < alpha),
                        "tests": len(grid)})
    columns = ["experiment", "stage", "benchmark", "lambda_p", "lambda_r", "value", "p", "p_holm", "significant",
               "tests"]
    return _sorted(pd.DataFrame(out, columns=columns))


def flips(items: "pd.DataFrame", condition: str = "clean", alpha: float = SIGNIFICANCE_LEVEL) -> "pd.DataFrame":
    """Per experiment × benchmark × cell with both an SFT and a DPO checkpoint: what DPO did to each item the
    two scored. 0/1 scores: right_to_wrong, wrong_to_right, both_right, both_wrong, McNemar's p (SFT vs DPO) and
    its Holm correction over the grid's cells; rated scores: improved, worsened, unchanged (the 0/1 columns
    NaN). Always: n, sft_mean, dpo_mean, mean_change = dpo_mean − sft_mean (item scale)."""
    import pandas as pd

    out = []
    for experiment, benchmark, cells, rows in _grids(items, ["sft", "dpo"], condition):
        grid_rows = []
        for cell in cells:
            pair = _paired(rows[("sft", cell)], rows[("dpo", cell)])
            if pair.empty:
                continue
            a, b = pair["a"].to_numpy(), pair["b"].to_numpy()
            row = {"experiment": experiment, "benchmark": benchmark, "condition": condition, "lambda_p": cell[0],
                   "lambda_r": cell[1], "n": len(pair), "sft_mean": float(a.mean()), "dpo_mean": float(b.mean()),
                   "mean_change": float(b.mean() - a.mean()), "improved": int((b > a).sum()),
                   "worsened": int((b < a).sum()), "unchanged": int((b == a).sum())}
            binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
            nan = float("nan")
            row.update({"right_to_wrong": int(((a == 1) & (b == 0)).sum()) if binary else nan,
                        "wrong_to_right": int(((a == 0) & (b == 1)).sum()) if binary else nan,
                        "both_right": int(((a == 1) & (b == 1)).sum()) if binary else nan,
                        "both_wrong": int(((a == 0) & (b == 0)).sum()) if binary else nan,
                        "p": mcnemar(list(a == 1), list(b == 1)).p_value if binary else nan})
            grid_rows.append(row)
        for row, p_holm in zip(grid_rows, holm([r["p"] for r in grid_rows])):
            row["p_holm"] = float(p_holm)
            row["significant"] = bool(p_holm < alpha)
        out += grid_rows
    columns = ["experiment", "benchmark", "condition", "lambda_p", "lambda_r", "n", "right_to_wrong",
               "wrong_to_right", "both_right", "both_wrong", "improved", "worsened", "unchanged", "sft_mean",
               "dpo_mean", "mean_change", "p", "p_holm", "significant"]
    return _sorted(pd.DataFrame(out, columns=columns))


def item_agreement(items: "pd.DataFrame", condition: str) -> "pd.DataFrame":
    """Per checkpoint cell (experiment, stage, λ) × benchmark × item: the share of its `condition` variants whose
    answer equals the same checkpoint's clean answer (variants or clean answers without an extracted answer left
    out; items with none left out). Columns: experiment, stage, benchmark, lambda_p, lambda_r, item_id,
    agreement, variants."""
    import pandas as pd

    key = ["experiment", "stage", "benchmark", "lambda_p", "lambda_r", "item_id"]
    clean = items[(items["condition"] == "clean") & items["answer"].notna()][key + ["answer"]]
    pert = items[(items["condition"] == condition) & items["answer"].notna()][key + ["answer"]]
    both = pert.merge(clean, on=key, suffixes=("", "_clean"))
    if both.empty:
        return pd.DataFrame(columns=key + ["agreement", "variants"])
    both["agree"] = (both["answer"] == both["answer_clean"]).astype(float)
    out = both.groupby(key, sort=True)["agree"].agg(["mean", "size"]).reset_index()
    return out.rename(columns={"mean": "agreement", "size": "variants"})


def agreement_change(items: "pd.DataFrame", conditions: Sequence[str] | None = None, *, resamples: int = RESAMPLES,
                     seed: int = 0, confidence: float = 0.95) -> "pd.DataFrame":
    """Per experiment × benchmark × perturbation kind × cell: answer agreement (%) after SFT and after DPO on the
    items both have, ΔDPO = DPO − SFT (points) and its paired bootstrap interval. `conditions`: the perturbation
    kinds (default: every non-clean condition in `items`)."""
    import pandas as pd

    kinds = sorted(set(items["condition"]) - {"clean"}) if conditions is None else list(conditions)
    out = []
    for kind in kinds:
        agree = item_agreement(items, kind)
        key = ["experiment", "benchmark", "lambda_p", "lambda_r", "item_id"]
        sft = agree[agree["stage"] == "sft"][key + ["agreement"]]
        dpo = agree[agree["stage"] == "dpo"][key + ["agreement"]]
        both = sft.merge(dpo, on=key, suffixes=("_sft", "_dpo"))
        for (experiment, benchmark, lp, lr), g in both.groupby(key[:4], sort=True):
            d = (g["agreement_dpo"] - g["agreement_sft"]).to_numpy() * 100.0
            est = bootstrap_ci(d, confidence=confidence, resamples=resamples, seed=seed)  # items resampled
            out.append({"experiment": experiment, "benchmark": benchmark, "condition": kind, "lambda_p": lp,
                        "lambda_r": lr, "n": len(g), "sft": float(g["agreement_sft"].mean() * 100),
                        "dpo": float(g["agreement_dpo"].mean() * 100), "delta": est.value,
                        "low": est.low, "high": est.high})
    columns = ["experiment", "benchmark", "condition", "lambda_p", "lambda_r", "n", "sft", "dpo", "delta", "low",
               "high"]
    return _sorted(pd.DataFrame(out, columns=columns))


def agreement_spread(table: "pd.DataFrame") -> "pd.DataFrame":
    """An `agreement_change` table per experiment × benchmark × perturbation kind: the cells, and the smallest and
    largest ΔDPO (points) with their cells — how much DPO's effect on agreement varies across the grid.
    `extreme_intervals_disjoint` says whether those two cells' intervals do not overlap; it is a description,
    not a test (the extremes are picked after looking, and the intervals are marginal): read it as "worth a
    look", never as "significantly different"."""
    import pandas as pd

    rows = []
    for (experiment, benchmark, condition), g in table.groupby(["experiment", "benchmark", "condition"], sort=True):
        lo, hi = g.loc[g["delta"].idxmin()], g.loc[g["delta"].idxmax()]
        rows.append({"experiment": experiment, "benchmark": benchmark, "condition": condition, "cells": len(g),
                     "min_delta": float(lo["delta"]), "min_cell": (float(lo["lambda_p"]), float(lo["lambda_r"])),
                     "max_delta": float(hi["delta"]), "max_cell": (float(hi["lambda_p"]), float(hi["lambda_r"])),
                     "extreme_intervals_disjoint": bool(lo["high"] < hi["low"])})
    columns = ["experiment", "benchmark", "condition", "cells", "min_delta", "min_cell", "max_delta", "max_cell",
               "extreme_intervals_disjoint"]
    return _sorted(pd.DataFrame(rows, columns=columns))
