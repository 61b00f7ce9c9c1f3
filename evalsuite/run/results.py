"""From conditions to the run's table: one row per (checkpoint, task, condition, metric), with bootstrap
intervals for scores, the robustness metrics per perturbation kind, POSIX, what was left out (skipped variants,
unscored items, truncated prompts), each cell's paired test against the (0, 1) cell of its stage, and a status
row per checkpoint × benchmark (ok / failed: reason / skipped: reason), so a number is never shown without
what it is missing. Loads as a pandas DataFrame; written as CSV, Parquet and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from evalsuite.run.discovery import Checkpoint
from evalsuite.run.records import RESULTS_COLUMNS
from evalsuite.run.types import Condition, ItemResult, Status, TaskInfo

COLUMNS = RESULTS_COLUMNS
ROBUSTNESS_METRICS = ("agreement", "correct_to_wrong", "wrong_to_correct", "performance_drop_rate",
                      "worst_case_perturbed", "worst_case_with_clean")
POSIX_METRIC = {"response_length": "posix", "max_new_tokens": "posix_max_new_tokens"}


def _per_item(item_results: Mapping[tuple[str, int | None], ItemResult]) -> dict[str, float]:
    """Each item's score (averaged over its variants), failed ones left out."""
    acc: dict[str, list[float]] = {}
    for (item_id, _), result in item_results.items():
        if result.score is not None:
            acc.setdefault(item_id, []).append(result.score)
    return {k: sum(v) / len(v) for k, v in acc.items()}


def _task_columns(tasks: Mapping[str, TaskInfo], task: str) -> dict[str, Any]:
    """A task's columns (benchmark, score metric, scale); a task the run does not know has them empty."""
    info = tasks.get(task)
    return info.columns() if info else {"task": task, "benchmark": None, "score_metric": None, "scale": None}


