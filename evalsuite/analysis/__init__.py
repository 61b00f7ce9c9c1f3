"""Pure functions on the λ-grid study's tables (no plotting, no I/O beyond the two loaders): the grid frame of a
run or of the WIT paper's published grids, gains against the (0, 1) cell, best and optimal cells, ΔDPO, the
paper's aggregate, DPO plasticity, the PLW curve and run comparison. Shared by `evalsuite report` and notebooks.
Item-level analyses (intervals, corrected tests, flips, agreement) are in `evalsuite.analysis.paired`; what a
grid is too small to show, in `evalsuite.analysis.limits`.
"""

from evalsuite.analysis.aggregate import AGGREGATE_LABELS, paper_aggregate, with_aggregates
from evalsuite.analysis.frame import (BASE_CELL, BENCHMARKS, GRID_COLUMNS, KEY_COLUMNS, REFERENCE_CELL, Cell,
                                      grid_cells, grid_frame, grid_from_results, grid_from_runs, select,
                                      sort_frame)
from evalsuite.analysis.gains import (LOWER_IS_BETTER, best_cells, best_lambda_p_share, decimals_for, delta_dpo,
                                      gain, optimal_cells, relative_gain)
from evalsuite.analysis.paper import PAPER_CITATION, paper_grids, paper_setting, paper_settings
from evalsuite.analysis.plasticity import (dpo_lowers_share, extras_summary, plasticity, plasticity_extras,
                                           plasticity_summary, posix_change, selection_by_benchmark,
                                           selection_regret, selection_summary, sft_dpo_rank_correlation, spearman)
from evalsuite.analysis.views import compare_runs, plw_curve

__all__ = [
    "AGGREGATE_LABELS", "BASE_CELL", "BENCHMARKS", "Cell", "GRID_COLUMNS", "KEY_COLUMNS", "LOWER_IS_BETTER",
    "PAPER_CITATION", "REFERENCE_CELL", "best_cells", "best_lambda_p_share", "compare_runs", "decimals_for",
    "delta_dpo", "dpo_lowers_share", "extras_summary", "gain", "grid_cells", "grid_frame", "grid_from_results",
    "grid_from_runs", "optimal_cells", "paper_aggregate", "paper_grids", "paper_setting", "paper_settings",
    "plasticity", "plasticity_extras", "plasticity_summary", "plw_curve", "posix_change", "relative_gain", "select",
    "selection_by_benchmark", "selection_regret", "selection_summary", "sft_dpo_rank_correlation", "sort_frame",
    "spearman", "with_aggregates",
]
