"""The aggregate of the five benchmarks, two ways.

The WIT paper prints "the average of five benchmarks" as (MMLU + BBH + AlpacaEval + IFEval + 10·MT-Bench) / 4,
which is 1.25× their mean. Figures put beside the paper's need that number, so it is computed exactly so and
labelled as the paper's; the plain mean (MT-Bench ×10 onto 0–100, divided by 5) sits beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from evalsuite.analysis.frame import BENCHMARKS, GRID_COLUMNS, KEY_COLUMNS, conform, sort_frame

if TYPE_CHECKING:
    import pandas as pd

AGGREGATE_LABELS = {"aggregate_paper": "Paper's aggregate (=1.25× mean)", "mean": "Mean of five"}
# onto 0–100 before adding: MT-Bench is rated 1–10, the others are in percent
TO_PERCENT = {"mtbench": 10.0}


def paper_aggregate(frame: "pd.DataFrame", metrics: Sequence[str] = ("score",)) -> "pd.DataFrame":
    """Rows with benchmark "aggregate_paper" (sum / 4) and "mean" (sum / 5) per experiment, stage, cell,
    condition and metric in `metrics`, from the rows of the five benchmarks. Where not all five are there the
    value is NaN and `missing_benchmarks` counts the absent (or NaN) ones, so a partial sum is never shown as
    an aggregate. `failed`/`missing` are summed over the five; there is no interval (low/high/n NaN)."""
    import numpy as np
    import pandas as pd

    rows = frame[frame["benchmark"].isin(BENCHMARKS) & frame["metric"].isin(metrics)]
    group = [c for c in KEY_COLUMNS if c != "benchmark"]
    if rows.empty:
        return conform(pd.DataFrame(columns=GRID_COLUMNS + ["missing_benchmarks"]))
    scaled = rows["value"] * rows["benchmark"].map(TO_PERCENT).fillna(1.0)
    wide = rows.assign(v=scaled).set_index(group + ["benchmark"])["v"].unstack("benchmark")
    wide = wide.reindex(columns=list(BENCHMARKS))
    present = wide.notna().sum(axis=1)
    total = wide.sum(axis=1, min_count=1).where(present == len(BENCHMARKS))
    counts = rows.groupby(group, dropna=False)[["failed", "missing"]].sum().reindex(wide.index)
    parts = []
    for name, divisor in (("aggregate_paper", 4.0), ("mean", 5.0)):
        part = wide.index.to_frame(index=False)
        part["benchmark"] = name
        part["value"] = (total / divisor).to_numpy()
        part["low"] = part["high"] = part["n"] = part["p_vs_0_1"] = np.nan
        part["status"] = ""
        part["failed"] = counts["failed"].fillna(0).to_numpy()
        part["missing"] = counts["missing"].fillna(0).to_numpy()
        part["missing_benchmarks"] = (len(BENCHMARKS) - present).to_numpy()
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out = out[(out["missing_benchmarks"] < len(BENCHMARKS))]  # a key none of the five has is not a cell
    return sort_frame(conform(out[GRID_COLUMNS + ["missing_benchmarks"]]))


def with_aggregates(frame: "pd.DataFrame", metrics: Sequence[str] = ("score",)) -> "pd.DataFrame":
    """`frame` plus `paper_aggregate(frame)`; rows already in `frame` win (the paper's printed aggregate stays
    as published rather than recomputed from its rounded benchmark values)."""
    import pandas as pd

    new = paper_aggregate(frame, metrics)
    have = pd.MultiIndex.from_frame(frame[KEY_COLUMNS])
    new = new[~pd.MultiIndex.from_frame(new[KEY_COLUMNS]).isin(have)]
    if new.empty:
        return frame
    out = pd.concat([frame, new], ignore_index=True)
    if "base_source" in out:  # an aggregate row borrows nothing itself
        out["base_source"] = out["base_source"].fillna("")
    return sort_frame(out)
