"""Views across experiments and runs: the PLW paper's curve (score against λp at λr = 1, one line per experiment)
and the per-cell differences between two runs of the same grid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from evalsuite.analysis.frame import KEY_COLUMNS, sort_frame

if TYPE_CHECKING:
    import pandas as pd

PLW_COLUMNS = ["experiment", "stage", "benchmark", "condition", "metric", "lambda_p", "lambda_r", "value", "low",
               "high", "n"]


def plw_curve(frame: "pd.DataFrame", lambda_r: float = 1.0, stage: str = "sft", condition: str = "clean",
              metric: str = "score", benchmarks: Sequence[str] | None = None) -> "pd.DataFrame":
    """Score against λp at λr = `lambda_r` (trained cells only), one series per experiment and benchmark, with
    its interval (low/high; NaN where the source has none), sorted by experiment, benchmark, λp. Prompt loss
    is expected to matter most on short-completion data (Huerta-Enochian & Ko), so experiments sit side by
    side here, never pooled."""
    rows = frame[(frame["stage"] == stage) & (frame["condition"] == condition) & (frame["metric"] == metric)
                 & ((frame["lambda_r"] - lambda_r).abs() < 1e-9) & ~frame["is_base"].astype(bool)]
    if benchmarks is not None:
        rows = rows[rows["benchmark"].isin(benchmarks)]
    return sort_frame(rows[PLW_COLUMNS])


def compare_runs(a: "pd.DataFrame", b: "pd.DataFrame") -> "pd.DataFrame":
    """Per cell (same experiment key, stage, cell, benchmark, condition, metric) of two grid frames: value_a,
    value_b, diff = value_b − value_a, and `present` ("both", "a_only", "b_only") so a cell only one run has is
    shown as such, never dropped."""
    keep = KEY_COLUMNS + ["value"]
    both = a[keep].merge(b[keep], on=KEY_COLUMNS, how="outer", suffixes=("_a", "_b"), indicator="present")
    both["present"] = both["present"].map({"both": "both", "left_only": "a_only", "right_only": "b_only"})
    both["present"] = both["present"].astype(str)
    both["diff"] = both["value_b"] - both["value_a"]
    return sort_frame(both)
