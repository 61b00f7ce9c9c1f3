"""The tables of a run folder: their columns, how `evalsuite run` builds and writes them, and how analysis and
reports read them back (`read_run`).

    results.parquet      one row per (checkpoint, task, condition, metric): the scores with their metric and
                         scale, the robustness metrics, the paired tests, a status per unit of work (`results`)
    items.parquet/       one row per (checkpoint, task, condition, item, variant): the paired unit for flips and
                         drill-down. A Parquet dataset, one part file per checkpoint (`part-NNNNN.parquet`,
                         written once, when the checkpoint is done), so a full grid's answers are written once
                         and never held in memory together; `pandas.read_parquet` and pyarrow read the folder
                         as one table
    prompts.parquet      one row per (task, condition, item, variant): what was asked (the same for every
                         checkpoint, so written once)
    checkpoints.parquet  one row per checkpoint found: lineage, training data and metrics, weights fingerprint
    run.json             settings, statuses, versions, and `records_version` (`RECORDS_VERSION`)

Every table is written atomically, after every checkpoint, before `run.json`, whose `records_version` says the
tables are complete: a folder whose run.json has an older version (or none) was written by an older evalsuite
and is refused with a message saying how to bring it up to date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from evalsuite.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from evalsuite.run.discovery import Checkpoint
    from evalsuite.run.types import Condition, TaskInfo

RECORDS_VERSION = 2

# column -> Arrow type, in the tables' order (the contract analysis and reports read)
CHECKPOINT_TYPES = {"experiment": "string", "checkpoint": "string", "stage": "string", "lambda_p": "float64",
                    "lambda_r": "float64"}
LINEAGE_TYPES = {"parent": "string", "base_model": "string", "prompt_format": "string"}
RESULTS_TYPES = {**CHECKPOINT_TYPES, **LINEAGE_TYPES, "task": "string", "benchmark": "string", "condition": "string",
                 "metric": "string", "score_metric": "string", "scale": "string", "value": "float64",
                 "low": "float64", "high": "float64", "n": "float64", "status": "string"}
ITEMS_TYPES = {**CHECKPOINT_TYPES, "task": "string", "benchmark": "string", "condition": "string",
               "item_id": "string", "subset": "string", "variant": "int64", "answer": "string", "score": "float64",
               "correct": "bool", "response": "string", "judgement": "string", "truncated": "int64"}
PROMPTS_TYPES = {"task": "string", "condition": "string", "item_id": "string", "variant": "int64",
                 "prompt": "string", "target": "string", "prompt_format": "string"}
CHECKPOINTS_TYPES = {**CHECKPOINT_TYPES, **LINEAGE_TYPES, "dataset": "string", "dataset_fingerprint": "string",
                     "final_loss": "float64", "train_loss": "float64", "reward_accuracy": "float64",
                     "reward_margin": "float64", "fingerprint": "string", "problem": "string"}
RESULTS_COLUMNS = list(RESULTS_TYPES)
ITEMS_COLUMNS = list(ITEMS_TYPES)
PROMPTS_COLUMNS = list(PROMPTS_TYPES)
CHECKPOINTS_COLUMNS = list(CHECKPOINTS_TYPES)

ITEMS = "items.parquet"
PROMPTS = "prompts.parquet"
CHECKPOINTS = "checkpoints.parquet"
RESULTS = "results.parquet"
FINGERPRINT_HEX = 16  # of the store's model identity, in checkpoints.parquet


def schema(types: Mapping[str, str]) -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([(name, pa.type_for_alias(kind)) for name, kind in types.items()])


# --- building ------------------------------------------------------------------------------------------------

def items_table(info: Mapping[str, Any], conditions: Sequence["Condition"],
                tasks: Mapping[str, "TaskInfo"]) -> "pa.Table":
    """One checkpoint's rows of items.parquet (`info`: its `Checkpoint.info()`), column by column from the
    conditions' item results: no per-row objects, so a checkpoint of the paper's size (22k items × 7
    conditions) takes a fraction of a second. `correct` is the score read as right/wrong where that is what
    it is (0/1 scores of a proportion-scale benchmark), else null."""
    import pyarrow as pa

    per_row: dict[str, list[Any]] = {k: [] for k in ("task", "benchmark", "condition", "item_id", "subset", "variant",
                                                      "answer", "score", "correct", "response", "judgement",
                                                      "truncated")}
    for c in conditions:
        if not c.item_results:
            continue
        task, n = tasks[c.task], len(c.item_results)
        item_ids, variants = zip(*c.item_results)
        answers, scores, subsets, truncated, responses, judgements = zip(*c.item_results.values())
        per_row["task"] += [c.task] * n
        per_row["benchmark"] += [task.benchmark] * n
        per_row["condition"] += [c.condition] * n
        per_row["item_id"] += item_ids
        per_row["variant"] += variants
        per_row["subset"] += subsets
        per_row["answer"] += [a if a is None or isinstance(a, str) else str(a) for a in answers]
        per_row["score"] += scores
        binary = task.scale == "proportion"
        per_row["correct"] += [s == 1.0 if binary and s in (0.0, 1.0) else None for s in scores]
        per_row["response"] += responses
        per_row["judgement"] += judgements
        per_row["truncated"] += truncated
    rows = len(per_row["task"])
    types = schema(ITEMS_TYPES)
    columns = {name: pa.repeat(pa.scalar(info[name], types.field(name).type), rows) for name in CHECKPOINT_TYPES}
    columns.update({name: pa.array(values, types.field(name).type) for name, values in per_row.items()})
    return pa.table([columns[name] for name in ITEMS_COLUMNS], schema=types)


def target_text(target: Any) -> str | None:
    """An item's target as text: the answer, reference answer(s) (turns joined), or None where there is none
    to show (IFEval's checks are its target)."""
    from evalsuite.benchmarks.base import join_turns

    if isinstance(target, str):
        return target
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, str) for t in target):
        return join_turns(target)
    return None


