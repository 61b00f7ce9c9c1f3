"""How an SFT grid carries over to DPO (the WIT paper's "plasticity"): how much better the best post-DPO cell is
than DPO on the conventional (0, 1) model, how much DPO on the SFT-best cell gains, what choosing the cell by its
SFT score instead of its DPO score costs (regret), whether SFT and DPO rank the cells alike, and how often DPO
lowers a cell's value.

SFT-best cell: the best trained cell of the SFT grid, ties to the first in row-major order (the paper's rule);
best DPO cell(s): the best trained cells of the DPO grid, ties kept (see `gains` for the tie rule). On the
paper's grids (benchmark "aggregate_paper", Figs. 2 and 3) the means over the 15 settings are +8.01 % and
+2.44 %.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from evalsuite.analysis.frame import REFERENCE_CELL, Cell
from evalsuite.analysis.gains import LOWER_IS_BETTER, best_cells, decimals_for, gain
from evalsuite.analysis.limits import MIN_RANK_CELLS

if TYPE_CHECKING:
    import pandas as pd

PLASTICITY_COLUMNS = ["experiment", "benchmark", "condition", "metric", "dpo_ref", "best_dpo_cells", "best_dpo",
                      "gain_best", "sft_best_cells", "sft_best_cell", "dpo_at_sft_best", "gain_sft_best"]


def _stage_grids(frame: "pd.DataFrame", benchmark: str, condition: str, metric: str,
                 sft_benchmark: str | None = None) -> dict[str, dict[str, dict[Cell, float]]]:
    """experiment → stage ("sft"/"dpo") → trained cell → value (NaN values dropped): the DPO grid of `benchmark`
    and the SFT grid of `sft_benchmark` (default: the same benchmark)."""
    sft_benchmark = benchmark if sft_benchmark is None else sft_benchmark
    wanted = (((frame["stage"] == "sft") & (frame["benchmark"] == sft_benchmark))
              | ((frame["stage"] == "dpo") & (frame["benchmark"] == benchmark)))
    rows = frame[wanted & (frame["condition"] == condition) & (frame["metric"] == metric)
                 & ~frame["is_base"].astype(bool) & frame["value"].notna()]
    grids: dict[str, dict[str, dict[Cell, float]]] = {}
    for e, s, p, r, v in rows[["experiment", "stage", "lambda_p", "lambda_r", "value"]].itertuples(index=False):
        grids.setdefault(e, {}).setdefault(s, {})[(float(p), float(r))] = float(v)
    return {e: g for e, g in sorted(grids.items()) if "sft" in g and "dpo" in g}


def plasticity(frame: "pd.DataFrame", benchmark: str = "aggregate_paper", condition: str = "clean",
               metric: str = "score", sft_benchmark: str | None = None) -> "pd.DataFrame":
    """One row per experiment with both an SFT and a DPO grid of `benchmark`: dpo_ref (DPO on (0, 1)),
    best_dpo_cells (ties kept), best_dpo, gain_best (%), sft_best_cells (ties kept), sft_best_cell (the first:
    the one used), dpo_at_sft_best, gain_sft_best (%). Gains are NaN where a needed cell has no value.
    `sft_benchmark`: choose the SFT-best cell by this benchmark's SFT grid instead (e.g. "which cell would
    MMLU after SFT have picked, and how does DPO do there on the aggregate?"); default `benchmark`."""
    import pandas as pd

    lower = metric in LOWER_IS_BETTER
    out = []
    for experiment, grids in _stage_grids(frame, benchmark, condition, metric, sft_benchmark).items():
        sft, dpo = grids["sft"], grids["dpo"]
        ref = dpo.get(REFERENCE_CELL, float("nan"))
        best_dpo_cells = best_cells(dpo, lower, decimals_for(metric))
        best = (min if lower else max)(dpo[c] for c in best_dpo_cells)
        sft_best_cells = best_cells(sft, lower, decimals_for(metric))
        sft_best = sft_best_cells[0] if sft_best_cells else None
        at_sft_best = dpo.get(sft_best, float("nan")) if sft_best else float("nan")
        out.append({"experiment": experiment, "benchmark": benchmark, "condition": condition, "metric": metric,
                    "dpo_ref": ref, "best_dpo_cells": best_dpo_cells, "best_dpo": best,
                    "gain_best": gain(best, ref, lower), "sft_best_cells": sft_best_cells,
                    "sft_best_cell": sft_best, "dpo_at_sft_best": at_sft_best,
                    "gain_sft_best": gain(at_sft_best, ref, lower)})
    return pd.DataFrame(out, columns=PLASTICITY_COLUMNS)


