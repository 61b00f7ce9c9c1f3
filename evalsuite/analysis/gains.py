"""Gains against the (0, 1) cell, best cells, the optimum per benchmark (the paper's Table 2), ΔDPO, and the
paper's "best λp ≤ 0.6" count.

Two rules hold throughout:
- positive gain = better, always: for a lower-is-better metric (POSIX, correct→wrong, drop rate, counts of
  what went wrong) the gain is (ref − v) / |ref| × 100, e.g. POSIX's (IT − v) / IT;
- ties are decided at the precision the numbers are shown and published with: values are rounded to
  `decimals_for(metric)` decimals (2; POSIX 3) and then compared exactly. The paper's grids carry 2 decimals
  (POSIX 3), so on them this is exact equality; on a run it makes a tie what a reader sees as one. The Base
  (0, 0) cell is never a best cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence, Union

from evalsuite.analysis.frame import (BENCHMARKS, GRID_COLUMNS, KEY_COLUMNS, REFERENCE_CELL, Cell, conform,
                                      sort_frame)

if TYPE_CHECKING:
    import pandas as pd

LOWER_IS_BETTER: frozenset[str] = frozenset({
    "posix", "posix_max_new_tokens", "correct_to_wrong", "performance_drop_rate", "unscored",
    "truncated_requests", "skipped_variants"})
DECIMALS = {"posix": 3, "posix_max_new_tokens": 3}
DEFAULT_DECIMALS = 2
Grid = Union["pd.DataFrame", Mapping[Cell, float]]


def decimals_for(metric: str) -> int:
    """Decimals a metric is shown (and the paper published it) with: POSIX 3, everything else 2."""
    return DECIMALS.get(metric, DEFAULT_DECIMALS)


def gain(value: float, ref: float, lower_is_better: bool = False) -> float:
    """Relative gain in percent of `value` over `ref`, positive = better; NaN when ref is 0 or NaN."""
    import math

    if ref is None or value is None or math.isnan(ref) or math.isnan(value) or ref == 0:
        return float("nan")
    diff = (ref - value) if lower_is_better else (value - ref)
    return diff / abs(ref) * 100.0


def relative_gain(frame: "pd.DataFrame") -> "pd.DataFrame":
    """`frame` with a column "gain": each row's relative gain (%) over the (0, 1) cell of the same experiment,
    stage, benchmark, condition and metric (flipped for `LOWER_IS_BETTER` metrics). Base rows get theirs too
    (the report shows it, but leaves Base out of the colour scale); rows whose grid has no (0, 1) value get NaN."""
    import numpy as np

    group = ["experiment", "stage", "benchmark", "condition", "metric"]
    is_ref = ((frame["lambda_p"] == REFERENCE_CELL[0]) & (frame["lambda_r"] == REFERENCE_CELL[1])
              & ~frame["is_base"].astype(bool))
    refs = frame.loc[is_ref, group + ["value"]].drop_duplicates(group).rename(columns={"value": "_ref"})
    out = frame.merge(refs, on=group, how="left")
    ref = out["_ref"].where(out["_ref"] != 0)
    lower = out["metric"].isin(LOWER_IS_BETTER).to_numpy()
    diff = np.where(lower, ref - out["value"], out["value"] - ref)
    out["gain"] = diff / ref.abs() * 100.0
    out.index = frame.index
    return out.drop(columns="_ref")


def _cells_and_values(grid: Grid) -> tuple[list[Cell], list[float]]:
    """Trained cells (Base left out) and their values, in row-major order."""
    if isinstance(grid, Mapping):
        items = sorted((c, v) for c, v in grid.items() if tuple(c) != (0.0, 0.0))
        return [tuple(map(float, c)) for c, _ in items], [float(v) for _, v in items]  # type: ignore[misc]
    rows = grid
    if "is_base" in rows:
        rows = rows[~rows["is_base"].astype(bool)]
    else:
        rows = rows[~((rows["lambda_p"] == 0) & (rows["lambda_r"] == 0))]
    rows = rows.sort_values(["lambda_p", "lambda_r"])
    cells = [(float(p), float(r)) for p, r in zip(rows["lambda_p"], rows["lambda_r"])]
    if len(set(cells)) != len(cells):
        raise ValueError("best_cells takes one grid; these rows hold several values for one cell")
    return cells, [float(v) for v in rows["value"]]


def _grid_metric(grid: Grid) -> str | None:
    if isinstance(grid, Mapping) or "metric" not in grid or grid["metric"].nunique() != 1:
        return None
    return str(grid["metric"].iloc[0])


def best_cells(grid: Grid, lower_is_better: bool | None = None, decimals: int | None = None) -> list[Cell]:
    """The best trained cell(s) of one grid, ties kept, in row-major order (λp, then λr); Base excluded, NaN
    cells ignored; [] if no cell has a value. `grid` is a grid frame's rows of one grid or a mapping
    cell → value. `lower_is_better` and `decimals` default from the grid's metric column (else False and 2)."""
    import math

    metric = _grid_metric(grid)
    if lower_is_better is None:
        lower_is_better = metric in LOWER_IS_BETTER
    if decimals is None:
        decimals = decimals_for(metric or "")
    cells, values = _cells_and_values(grid)
    shown = [(c, round(v, decimals)) for c, v in zip(cells, values) if not math.isnan(v)]
    if not shown:
        return []
    pick = min if lower_is_better else max
    best = pick(v for _, v in shown)
    return [c for c, v in shown if v == best]


