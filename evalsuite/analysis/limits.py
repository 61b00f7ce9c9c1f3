"""What a grid of this size can and cannot show, in words: a notebook or report states these instead of drawing a
conclusion the data cannot carry (a 3-cell grid has no rank correlation worth a number; six items per cell
cannot make any cell significantly better than (0, 1) once corrected for the number of cells).

The bounds are exact, not rules of thumb:
- Spearman's rank correlation of k cells: the smallest two-sided exact p-value is 2 / k! (perfect agreement or
  reversal is one of k! orderings, each direction), which is below 0.05 only from k = 5 cells (2/120).
- McNemar's exact test on n paired 0/1 items: the smallest p-value is 2 · 0.5ⁿ (every item discordant, all one
  way); after Holm's correction over m cells the smallest adjusted p is m times that.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

from evalsuite.analysis.frame import BENCHMARKS, REFERENCE_CELL

if TYPE_CHECKING:
    import pandas as pd

MIN_RANK_CELLS = 5
FEW_ITEMS = 30  # below this an interval on a proportion is wider than ±15 points at p = 0.5
LIMIT_COLUMNS = ["experiment", "benchmark", "topic", "finding"]


def smallest_spearman_p(cells: int) -> float:
    """The smallest two-sided exact p-value Spearman's test can give on `cells` points: 2 / cells!."""
    return min(1.0, 2.0 / math.factorial(cells)) if cells >= 1 else 1.0


def smallest_holm_mcnemar_p(items: int, tests: int) -> float:
    """The smallest Holm-adjusted p an exact McNemar test on `items` paired 0/1 items can reach among `tests`
    cells: min(1, tests · 2 · 0.5^items)."""
    return min(1.0, tests * 2.0 * 0.5 ** items)


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _trained(frame: "pd.DataFrame", experiment: str, stage: str, benchmark: str) -> "pd.DataFrame":
    return frame[(frame["experiment"] == experiment) & (frame["stage"] == stage) & (frame["benchmark"] == benchmark)
                 & (frame["condition"] == "clean") & (frame["metric"] == "score") & ~frame["is_base"].astype(bool)
                 & frame["value"].notna()]


def limits(frame: "pd.DataFrame", items: Optional["pd.DataFrame"] = None,
           alpha: float = 0.05) -> "pd.DataFrame":
    """One row per limit found (columns experiment, benchmark, topic, finding) for a run's grid frame (and its
    `paired.item_frame`, for the 0/1 checks): no DPO grid; no (0, 1) cell; too few cells for a rank correlation;
    the paper's aggregate missing benchmarks; too few items for any cell to pass Holm's correction; few items in
    general; DPO that changed no score. An empty table means none of these applies."""
    import pandas as pd

    out: list[dict[str, str]] = []

    def say(experiment: str, benchmark: str, topic: str, finding: str) -> None:
        out.append({"experiment": experiment, "benchmark": benchmark, "topic": topic, "finding": finding})

    clean = frame[(frame["condition"] == "clean") & (frame["metric"] == "score")]
    for experiment, exp in clean.groupby("experiment", sort=True):
        agg = exp[exp["benchmark"] == "aggregate_paper"]
        if agg["value"].isna().all():  # no aggregate row at all, or only NaN ones
            lacking = sorted(set(BENCHMARKS) - set(exp.loc[exp["value"].notna(), "benchmark"]),
                             key=BENCHMARKS.index)
            why = (f"this grid lacks {', '.join(lacking)}" if lacking
                   else "no cell has all five scored (failed or missing items)")
            say(experiment, "aggregate_paper", "aggregate",
                f"the paper's aggregate needs all five benchmarks (one task each) and {why}: no aggregate grid, "
                "no Table 3 on it; the analyses below are per benchmark")
        for benchmark in [b for b in exp["benchmark"].unique() if b not in ("aggregate_paper", "mean")]:
            sft, dpo = (_trained(frame, experiment, s, benchmark) for s in ("sft", "dpo"))
            if dpo.empty:
                say(experiment, benchmark, "DPO", "no DPO cell was evaluated: nothing can be said about plasticity")
                continue
            cells = {(float(p), float(r)) for p, r in zip(dpo["lambda_p"], dpo["lambda_r"])}
            shared = cells & {(float(p), float(r)) for p, r in zip(sft["lambda_p"], sft["lambda_r"])}
            if REFERENCE_CELL not in cells:
                say(experiment, benchmark, "reference",
                    "no DPO (0, 1) cell: gains, tests and Table 3 are measured against it and cannot be computed")
            if len(shared) < MIN_RANK_CELLS:
                say(experiment, benchmark, "rank correlation",
                    f"{len(shared)} cells have both an SFT and a DPO value: Spearman's test cannot reach p < 0.05 "
                    f"with fewer than {MIN_RANK_CELLS} (smallest possible p = {smallest_spearman_p(len(shared)):.2g});"
                    " whether SFT and DPO rank the cells alike is not concluded")
            n = dpo["n"].dropna()
            fewest = int(n.min()) if len(n) else 0
            if 0 < fewest < FEW_ITEMS:
                say(experiment, benchmark, "items",
                    f"{_items(fewest)} in the smallest cell: one item moves its score by {100 / fewest:.0f} points; "
                    "read the intervals, not the colours")
            # Holm's smallest adjusted p is m × the smallest raw p, which the cell with the most items bounds
            tested = dpo[dpo["p_vs_0_1"].notna() & ~((dpo["lambda_p"] == REFERENCE_CELL[0])
                                                      & (dpo["lambda_r"] == REFERENCE_CELL[1]))]
            most = int(tested["n"].max()) if tested["n"].notna().any() else 0
            if items is not None and len(tested) and most:
                asked = items[(items["experiment"] == experiment) & (items["benchmark"] == benchmark)
                              & (items["condition"] == "clean")]
                smallest = smallest_holm_mcnemar_p(most, len(tested))
                if len(asked) and asked["correct"].notna().all() and smallest >= alpha:
                    say(experiment, benchmark, "significance",
                        f"with at most {_items(most)} per cell and Holm over {len(tested)} cells the smallest possible "
                        f"adjusted p is {smallest:.2g} ≥ {alpha:g}: no cell can be shown to differ from DPO on "
                        "(0, 1)")
            delta = dpo.merge(sft, on=["lambda_p", "lambda_r"], suffixes=("_dpo", "_sft"))
            if len(delta) and (delta["value_dpo"] == delta["value_sft"]).all():
                say(experiment, benchmark, "DPO",
                    "DPO changed no cell's score: the DPO grid repeats the SFT grid (too few DPO steps or too "
                    "small a learning rate to move the model?), so plasticity differences are 0 by construction")
    return pd.DataFrame(out, columns=LIMIT_COLUMNS)