def prompts_table(tasks: Iterable[Any]) -> "pa.Table":
    """prompts.parquet from the run's prepared tasks (`pipeline.Task`: bench, items, variants per kind): each
    item's prompt body as the benchmark renders it, and each variant's as it was asked (its own text, else the
    clean one, e.g. a `template` variant, which changes only the format, named in `prompt_format`)."""
    import pyarrow as pa

    from evalsuite.benchmarks.base import join_turns

    rows: list[tuple[Any, ...]] = []
    for task in tasks:
        clean = {}
        for item in task.items:
            clean[item.id] = join_turns(task.bench.prompt_turns(item))
            rows.append((task.name, "clean", item.id, None, clean[item.id], target_text(item.target), None))
        for kind, (asked, _) in task.variants.items():
            rows += [(task.name, kind, v.id, v.variant, join_turns(v.turns([v.text(clean[v.id])])),
                      target_text(v.target), v.perturbed.prompt_format) for v in asked]
    types = schema(PROMPTS_TYPES)
    return pa.table([pa.array([r[k] for r in rows], types.field(k).type) for k in range(len(PROMPTS_COLUMNS))],
                    schema=types)


def checkpoints_table(found: Sequence["Checkpoint"]) -> "pa.Table":
    """checkpoints.parquet: every checkpoint found, as evaluated (prompt format, weights fingerprint) where it
    was, with what its manifest says about training."""
    import pyarrow as pa

    rows = [{**c.info(), "dataset": c.dataset, "dataset_fingerprint": c.dataset_fingerprint,
             "final_loss": c.metrics.final_loss, "train_loss": c.metrics.train_loss,
             "reward_accuracy": c.metrics.reward_accuracy, "reward_margin": c.metrics.reward_margin,
             "fingerprint": c.fingerprint[:FINGERPRINT_HEX] if c.fingerprint else None, "problem": c.problem}
            for c in found]
    return pa.Table.from_pylist(rows, schema=schema(CHECKPOINTS_TYPES))


def results_frame(rows: Sequence[Mapping[str, Any]]) -> "pd.DataFrame":
    """The results table from its rows, columns in order and typed (numbers as floats even where all are
    missing, so every run's table has the same types)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=RESULTS_COLUMNS)
    return frame.astype({k: "float64" for k, kind in RESULTS_TYPES.items() if kind == "float64"})


# --- writing -------------------------------------------------------------------------------------------------

def write_parquet(path: Path, table: "pa.Table") -> Path:
    """`table` at `path`, atomically (`evalsuite.paths.atomic_output`); zstd, which halves the size of the text
    columns against the default."""
    import pyarrow.parquet as pq

    from evalsuite.paths import atomic_output

    with atomic_output(path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
    return path


def item_part(out: Path, position: int) -> Path:
    """The part file of items.parquet holding the checkpoint at `position` in the run's discovery order."""
    return Path(out) / ITEMS / f"part-{position:05d}.parquet"