def plasticity_summary(table: "pd.DataFrame") -> dict[str, Any]:
    """Means over the experiments of a `plasticity` table: {"experiments": rows of the table, "gain_best": mean %,
    "gain_best_n": experiments in that mean, "gain_sft_best": mean %, "gain_sft_best_n": experiments in that
    mean}. NaN gains (no DPO (0, 1) value, no DPO value on the SFT-best cell) are left out of their mean and of
    its N, so "mean over N" names exactly the experiments averaged; a mean over none is NaN."""
    out: dict[str, Any] = {"experiments": int(len(table))}
    for column in ("gain_best", "gain_sft_best"):
        values = table[column].dropna().astype(float)
        out[column] = float(values.mean()) if len(values) else float("nan")
        out[f"{column}_n"] = int(len(values))
    return out


def selection_regret(frame: "pd.DataFrame", benchmark: str = "aggregate_paper", condition: str = "clean",
                     metric: str = "score", sft_benchmark: str | None = None) -> "pd.DataFrame":
    """Per experiment, what choosing the cell by its SFT score (the SFT-best cell; of `sft_benchmark` if given)
    instead of its DPO score costs after DPO: regret = best DPO value − DPO on the SFT-best cell (the other way
    round for a lower-is-better metric; ≥ 0), and regret_pct = regret / |best DPO value| × 100."""
    table = plasticity(frame, benchmark, condition, metric, sft_benchmark)
    lower = metric in LOWER_IS_BETTER
    out = table[["experiment", "benchmark", "condition", "metric", "sft_best_cell", "best_dpo_cells", "best_dpo",
                 "dpo_at_sft_best"]].copy()
    out["regret"], out["regret_pct"] = _regret(table, lower)
    return out


def _regret(table: "pd.DataFrame", lower: bool) -> tuple["pd.Series", "pd.Series"]:
    """(regret, regret_pct) of a `plasticity` table: best DPO − DPO at the SFT-best cell (≥ 0), and in % of the
    best DPO value."""
    regret = (table["dpo_at_sft_best"] - table["best_dpo"]) if lower else (table["best_dpo"] - table["dpo_at_sft_best"])
    return regret.astype(float), (regret / table["best_dpo"].abs() * 100.0).astype(float)


EXACT_RANK_CELLS = 9  # 9! = 362,880 orderings, under a second; beyond, scipy's t approximation is close