def condition_rows(ckpt: Checkpoint, conditions: Sequence[Condition], tasks: Mapping[str, TaskInfo], seed: int = 0,
                   posix_metric: str = "posix") -> list[dict[str, Any]]:
    """One checkpoint's rows: per condition its score with a bootstrap interval, what the score leaves out, and
    per perturbation kind the robustness metrics and POSIX. `tasks`: what each task is (`TaskInfo`)."""
    from evalsuite.metrics import bootstrap_ci, robustness

    rows = []
    base = ckpt.info()
    clean = {c.task: c for c in conditions if c.condition == "clean"}
    for c in conditions:
        task = _task_columns(tasks, c.task)

        def add(metric: str, value: Any, low: Any = None, high: Any = None, n: Any = None) -> None:
            rows.append({**base, **task, "condition": c.condition, "metric": metric, "value": value,
                         "low": low, "high": high, "n": n, "status": "ok"})

        scores = list(_per_item(c.item_results).values())
        if scores:
            est = bootstrap_ci(scores, seed=seed)
            add("score", est.value, est.low, est.high, est.n)
        # what the score leaves out, beside it: prompts that could not be scored (a failed judgement) and
        # prompts cut to fit the context window (a truncated few-shot header changes the task)
        add("unscored", float(sum(r.score is None for r in c.item_results.values())), n=len(c.item_results))
        add("truncated_requests", float(c.results.get("all", {}).get("truncated_requests", 0)))
        if c.condition == "clean":
            continue
        add("skipped_variants", float(c.skipped))
        ref = clean[c.task]
        clean_items = {i: r[:2] for (i, v), r in ref.item_results.items() if r.score is not None}
        perturbed: dict[str, list[tuple[Any, float]]] = {}
        for (i, _), r in sorted(c.item_results.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            if r.score is not None and i in clean_items:
                perturbed.setdefault(i, []).append(r[:2])  # type: ignore[arg-type]
        if perturbed:
            rob = robustness(clean_items, perturbed)  # type: ignore[arg-type]
            # the clean score of exactly the items this kind could perturb: what `score` compares against
            add("clean_score_same_items", rob.clean_score, n=rob.items)
            for metric in ROBUSTNESS_METRICS:
                value = getattr(rob, metric)
                if value is not None:
                    add(metric, float(value), n=rob.items if metric.startswith("worst_case") else rob.pairs)
        if c.posix is not None:
            add(posix_metric, c.posix, n=c.posix_sets)
    return rows


def significance_rows(by_checkpoint: dict[str, tuple[Checkpoint, list[Condition]]], tasks: Mapping[str, TaskInfo],
                      seed: int = 0) -> tuple[list[dict[str, Any]], list[Status]]:
    """Each WIT cell's clean scores against the (0, 1) cell of its own grid (same stage, base model and data),
    paired by item: McNemar for 0/1 scores, a paired bootstrap otherwise. Wherever no test can be made (no or
    several (0, 1) cells in the grid, the reference has no result for the task, no item in common) a status
    says why instead of the rows being left out silently."""
    from evalsuite.metrics import mcnemar, paired_bootstrap

    rows: list[dict[str, Any]] = []
    notes: list[Status] = []
    refs: dict[tuple[str, ...], list[tuple[Checkpoint, list[Condition]]]] = {}
    for ck, conds in by_checkpoint.values():
        if ck.cell == (0.0, 1.0):
            refs.setdefault(ck.grid, []).append((ck, conds))
    for ck, conds in by_checkpoint.values():
        if ck.cell is None or ck.cell == (0.0, 1.0):
            continue
        candidates = refs.get(ck.grid, [])
        ref_conds = {c.task: c for c in candidates[0][1] if c.condition == "clean"} if len(candidates) == 1 else {}
        for c in conds:
            if c.condition != "clean":
                continue
            note = _no_test(ck, candidates, ref_conds, c)
            if note is None:
                mine, theirs = _per_item(c.item_results), _per_item(ref_conds[c.task].item_results)
                common = sorted(set(mine) & set(theirs))
                note = None if common else "skipped: no scored item in common with the (0, 1) cell"
            if note is not None:
                notes.append(Status(ck.name, c.task, "significance_vs_0_1", note))
                continue
            a, b = [theirs[i] for i in common], [mine[i] for i in common]
            row = {**ck.info(), **_task_columns(tasks, c.task), "condition": "clean", "n": len(common), "low": None,
                   "high": None, "status": "ok"}
            if all(x in (0.0, 1.0) for x in a + b):
                test = mcnemar([x == 1.0 for x in a], [x == 1.0 for x in b])
                rows.append({**row, "metric": "mcnemar_p_vs_0_1", "value": test.p_value})
            else:
                boot = paired_bootstrap(a, b, seed=seed)
                rows.append({**row, "metric": "paired_bootstrap_p_vs_0_1", "value": boot.p_value})
            rows.append({**row, "metric": "diff_vs_0_1", "value": sum(b) / len(b) - sum(a) / len(a)})
    return rows, notes


def _no_test(ck: Checkpoint, candidates: list, ref_conds: dict[str, Condition], c: Condition) -> str | None:
    """Why cell `ck` cannot be tested against its grid's (0, 1) cell on `c.task`, or None."""
    if not candidates:
        return f"skipped: no (0, 1) cell of stage {ck.stage} in this grid and run to test against"
    if len(candidates) > 1:
        names = ", ".join(sorted(ref.name for ref, _ in candidates))
        return f"skipped: {len(candidates)} (0, 1) cells ({names}) could be the reference; gather one grid per run"
    if c.task not in ref_conds:
        return f"skipped: the (0, 1) cell {candidates[0][0].name} has no result for this task"
    return None


def status_rows(found: Sequence[Checkpoint], statuses: Sequence[Status],
                tasks: Mapping[str, TaskInfo]) -> list[dict[str, Any]]:
    """One `status` row per status (checkpoint × task, or one condition of it), with the checkpoint's lineage."""
    info = {c.name: c.info() for c in found}
    return [{**info[s.checkpoint], **_task_columns(tasks, s.task), "condition": s.condition, "metric": "status",
             "value": None, "low": None, "high": None, "n": None, "status": s.status} for s in statuses]


def write_table(rows: list[dict[str, Any]], out: Path) -> "Any":
    """`results.csv`, `results.parquet` and `results.json` in `out`, each written atomically; returns the
    DataFrame. Missing numbers are empty in CSV and null in JSON."""
    import pyarrow as pa

    from evalsuite.paths import atomic_output, write_json
    from evalsuite.run.records import RESULTS, RESULTS_TYPES, results_frame, schema, write_parquet

    df = results_frame(rows)
    with atomic_output(out / "results.csv") as fh:
        df.to_csv(fh, index=False)
    write_parquet(out / RESULTS, pa.Table.from_pandas(df, schema=schema(RESULTS_TYPES), preserve_index=False))
    write_json(out / "results.json", [{k: row.get(k) for k in COLUMNS} for row in rows], indent=1)
    return df


def load_results(out: Path) -> "Any":
    """The table of a run (finished or not) as a DataFrame, without the checks of `records.read_run`."""
    import pandas as pd

    return pd.read_parquet(Path(out) / "results.parquet")