def prune_item_parts(out: Path, keep: Iterable[Path]) -> None:
    """Remove the part files of items.parquet that are not this run's (left by an earlier run into the folder),
    so the items always describe the same checkpoints as the results table written next."""
    folder = Path(out) / ITEMS
    kept = {Path(p).name for p in keep}
    if folder.is_dir():
        for part in folder.glob("part-*.parquet"):
            if part.name not in kept:
                part.unlink()


# --- reading -------------------------------------------------------------------------------------------------

@dataclass
class RunTables:
    """A run folder's tables (see the module doc for their columns) and its `run.json`."""

    results: "pd.DataFrame"
    items: "pd.DataFrame"
    prompts: "pd.DataFrame"
    checkpoints: "pd.DataFrame"
    run: dict[str, Any]
    path: Path | None = None


def check_run(run_dir: Path) -> dict[str, Any]:
    """`run.json` of a run folder whose tables this evalsuite can read; ConfigError saying why not, and what to
    do, for anything else."""
    import json

    run_dir = Path(run_dir).expanduser()
    if not (run_dir / RESULTS).is_file():
        raise ConfigError(f"{run_dir} is not an evalsuite run folder (no {RESULTS}): give the --out folder of "
                          "`evalsuite run`")
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        record = {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{run_dir}/run.json cannot be read: {exc}") from None
    version = record.get("records_version") if isinstance(record, dict) else None
    if not isinstance(version, int) or version < RECORDS_VERSION:
        raise ConfigError(f"{run_dir} was written by an older evalsuite run (records version {version or 1}; this "
                          f"evalsuite reads version {RECORDS_VERSION}); re-run `evalsuite run` (answers come from its "
                          "request store, so it is quick)")
    if version > RECORDS_VERSION:
        raise ConfigError(f"{run_dir} was written by a newer evalsuite (records version {version}; this one reads "
                          f"version {RECORDS_VERSION}): upgrade evalsuite to read it")
    for name in (ITEMS, PROMPTS, CHECKPOINTS):
        if not (run_dir / name).exists():
            raise ConfigError(f"{run_dir} is an incomplete run folder: {name} is missing (re-run `evalsuite run`)")
    return record


def read_table(source: Path, types: Mapping[str, str], columns: Sequence[str] | None = None,
           filters: list[tuple[str, str, Any]] | None = None) -> "pd.DataFrame":
    """A table (a file, or a folder of part files) as a DataFrame with nullable integer and boolean columns
    (`variant` stays an integer with nulls for clean rows)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = list(types) if columns is None else list(columns)
    unknown = [c for c in wanted if c not in types]
    if unknown:
        raise ConfigError(f"{source.name} has no column(s) {', '.join(unknown)}; it has {', '.join(types)}")
    empty_folder = source.is_dir() and not any(source.glob("*.parquet"))
    table = (schema(types).empty_table().select(wanted) if empty_folder
             else pq.read_table(source, columns=wanted, filters=filters or None, schema=schema(types)))
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=mapping.get)


def read_items(run_dir: Path, columns: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
               checkpoints: Sequence[str] | None = None) -> "pd.DataFrame":
    """items.parquet, or the part of it a page needs: some columns (responses and judgements are most of its
    size), some tasks, some checkpoints. Only the rows asked for are read."""
    check_run(run_dir)
    filters = [(k, "in", list(v)) for k, v in (("task", tasks), ("checkpoint", checkpoints)) if v is not None]
    return read_table(Path(run_dir).expanduser() / ITEMS, ITEMS_TYPES, columns, filters)


def read_prompts(run_dir: Path, tasks: Sequence[str] | None = None) -> "pd.DataFrame":
    check_run(run_dir)
    return read_table(Path(run_dir).expanduser() / PROMPTS, PROMPTS_TYPES,
                  filters=[("task", "in", list(tasks))] if tasks is not None else None)


def read_run(run_dir: Path, *, item_columns: Sequence[str] | None = None) -> RunTables:
    """Every table of a run folder written by this evalsuite (ConfigError with what to do for a folder that is
    not one, or was written by an older version). `item_columns`: the items columns to load (None: all; a full
    grid's responses take gigabytes, see `read_items` for loading them per task)."""
    run_dir = Path(run_dir).expanduser()
    record = check_run(run_dir)
    return RunTables(results=read_table(run_dir / RESULTS, RESULTS_TYPES),
                     items=read_table(run_dir / ITEMS, ITEMS_TYPES, item_columns),
                     prompts=read_table(run_dir / PROMPTS, PROMPTS_TYPES),
                     checkpoints=read_table(run_dir / CHECKPOINTS, CHECKPOINTS_TYPES), run=record, path=run_dir)
