"""The long "grid frame" every analysis function takes, and how a run's results table becomes one.

One row per (experiment, stage, λp, λr, benchmark, condition, metric), values on the PAPER's scale so that a
user's grid and the published grids go through the same functions: proportions ×100 (percent), MT-Bench 1–10
as is, counts and POSIX as is. Columns (`GRID_COLUMNS`):

    experiment, stage ("sft" | "dpo"; "delta" after `delta_dpo`), lambda_p, lambda_r, is_base (the (0, 0) Base
    cell), benchmark, condition, metric, value, low, high, n, failed, missing, p_vs_0_1, status

- `benchmark`: the registry name (mmlu, bbh, …), except where one run evaluated several tasks of one benchmark
  (mmlu_loglikelihood and mmlu_generative; bbh_zeroshot and bbh_cot): then each of those tasks is its own grid
  and `benchmark` is the task name, in every run given together (so one name means one task throughout a
  report). The paper's aggregate needs the plain names, so there it is NaN with the benchmark counted missing.
- `failed`: status rows of the checkpoint × task (condition "all", or this condition) that say "failed: …"
  (0 or 1 in practice). A condition-"all" status stands for "clean" and every condition the task has anywhere
  in the run (on any checkpoint): a checkpoint that failed before its perturbations still shows them as failed.
  A failed benchmark leaves no score, so it gets a `score` row with value NaN: the cell is shown as failed,
  never silently absent. A "skipped: …" status (e.g. a kind the tokenizer cannot be asked in) gets the same
  NaN `score` row (with `failed` 0).
- `status`: why a cell may be empty: the non-ok status texts ("failed: …", "skipped: …") of the checkpoint ×
  task × condition, joined with "; " where several apply; "" otherwise (and on aggregates, ΔDPO, the paper's
  grids).
- `missing`: items that could not be scored (the run's `unscored` row for the same checkpoint × task ×
  condition); the score is over the others.
- `p_vs_0_1`: the run's paired test of this cell against the (0, 1) cell of its stage (McNemar for 0/1 scores,
  paired bootstrap otherwise), on the clean `score` row only.

Extra columns after `GRID_COLUMNS` in `grid_from_runs`' frame: `checkpoint` (the checkpoint's name in its run)
and `base_source`: on a Base row borrowed from another run than the experiment's own, that run (the source
given, else "run <index>"); "" on every other row.

Base checkpoints carry experiment "" in a run; they are attached to every experiment whose rows have the same
`base_model`, under both stages, so each stage's grid has its (0, 0) cell (from the experiment's own run where
that evaluated the base model, else from the first run given that did). Rows of checkpoints that are neither a
base nor on a grid (no λ) are left out here; the report's provenance reads the results table for those.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

Cell = tuple[float, float]

REFERENCE_CELL: Cell = (0.0, 1.0)
BASE_CELL: Cell = (0.0, 0.0)
BENCHMARKS = ("mmlu", "bbh", "alpacaeval", "ifeval", "mtbench")
STAGES = ("sft", "dpo")
BASE_STAGES = ("base", "hf")
KEY_COLUMNS = ["experiment", "stage", "lambda_p", "lambda_r", "is_base", "benchmark", "condition", "metric"]
GRID_COLUMNS = KEY_COLUMNS + ["value", "low", "high", "n", "failed", "missing", "p_vs_0_1", "status"]

# metrics on the scale of the benchmark's score (×100 where that is a proportion; MT-Bench stays 1–10)
SCORE_SCALED = frozenset({"score", "worst_case_perturbed", "worst_case_with_clean", "clean_score_same_items",
                          "diff_vs_0_1"})
# metrics that are proportions whatever the benchmark (shares of items or pairs) → percent
PROPORTIONS = frozenset({"agreement", "correct_to_wrong", "wrong_to_correct", "performance_drop_rate"})
P_VALUE_METRICS = frozenset({"mcnemar_p_vs_0_1", "paired_bootstrap_p_vs_0_1"})
LAMBDA_DECIMALS = 4  # λ read back from manifests as 0.6000000001 must still land on the cell 0.6


def benchmark_order(name: str) -> tuple[int, str]:
    """Sort key: the paper's five benchmarks in its order, then the aggregates, then anything else by name."""
    order = list(BENCHMARKS) + ["aggregate_paper", "mean"]
    return (order.index(name), "") if name in order else (len(order), name)


