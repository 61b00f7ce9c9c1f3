# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # DPO plasticity: are some (λp, λr) cells better starting points for preference alignment?
#
# The WIT paper (Chatterjee et al., TACL 2025, arXiv:2507.07817) fine-tunes a model on every cell of a grid of
# prompt-token weight λp × response-token weight λr, runs DPO on each cell, and asks whether the cell that is
# best after SFT is also the best starting point for DPO. Its answer is Fig. 3 (the post-DPO aggregate grids)
# and Table 3 (DPO on the conventional (0, 1) model vs DPO on the best post-DPO cell: **+8.01 %** on average
# over 15 model × dataset settings), plus **+2.44 %** for DPO on the SFT-best cell.
#
# **Part 1** reproduces those figures from the grids the paper publishes (shipped in `evalsuite.analysis`),
# then asks what the paper does not: do SFT and DPO rank the cells alike, how often does DPO *lower* a cell,
# what does choosing the cell by its SFT score cost after DPO, and how do the answers change when the cell is
# chosen by one benchmark instead of the 1.25× aggregate.
#
# **Part 2** runs the same analyses on your own `evalsuite run` folders (set `RUN_DIRS`), with what the
# published grids cannot give: bootstrap intervals on every gain, paired tests per cell against DPO on (0, 1)
# corrected for the number of cells (Holm), the items DPO flips in each cell, and how DPO changes answer
# agreement and POSIX under perturbations, cell by cell. Where a grid is too small to conclude something, the
# notebook says so instead of drawing it.
#
# Every number is computed by `evalsuite.analysis` and every figure drawn by the report's figure functions;
# this notebook only calls, shows and explains. `make notebook RUN=DIR` executes it on a run and writes the
# executed notebook and an HTML page under `reports/notebooks/`.

# %% tags=["parameters"]
# Run folders written by `evalsuite run` (empty: the paper's grids only). Set by `make notebook RUN=DIR` / papermill.
RUN_DIRS: list = []
RESAMPLES = 2000  # bootstrap resamples for the intervals of Part 2
SEED = 0

# %%
from evalsuite import analysis as A
from evalsuite.analysis import limits as L
from evalsuite.analysis import paired as P
from evalsuite.analysis.frame import benchmark_order
from evalsuite.report import figures as F
from evalsuite.report import tables as T
from evalsuite.report.notebook import show, show_figure

paper = A.paper_grids()
settings = A.paper_settings()
print(f"{len(settings)} published settings; source: {A.PAPER_CITATION}")

# %% [markdown]
# ## Part 1 — the paper
#
# ### Fig. 3: the aggregate after DPO, every setting
#
# Drawn in the paper's encoding: λp rows 0 → 1 top to bottom, λr columns with ticks on top; colour = relative
# gain over DPO on the (0, 1) model ("IT"), `RdYlGn` with a two-slope scale centred on 0 and each side stretched
# to its own extreme; the (0, 0) cell is the base model (uncoloured); red circle = best post-DPO cell (ties all
# circled), blue square = the SFT-best cell (Fig. 2's best, first on ties). The aggregate is the paper's printed
# one, (MMLU + BBH + AlpacaEval + IFEval + 10·MT-Bench) / 4, i.e. 1.25× the mean of the five.

# %%
gained = A.relative_gain(paper)
panels, row_labels, col_labels = F.settings_sheet(gained, stage="dpo", benchmark="aggregate_paper",
                                                  experiments=settings)
show_figure(F.small_multiples(panels, row_labels, col_labels,
                              title="Fig. 3 — aggregate after DPO (paper's published grids)"))

# %% [markdown]
# ### Table 3: DPO on (0, 1) vs DPO on the best post-DPO cell, and DPO on the SFT-best cell

# %%
table3 = T.dpo_table(paper, benchmark="aggregate_paper")
show("table3", table3, caption="Table 3 per setting (gains in %), and their mean")
headline = A.plasticity_summary(A.plasticity(paper))
show("headline", headline, caption="Means over the settings")
print(f"Best post-DPO cell vs DPO on (0, 1): {headline['gain_best']:+.2f} % "
      f"(mean over {headline['gain_best_n']} settings; the paper: +8.01 %)")