def _grids(frame: "pd.DataFrame", stage: str | None, condition: str | None, metric: str | None,
           benchmarks: Sequence[str] | None = None) -> Any:
    """(experiment, benchmark) → that grid's rows, for one stage, condition and metric."""
    rows = frame
    for column, value in (("stage", stage), ("condition", condition), ("metric", metric)):
        if value is not None:
            rows = rows[rows[column] == value]
    if benchmarks is not None:
        rows = rows[rows["benchmark"].isin(benchmarks)]
    return rows.groupby(["experiment", "benchmark"], sort=True)


def optimal_cells(frame: "pd.DataFrame", stage: str = "sft", condition: str = "clean",
                  metric: str = "score") -> "pd.DataFrame":
    """The paper's Table 2: per experiment × benchmark of one stage, the optimal cell(s) (ties kept, row-major),
    the first of them as lambda_p/lambda_r, its value (that first cell's: ties are equal at the shown precision,
    and value, gain and λ always describe the same cell), the (0, 1) value and the relative gain (%). Grids with
    no trained value are left out."""
    import pandas as pd

    lower = metric in LOWER_IS_BETTER
    out = []
    for (experiment, benchmark), grid in _grids(frame, stage, condition, metric):
        cells = best_cells(grid, lower)
        if not cells:
            continue
        trained = grid[~grid["is_base"].astype(bool)]
        value_at = {(float(p), float(r)): float(v)
                    for p, r, v in zip(trained["lambda_p"], trained["lambda_r"], trained["value"])}
        best = value_at[cells[0]]
        ref = value_at.get(REFERENCE_CELL, float("nan"))
        out.append({"experiment": experiment, "stage": stage, "benchmark": benchmark, "condition": condition,
                    "metric": metric, "cells": cells, "ties": len(cells), "lambda_p": cells[0][0],
                    "lambda_r": cells[0][1], "value": best, "ref_value": ref, "gain": gain(best, ref, lower)})
    columns = ["experiment", "stage", "benchmark", "condition", "metric", "cells", "ties", "lambda_p", "lambda_r",
               "value", "ref_value", "gain"]
    return sort_frame(pd.DataFrame(out, columns=columns))


LambdaRule = Literal["first", "all", "last"]


def best_lambda_p_share(frame: "pd.DataFrame", threshold: float = 0.6, rule: LambdaRule = "first",
                        stage: str = "sft", benchmarks: Sequence[str] = BENCHMARKS, condition: str = "clean",
                        metric: str = "score") -> tuple[int, int]:
    """(count, total): over the (experiment, benchmark) grids of one stage, how many have their best λp ≤
    `threshold`. The best λp of a grid is that of its best cell; with ties (kept as in `best_cells`):
    - "first" (default): the first tied cell in row-major order, i.e. the smallest λp among the ties — the same
      tie rule as the SFT-best cell of `plasticity`, and equivalent to "some best cell has λp ≤ threshold".
      On the paper's grids: 61 of 75, the paper's figure.
    - "all": every tied cell has λp ≤ threshold (59 of 75 on the paper's grids);
    - "last": the last tied cell (59 of 75).
    Grids without a trained value are not counted in `total`."""
    count = total = 0
    for _, grid in _grids(frame, stage, condition, metric, benchmarks):
        cells = best_cells(grid, metric in LOWER_IS_BETTER)
        if not cells:
            continue
        total += 1
        chosen = {"first": cells[:1], "last": cells[-1:], "all": cells}[rule]
        count += all(p <= threshold + 1e-9 for p, _ in chosen)
    return count, total


def delta_dpo(frame: "pd.DataFrame") -> "pd.DataFrame":
    """ΔDPO = DPO − SFT per experiment, cell, benchmark, condition and metric where both stages have a value
    (stage "delta"; the Base cell, shown under both stages with the same values, gets 0). No interval: low,
    high, n and p_vs_0_1 are NaN; failed/missing add both stages'."""
    on = [c for c in KEY_COLUMNS if c != "stage"]
    sft = frame.loc[frame["stage"] == "sft", on + ["value", "failed", "missing"]]
    dpo = frame.loc[frame["stage"] == "dpo", on + ["value", "failed", "missing"]]
    both = sft.merge(dpo, on=on, suffixes=("_sft", "_dpo"))
    both["stage"] = "delta"
    both["value"] = both["value_dpo"] - both["value_sft"]
    both["failed"] = both["failed_sft"] + both["failed_dpo"]
    both["missing"] = both["missing_sft"] + both["missing_dpo"]
    return sort_frame(conform(both[[c for c in GRID_COLUMNS if c in both]]))