def sort_frame(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Rows in one fixed order (experiment, stage, benchmark in the paper's order, condition, metric, λp, λr), so
    that everything built from a frame (tables, report bytes) is identical on a re-run."""
    if frame.empty:
        return frame.reset_index(drop=True)
    keys = frame["benchmark"].map(lambda b: benchmark_order(b)[0])
    out = frame.assign(_b=keys).sort_values(
        ["experiment", "stage", "_b", "benchmark", "condition", "metric", "lambda_p", "lambda_r"], kind="stable")
    return out.drop(columns="_b").reset_index(drop=True)


def conform(frame: "pd.DataFrame") -> "pd.DataFrame":
    """`frame` with every grid column (optional ones filled: failed/missing 0, p NaN, status "") in
    `GRID_COLUMNS` order and dtypes, extra columns kept after them."""
    import numpy as np

    out = frame.copy()
    for column in GRID_COLUMNS:
        if column not in out:
            out[column] = (0 if column in ("failed", "missing") else False if column == "is_base"
                           else "" if column == "status" else np.nan)
    out["status"] = out["status"].fillna("").astype(str)
    for column in ("failed", "missing"):
        out[column] = out[column].fillna(0).astype("int64")
    for column in ("lambda_p", "lambda_r", "value", "low", "high", "n", "p_vs_0_1"):
        out[column] = out[column].astype("float64")
    out["is_base"] = out["is_base"].astype(bool)
    extra = [c for c in out.columns if c not in GRID_COLUMNS]
    return out[GRID_COLUMNS + extra]


def _scale_factor(metric: str, scale: Any) -> float:
    if metric in PROPORTIONS or (metric in SCORE_SCALED and scale == "proportion"):
        return 100.0
    return 1.0


def grid_from_results(results: "pd.DataFrame") -> "pd.DataFrame":
    """One run's results table (the spec's columns) as a grid frame; see the module docstring for the rules."""
    return grid_from_runs([results])


def grid_from_runs(tables: Sequence["pd.DataFrame"], sources: Sequence[str] | None = None) -> "pd.DataFrame":
    """The results tables of several runs as one grid frame, experiments side by side. Each table is read on its
    own (checkpoint names are only unique within a run). An experiment's Base cell comes from a base checkpoint
    of its base model in the same run; failing that, from the first run (in the order given) that has one, and
    then its rows' `base_source` names that run (`sources[i]`, e.g. its folder, else "run i").

    Raises ConfigError when two rows land on the same grid key (two checkpoints on one cell of one experiment,
    two base checkpoints of one base model in one run, or one experiment's cell in two runs): a grid never pools
    or silently drops values."""
    import pandas as pd

    from evalsuite.errors import ConfigError

    resolved = [_resolve(t) for t in tables]
    split = set().union(*(split_benchmarks(res) for res in resolved)) if resolved else set()
    runs = [_measured_rows(res, split) for res in resolved]
    trained = [rows[rows["stage"].isin(STAGES) & rows["lambda_p"].notna() & rows["lambda_r"].notna()
                    & (rows["experiment"] != "")].assign(is_base=False) for rows in runs]
    bases = [rows[rows["stage"].isin(BASE_STAGES) & (rows["experiment"] == "") & rows["base_model"].notna()]
             for rows in runs]
    wanted = [_experiment_models(t) for t in trained]
    attached: list["pd.DataFrame"] = []
    done: set[str] = set()
    for own_run_only in (True, False):
        for i, base in enumerate(bases):
            for j, experiments in enumerate(wanted):
                if own_run_only and i != j:
                    continue
                todo = {e: m for e, m in experiments.items() if e not in done}
                part = _attach_bases(base, todo)
                if not part.empty:
                    borrowed = "" if i == j else (str(sources[i]) if sources is not None else f"run {i}")
                    part = part.assign(base_source=borrowed)
                    attached.append(part)
                    done |= set(part["experiment"])
    frame = pd.concat([t.assign(base_source="") for t in trained] + attached, ignore_index=True)
    _check_unique(frame, ConfigError)
    return sort_frame(conform(frame[GRID_COLUMNS + ["checkpoint", "base_source"]]))


def _resolve(results: "pd.DataFrame") -> "pd.DataFrame":
    """One run's results table with the optional columns present, λ rounded onto the grid, numbers numeric and
    every row's benchmark known (a failed task's status row takes its task's, else the task name)."""
    import pandas as pd

    res = results.copy()
    for column in ("experiment", "base_model", "scale", "status", "benchmark"):
        if column not in res:
            res[column] = None
    res["experiment"] = res["experiment"].fillna("")
    res["lambda_p"] = pd.to_numeric(res["lambda_p"], errors="coerce").round(LAMBDA_DECIMALS)
    res["lambda_r"] = pd.to_numeric(res["lambda_r"], errors="coerce").round(LAMBDA_DECIMALS)
    for column in ("value", "low", "high", "n"):
        res[column] = pd.to_numeric(res[column], errors="coerce")
    # the benchmark of a status row whose metric rows are absent (a failed task): from the task's other rows
    bench_of_task = res.dropna(subset=["benchmark"]).drop_duplicates("task").set_index("task")["benchmark"]
    res["benchmark"] = res["benchmark"].fillna(res["task"].map(bench_of_task)).fillna(res["task"])
    return res


def split_benchmarks(res: "pd.DataFrame") -> set[str]:
    """Benchmarks that one run evaluated with more than one task (e.g. mmlu_loglikelihood and mmlu_generative)."""
    tasks = res.groupby("benchmark")["task"].nunique()
    return set(tasks[tasks > 1].index)


def _measured_rows(res: "pd.DataFrame", split: set[str] = frozenset()) -> "pd.DataFrame":  # type: ignore[assignment]
    """One run's rows (from `_resolve`) that carry a value, on the paper's scale, with failed/missing/p_vs_0_1/
    status joined on, plus a NaN score row for each failed or skipped unit; status and p-value rows folded away.
    Rows of a benchmark in `split` take their task's name as benchmark (one grid per task)."""
    import pandas as pd

    res = res.copy()
    res["benchmark"] = res["benchmark"].where(~res["benchmark"].isin(split), res["task"])
    unit = ["checkpoint", "task", "condition"]
    failed, notes = _status_notes(res)
    missing = (res[res["metric"] == "unscored"].set_index(unit)["value"].fillna(0).astype("int64")
               .groupby(level=unit).sum())
    pvals = (res[res["metric"].isin(P_VALUE_METRICS)].set_index(unit)["value"].groupby(level=unit).first())

    rows = res[~res["metric"].isin(P_VALUE_METRICS | {"status"})].copy()
    rows = pd.concat([rows, _failed_score_rows(res, rows, notes)], ignore_index=True)
    factor = [_scale_factor(m, s) for m, s in zip(rows["metric"], rows["scale"])]
    for column in ("value", "low", "high"):
        rows[column] = rows[column] * factor
    index = pd.MultiIndex.from_frame(rows[unit])
    rows["failed"] = failed.reindex(index).fillna(0).astype("int64").to_numpy()
    rows["missing"] = missing.reindex(index).fillna(0).astype("int64").to_numpy()
    rows["status"] = notes.reindex(index).fillna("").to_numpy()
    is_clean_score = (rows["metric"] == "score") & (rows["condition"] == "clean")
    rows["p_vs_0_1"] = pvals.reindex(index).to_numpy()
    rows.loc[~is_clean_score, "p_vs_0_1"] = float("nan")
    return rows


def _experiment_models(trained: "pd.DataFrame") -> dict[str, str]:
    """experiment → its base model (experiments whose rows name none are left out: no Base cell to attach)."""
    pairs = trained.dropna(subset=["base_model"]).drop_duplicates(["experiment", "base_model"])
    return dict(zip(pairs["experiment"], pairs["base_model"]))


def _status_notes(res: "pd.DataFrame") -> tuple["pd.Series", "pd.Series"]:
    """Per (checkpoint, task, condition): the number of "failed: …" statuses, and the non-ok status texts
    ("failed: …", "skipped: …") joined with "; ". A condition-"all" status counts for "clean" and for every
    condition the task has anywhere in the run (any checkpoint, measured or named by a status), so a checkpoint
    that failed to load, or a task that failed after clean, shows each of those conditions as failed."""
    import pandas as pd

    unit = ["checkpoint", "task", "condition"]
    text = res["status"].fillna("").astype(str).str.strip()
    status = res[(res["metric"] == "status") & (text != "") & (text != "ok")].assign(_text=text)
    if status.empty:
        empty = pd.MultiIndex.from_tuples([], names=unit)
        return pd.Series(dtype="int64", index=empty), pd.Series(dtype=object, index=empty)
    named = res.loc[res["condition"] != "all", ["task", "condition"]].drop_duplicates()
    conditions = named.groupby("task")["condition"].agg(set)
    counts: dict[tuple[str, str, str], int] = {}
    texts: dict[tuple[str, str, str], list[str]] = {}
    for ck, task, cond, note in status[unit + ["_text"]].itertuples(index=False):
        targets = (conditions.get(task, set()) | {"clean"}) if cond == "all" else {cond}
        for target in targets:
            key = (ck, task, target)
            counts[key] = counts.get(key, 0) + int(note.startswith("failed"))
            if note not in texts.setdefault(key, []):
                texts[key].append(note)
    failed = pd.Series(counts, dtype="int64").rename_axis(unit)
    notes = pd.Series({k: "; ".join(v) for k, v in texts.items()}, dtype=object).rename_axis(unit)
    return failed, notes


def _failed_score_rows(res: "pd.DataFrame", rows: "pd.DataFrame", notes: "pd.Series") -> "pd.DataFrame":
    """A NaN `score` row for each failed or skipped (checkpoint, task, condition) that has none, carrying the
    checkpoint's lineage from its status row."""
    import pandas as pd

    have = set(map(tuple, rows.loc[rows["metric"] == "score", ["checkpoint", "task", "condition"]].to_numpy()))
    lineage = res.drop_duplicates(["checkpoint", "task"]).set_index(["checkpoint", "task"])
    new = []
    for ck, task, cond in notes.index:
        if (ck, task, cond) not in have and cond != "all" and (ck, task) in lineage.index:
            row = lineage.loc[(ck, task)].to_dict()
            new.append({**row, "checkpoint": ck, "task": task, "condition": cond, "metric": "score",
                        "value": None, "low": None, "high": None, "n": None})
    return pd.DataFrame(new, columns=rows.columns) if new else rows.iloc[0:0]


def _attach_bases(bases: "pd.DataFrame", experiments: Mapping[str, str]) -> "pd.DataFrame":
    """The base checkpoints' rows copied to each experiment (→ base model) of the same base model, under both
    stages, as its (0, 0) cell."""
    import pandas as pd

    parts = []
    for base_model, group in bases.groupby("base_model"):
        for experiment in sorted(e for e, m in experiments.items() if m == base_model):
            for stage in STAGES:
                parts.append(group.assign(experiment=experiment, stage=stage, lambda_p=0.0, lambda_r=0.0,
                                          is_base=True))
    return pd.concat(parts, ignore_index=True) if parts else bases.iloc[0:0].assign(is_base=True)


def _check_unique(frame: "pd.DataFrame", error: type[Exception]) -> None:
    dup = frame[frame.duplicated(KEY_COLUMNS, keep=False)]
    if dup.empty:
        return
    first = dup.iloc[0]
    same = dup[(dup[KEY_COLUMNS] == first[KEY_COLUMNS]).all(axis=1)]
    names = ", ".join(sorted(set(map(str, same["checkpoint"]))))
    raise error(f"two results for one grid cell: experiment {first['experiment']!r} {first['stage']} cell "
                f"({first['lambda_p']:g}, {first['lambda_r']:g}) {first['benchmark']} {first['condition']} "
                f"{first['metric']} from {names}; a grid shows one checkpoint per cell — report these runs "
                f"separately or compare them with --compare")


def grid_frame(run_dirs: Sequence[Path], aggregates: bool = True) -> "pd.DataFrame":
    """The grid frame of one or more run folders (each read with `evalsuite.run.records.read_run`, which raises
    ConfigError for a folder without records or written by an older evalsuite), with the paper's aggregate and
    the plain mean of the five benchmarks added unless `aggregates` is False. Experiments from several runs sit
    side by side (`grid_from_runs`); the same cell of one experiment in two runs is an error (compare runs with
    `compare_runs`)."""
    from evalsuite.run.records import read_run

    # item_columns=[]: only the results table is needed; items can take gigabytes
    frame = grid_from_runs([read_run(Path(d), item_columns=[]).results for d in run_dirs],
                           sources=[str(d) for d in run_dirs])
    if aggregates:
        from evalsuite.analysis.aggregate import with_aggregates

        frame = with_aggregates(frame)
    return frame


def select(frame: "pd.DataFrame", **where: Any) -> "pd.DataFrame":
    """Rows of `frame` whose columns equal the given values (None: no constraint), e.g.
    `select(f, experiment=e, stage="sft", benchmark="mmlu", condition="clean", metric="score")`."""
    mask = None
    for column, value in where.items():
        if value is None:
            continue
        m = frame[column] == value
        mask = m if mask is None else mask & m
    return frame if mask is None else frame[mask]


def grid_cells(frame: "pd.DataFrame", column: str = "value", **where: Any) -> dict[Cell, float]:
    """One grid's cells → `column` (value, gain, …), base included under (0, 0), in row-major order: the shape
    the report's GridView takes. Raises ValueError if `where` leaves more than one row for a cell."""
    rows = select(frame, **where)
    if rows.duplicated(["lambda_p", "lambda_r"]).any():
        raise ValueError(f"several grids match {where!r}; name experiment, stage, benchmark, condition and metric")
    rows = rows.sort_values(["lambda_p", "lambda_r"])
    return {(float(p), float(r)): float(v) for p, r, v in zip(rows["lambda_p"], rows["lambda_r"], rows[column])}