print(f"DPO on the SFT-best cell vs DPO on (0, 1): {headline['gain_sft_best']:+.2f} % "
      f"(mean over {headline['gain_sft_best_n']} settings; the paper: +2.44 %)")

# %% [markdown]
# ### What the paper does not show
#
# - **Rank agreement**: Spearman's ρ between each setting's SFT grid (Fig. 2) and its DPO grid (Fig. 3) over the
#   35 trained cells. High ρ means the SFT ranking is a good guide to where DPO ends up.
# - **DPO lowers a cell**: the share of trained cells whose aggregate is lower after DPO than after SFT.
# - **Regret**: choosing the cell by its SFT score (the SFT-best cell) instead of its DPO score costs
#   best DPO − DPO at the SFT-best cell, in points and in % of the best.

# %%
beyond = A.plasticity_extras(paper)
show("beyond_paper", beyond, caption="Per setting: rank correlation, cells DPO lowers, regret of the SFT choice")
beyond_summary = A.extras_summary(beyond)
show("beyond_summary", beyond_summary, caption="Over the 15 settings")
print(f"Spearman ρ (SFT vs DPO grid): {beyond_summary['rho_min']:.2f} to {beyond_summary['rho_max']:.2f}, "
      f"median {beyond_summary['rho_median']:.2f}")
print(f"DPO lowers the aggregate in {beyond_summary['lowered_cells']} of {beyond_summary['cells']} cells "
      f"({beyond_summary['lowered_share']:.1f} %)")
print(f"Choosing the cell by SFT instead of DPO costs {beyond_summary['regret_mean']:.2f} points on average "
      f"({beyond_summary['regret_pct_mean']:.2f} % of the best post-DPO cell)")

# %% [markdown]
# ### Per benchmark instead of the 1.25× aggregate
#
# The paper publishes its DPO grids only as the aggregate, so the DPO side stays the aggregate here; what changes
# is the benchmark whose **SFT** grid picks the cell. Rescaling cannot matter (the plain mean is 0.8× the paper's
# aggregate: same ranks, same relative gains); what matters is which benchmark decides. For each benchmark b:
# the gain after DPO of the cell b's SFT grid picks, the regret of that choice, how often it is a best post-DPO
# cell, and ρ between b's SFT grid and the DPO aggregate grid.

# %%
by_benchmark = A.selection_by_benchmark(paper, ["aggregate_paper", *A.BENCHMARKS])
selection = A.selection_summary(by_benchmark)
show("selection_by_benchmark", selection,
     caption="Choosing the cell by one benchmark's SFT grid; DPO measured on the aggregate (means over 15 settings)")

# %% [markdown]
# ## Part 2 — your runs
#
# Set `RUN_DIRS` (or run `make notebook RUN=DIR`). Each experiment (base model × SFT data) is its own grid; runs
# are shown side by side, never pooled. Gains are relative to the (0, 1) cell of the same stage.

# %%
if RUN_DIRS:
    frame = A.grid_frame(RUN_DIRS)
    items = P.item_frame(RUN_DIRS)
    experiments = sorted(set(frame["experiment"]))
    print(f"{len(RUN_DIRS)} run folder(s), {len(experiments)} experiment(s): {', '.join(experiments)}")
else:
    frame = items = None
    print("No RUN_DIRS given: Part 2 is skipped (the paper's grids only).")

# %% [markdown]
# ### What this grid can and cannot show
#
# Read this first: the sections below leave out what is listed here rather than draw it.

# %%
if frame is not None:
    limits = L.limits(frame, items)
    show("limits", limits, caption="Limits of this grid")
    if limits.empty:
        print("None of the known limits applies.")

# %% [markdown]
# ### The grids: SFT, DPO and ΔDPO per benchmark (clean score)

