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

from typing import TYPE_CHECKING, Any

from evalsuite.analysis.frame import REFERENCE_CELL, Cell
from evalsuite.analysis.gains import LOWER_IS_BETTER, best_cells, decimals_for, gain

if TYPE_CHECKING:
    import pandas as pd

PLASTICITY_COLUMNS = ["experiment", "benchmark", "condition", "metric", "dpo_ref", "best_dpo_cells", "best_dpo",
                      "gain_best", "sft_best_cells", "sft_best_cell", "dpo_at_sft_best", "gain_sft_best"]


def _stage_grids(frame: "pd.DataFrame", benchmark: str, condition: str,
                 metric: str) -> dict[str, dict[str, dict[Cell, float]]]:
    """experiment → stage ("sft"/"dpo") → trained cell → value (NaN values dropped), for one benchmark."""
    rows = frame[(frame["benchmark"] == benchmark) & (frame["condition"] == condition)
                 & (frame["metric"] == metric) & frame["stage"].isin(["sft", "dpo"])
                 & ~frame["is_base"].astype(bool) & frame["value"].notna()]
    grids: dict[str, dict[str, dict[Cell, float]]] = {}
    for e, s, p, r, v in rows[["experiment", "stage", "lambda_p", "lambda_r", "value"]].itertuples(index=False):
        grids.setdefault(e, {}).setdefault(s, {})[(float(p), float(r))] = float(v)
    return {e: g for e, g in sorted(grids.items()) if "sft" in g and "dpo" in g}


def plasticity(frame: "pd.DataFrame", benchmark: str = "aggregate_paper", condition: str = "clean",
               metric: str = "score") -> "pd.DataFrame":
    """One row per experiment with both an SFT and a DPO grid of `benchmark`: dpo_ref (DPO on (0, 1)),
    best_dpo_cells (ties kept), best_dpo, gain_best (%), sft_best_cells (ties kept), sft_best_cell (the first:
    the one used), dpo_at_sft_best, gain_sft_best (%). Gains are NaN where a needed cell has no value."""
    import pandas as pd

    lower = metric in LOWER_IS_BETTER
    out = []
    for experiment, grids in _stage_grids(frame, benchmark, condition, metric).items():
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
                     metric: str = "score") -> "pd.DataFrame":
    """Per experiment, what choosing the cell by its SFT score (the SFT-best cell) instead of its DPO score
    costs after DPO: regret = best DPO value − DPO on the SFT-best cell (the other way round for a
    lower-is-better metric; ≥ 0), and regret_pct = regret / |best DPO value| × 100."""
    table = plasticity(frame, benchmark, condition, metric)
    lower = metric in LOWER_IS_BETTER
    regret = (table["dpo_at_sft_best"] - table["best_dpo"]) if lower else (table["best_dpo"] - table["dpo_at_sft_best"])
    out = table[["experiment", "benchmark", "condition", "metric", "sft_best_cell", "best_dpo_cells", "best_dpo",
                 "dpo_at_sft_best"]].copy()
    out["regret"] = regret.astype(float)
    out["regret_pct"] = (regret / table["best_dpo"].abs() * 100.0).astype(float)
    return out


def sft_dpo_rank_correlation(frame: "pd.DataFrame", benchmark: str = "aggregate_paper", condition: str = "clean",
                             metric: str = "score") -> "pd.DataFrame":
    """Per experiment, Spearman's rank correlation between its SFT and DPO grids over the trained cells both
    have a value for: rho, p_value (scipy's, two-sided), cells. NaN where fewer than 3 cells are shared or one
    grid is constant."""
    import pandas as pd
    from scipy.stats import spearmanr

    out = []
    for experiment, grids in _stage_grids(frame, benchmark, condition, metric).items():
        cells = sorted(set(grids["sft"]) & set(grids["dpo"]))
        a, b = [grids["sft"][c] for c in cells], [grids["dpo"][c] for c in cells]
        rho = p = float("nan")
        if len(cells) >= 3 and len(set(a)) > 1 and len(set(b)) > 1:
            result = spearmanr(a, b)
            rho, p = float(result.statistic), float(result.pvalue)
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