def spearman(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho of paired values and its two-sided p: exact over every ordering (a permutation test on the
    ranks, ties as average ranks) up to `EXACT_RANK_CELLS` points, where scipy's t approximation is
    anti-conservative (5 points at rho 0.9: 0.037 against the exact 0.083; 3 points at rho 1: 0 against 1/3);
    scipy's approximation above."""
    import math

    import numpy as np
    from scipy.stats import permutation_test, rankdata, spearmanr

    rho = float(spearmanr(a, b).statistic)
    if len(a) > EXACT_RANK_CELLS:
        return rho, float(spearmanr(a, b).pvalue)
    ra, rb = rankdata(a), rankdata(b)

    def pearson_with_b(x: "np.ndarray", axis: int = -1) -> "np.ndarray":
        xm, ym = x - x.mean(axis=axis, keepdims=True), rb - rb.mean()
        return (xm * ym).sum(axis=axis) / np.sqrt((xm ** 2).sum(axis=axis) * (ym ** 2).sum())

    # one sample under "pairings": every ordering of a's ranks against b's, all k! of them (n_resamples=inf)
    test = permutation_test((ra,), pearson_with_b, permutation_type="pairings", vectorized=True,
                            n_resamples=math.inf, alternative="two-sided")
    return rho, float(test.pvalue)


def sft_dpo_rank_correlation(frame: "pd.DataFrame", benchmark: str = "aggregate_paper", condition: str = "clean",
                             metric: str = "score", sft_benchmark: str | None = None) -> "pd.DataFrame":
    """Per experiment, Spearman's rank correlation between its SFT grid (of `sft_benchmark`, default
    `benchmark`) and its DPO grid over the trained cells both have a value for: rho, p_value (two-sided; exact
    up to `EXACT_RANK_CELLS` cells, see `spearman`), cells. NaN where fewer than 3 cells are shared or one grid
    is constant."""
    import pandas as pd

    out = []
    for experiment, grids in _stage_grids(frame, benchmark, condition, metric, sft_benchmark).items():
        cells = sorted(set(grids["sft"]) & set(grids["dpo"]))
        a, b = [grids["sft"][c] for c in cells], [grids["dpo"][c] for c in cells]
        rho = p = float("nan")
        if len(cells) >= 3 and len(set(a)) > 1 and len(set(b)) > 1:
            rho, p = spearman(a, b)
        out.append({"experiment": experiment, "benchmark": benchmark, "condition": condition, "metric": metric,
                    "rho": rho, "p_value": p, "cells": len(cells)})
    return pd.DataFrame(out, columns=["experiment", "benchmark", "condition", "metric", "rho", "p_value", "cells"])


def dpo_lowers_share(frame: "pd.DataFrame", benchmark: str = "aggregate_paper", condition: str = "clean",
                     metric: str = "score") -> "pd.DataFrame":
    """Per experiment, the trained cells where DPO's value is below SFT's (literally lower; for a
    lower-is-better metric that is an improvement): lowered, cells (both stages have a value), share (%)."""
    import pandas as pd

    out = []
    for experiment, grids in _stage_grids(frame, benchmark, condition, metric).items():
        cells = sorted(set(grids["sft"]) & set(grids["dpo"]))
        lowered = sum(grids["dpo"][c] < grids["sft"][c] for c in cells)
        out.append({"experiment": experiment, "benchmark": benchmark, "condition": condition, "metric": metric,
                    "lowered": lowered, "cells": len(cells),
                    "share": lowered / len(cells) * 100.0 if cells else float("nan")})
    return pd.DataFrame(out, columns=["experiment", "benchmark", "condition", "metric", "lowered", "cells", "share"])


SELECTION_COLUMNS = ["experiment", "sft_benchmark", "benchmark", "condition", "metric", "sft_best_cell",
                     "dpo_at_sft_best", "gain_sft_best", "best_dpo_cells", "picked_best", "regret", "regret_pct",
                     "rho", "cells"]


def selection_by_benchmark(frame: "pd.DataFrame", sft_benchmarks: Sequence[str], benchmark: str = "aggregate_paper",
                           condition: str = "clean", metric: str = "score") -> "pd.DataFrame":
    """Per experiment and SFT benchmark b in `sft_benchmarks`: the cell b's SFT grid picks (first on ties), DPO's
    `benchmark` value there, its gain over DPO on (0, 1) (%), whether it is a best DPO cell (`picked_best`), the
    regret against the best DPO cell, and Spearman's rho between b's SFT grid and the DPO grid (`cells` shared).
    The paper publishes its DPO grids as the aggregate only, so on its grids this asks how well each benchmark's
    SFT ranking predicts where DPO ends up; with b = `benchmark` it is `plasticity`'s SFT-best row."""
    import pandas as pd

    parts = []
    for sft_benchmark in sft_benchmarks:
        p = plasticity(frame, benchmark, condition, metric, sft_benchmark)
        if p.empty:
            continue
        p["regret"], p["regret_pct"] = _regret(p, metric in LOWER_IS_BETTER)
        rho = sft_dpo_rank_correlation(frame, benchmark, condition, metric, sft_benchmark)
        part = p.merge(rho[["experiment", "rho", "cells"]], on="experiment")
        part["sft_benchmark"] = sft_benchmark
        part["picked_best"] = [c in best for c, best in zip(part["sft_best_cell"], part["best_dpo_cells"])]
        parts.append(part[SELECTION_COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SELECTION_COLUMNS)


def _rho_range(rho: "pd.Series") -> dict[str, float]:
    """rho_min, rho_median, rho_max of the non-NaN values (NaN where there are none)."""
    values = rho.dropna().astype(float)
    if values.empty:
        return {"rho_min": float("nan"), "rho_median": float("nan"), "rho_max": float("nan")}
    return {"rho_min": float(values.min()), "rho_median": float(values.median()), "rho_max": float(values.max())}


def selection_summary(table: "pd.DataFrame") -> "pd.DataFrame":
    """A `selection_by_benchmark` table summarised per SFT benchmark, over its experiments (NaNs left out of each
    figure): experiments, mean gain_sft_best (%), mean regret_pct, how often the picked cell is a best DPO cell,
    and the median, min and max of rho."""
    import pandas as pd

    rows = []
    for sft_benchmark, group in table.groupby("sft_benchmark", sort=False):
        rows.append({"sft_benchmark": sft_benchmark, "experiments": int(len(group)),
                     "mean_gain_sft_best": float(group["gain_sft_best"].astype(float).mean()),
                     "mean_regret_pct": float(group["regret_pct"].astype(float).mean()),
                     "picked_best": int(group["picked_best"].sum()), **_rho_range(group["rho"])})
    return pd.DataFrame(rows, columns=["sft_benchmark", "experiments", "mean_gain_sft_best", "mean_regret_pct",
                                       "picked_best", "rho_median", "rho_min", "rho_max"])


EXTRAS_COLUMNS = ["experiment", "benchmark", "rho", "p_value", "cells", "lowered", "share", "sft_best_cell",
                  "best_dpo_cells", "regret", "regret_pct"]


def plasticity_extras(frame: "pd.DataFrame", benchmark: str = "aggregate_paper", condition: str = "clean",
                      metric: str = "score", min_cells: int = MIN_RANK_CELLS) -> "pd.DataFrame":
    """What the paper does not show, per experiment, in one table: Spearman's rho (and its p) between the SFT and
    DPO grids, the cells where DPO lowers the value (count, share %), and the regret of choosing the cell by its
    SFT score. rho and p are NaN where fewer than `min_cells` cells are shared (default `MIN_RANK_CELLS`: below
    5 cells no ordering can reach p < 0.05)."""
    import pandas as pd

    rho = sft_dpo_rank_correlation(frame, benchmark, condition, metric)
    if rho.empty:
        return pd.DataFrame(columns=EXTRAS_COLUMNS)
    low = dpo_lowers_share(frame, benchmark, condition, metric)
    reg = selection_regret(frame, benchmark, condition, metric)
    out = rho.merge(low[["experiment", "lowered", "share"]], on="experiment").merge(
        reg[["experiment", "sft_best_cell", "best_dpo_cells", "regret", "regret_pct"]], on="experiment")
    out.loc[out["cells"] < min_cells, ["rho", "p_value"]] = float("nan")
    return out[EXTRAS_COLUMNS]


def extras_summary(table: "pd.DataFrame") -> dict[str, Any]:
    """A `plasticity_extras` table over its experiments: rho's min, median and max (NaN left out), the cells DPO
    lowers pooled over experiments (count, of how many, share %), and the mean regret (points, % of the best)."""
    cells, lowered = int(table["cells"].sum()), int(table["lowered"].sum())
    return {"experiments": int(len(table)), **_rho_range(table["rho"]),
            "lowered_cells": lowered, "cells": cells, "lowered_share": lowered / cells * 100 if cells else float("nan"),
            "regret_mean": float(table["regret"].astype(float).mean()),
            "regret_pct_mean": float(table["regret_pct"].astype(float).mean())}


def posix_change(frame: "pd.DataFrame") -> "pd.DataFrame":
    """ΔDPO (DPO − SFT) of POSIX per experiment, benchmark, perturbation kind and trained cell, for every POSIX
    metric the frame has (negative = DPO made the cell more robust). Columns: experiment, benchmark, condition,
    metric, lambda_p, lambda_r, value."""
    from evalsuite.analysis.gains import delta_dpo

    delta = delta_dpo(frame[frame["metric"].astype(str).str.startswith("posix")])
    return delta.loc[~delta["is_base"], ["experiment", "benchmark", "condition", "metric", "lambda_p", "lambda_r",
                                         "value"]].reset_index(drop=True)