# %%
if frame is not None:
    run_gained = A.relative_gain(frame)
    for experiment in experiments:
        panels, row_labels, col_labels = F.experiment_sheet(run_gained, experiment, condition="clean", metric="score")
        if panels:
            show_figure(F.small_multiples(panels, row_labels, col_labels, title=f"{experiment} — score (clean)"))

# %% [markdown]
# ### Table 3 on your grid: per benchmark, and on the aggregate where all five benchmarks are there

# %%
if frame is not None:
    show("plasticity", T.plasticity_table(frame), caption="DPO plasticity per benchmark (gains in %)")
    aggregate = T.dpo_table(frame, benchmark="aggregate_paper")
    if len(aggregate):
        show("table3_run", aggregate, caption="Table 3 on the paper's aggregate")

# %% [markdown]
# ### Every DPO gain with its interval
#
# Relative gain (%) of each DPO cell over DPO on (0, 1), on the items both scored, with a 95 % paired
# percentile-bootstrap interval (items resampled, both cells' means on the same resample).

# %%
if frame is not None:
    intervals = P.gain_intervals(items, stage="dpo", resamples=RESAMPLES, seed=SEED)
    show("gain_intervals", intervals, caption="DPO gain over DPO on (0, 1), 95 % bootstrap interval")

# %% [markdown]
# ### Which DPO cells differ from DPO on (0, 1)?
#
# The run's paired test per cell (McNemar's for 0/1 scores, a paired bootstrap for rated ones), corrected with
# **Holm's** step-down method over the cells of each grid: it controls the chance of any false "this cell is
# different" across the grid, whatever the dependence between cells.

# %%
if frame is not None:
    tests = P.cell_tests(frame, stage="dpo")
    show("cell_tests", tests, decimals=3, caption="DPO cell vs DPO on (0, 1): raw and Holm-adjusted p")
    if len(tests):
        print(f"{int(tests['significant'].sum())} of {len(tests)} cell tests significant after Holm at 0.05")

# %% [markdown]
# ### What DPO did to each item, cell by cell
#
# Items right after SFT and wrong after DPO (right→wrong) and the reverse, per cell, with McNemar's test of SFT vs
# DPO on that cell (Holm over the grid's cells). Rated benchmarks count improved / worsened items instead.

# %%
if frame is not None:
    flipped = P.flips(items)
    show("flips", flipped, caption="SFT → DPO per cell (clean items)")

# %% [markdown]
# ### The robustness side: does DPO change agreement and POSIX differently across cells?
#
# Agreement: the share of perturbed variants whose answer equals the clean answer (per item, then averaged), after
# SFT and after DPO, with a paired bootstrap interval on the change. POSIX (lower = more robust): ΔDPO per cell
# as the run measured it (no interval: POSIX is one number per prompt set).

# %%
if frame is not None:
    agreement = P.agreement_change(items, resamples=RESAMPLES, seed=SEED)
    show("agreement_change", agreement, caption="Answer agreement (%) after SFT and DPO, ΔDPO with 95 % interval")
    show("posix_change", A.posix_change(frame), decimals=3,
         caption="ΔDPO of POSIX per cell (negative = DPO made the cell more robust)")
    show("agreement_spread", P.agreement_spread(agreement),
         caption="Range of ΔDPO agreement across cells (points); disjoint extremes describe, they do not test")

# %% [markdown]
# ### Rank agreement, DPO-lowers share and regret on your grid, per benchmark
#
# Only where the grid has enough cells for the figure to mean something (see the limits above).

# %%
if frame is not None:
    for benchmark in sorted(set(frame["benchmark"]) - {"aggregate_paper", "mean"}, key=benchmark_order):
        extras = A.plasticity_extras(frame, benchmark=benchmark)
        if len(extras):
            show(f"beyond_run/{benchmark}", extras,
                 caption=f"{benchmark}: ρ (only with ≥ {L.MIN_RANK_CELLS} cells), cells DPO lowers, regret")
