"""Shards of one run, merged into one run folder: `evalsuite merge --out RUN SHARD...` and the study's report unit.

A run split by checkpoint (`evalsuite run --checkpoints ...` / `--shard i/n`, or one study evaluation unit per
checkpoint) writes one folder per shard, each with its own request store: no SQLite file is ever written by
processes on two machines (SQLite's WAL needs shared memory, which NFS and Lustre do not give). Merging, by one
process, gives the folder an unsharded run would have written:

- every shard's rows, items, prompts and checkpoints, in discovery order (item part files renumbered);
- the paired tests against each grid's (0, 1) cell, computed here from the merged items (a shard may not hold
  the reference cell), so they are never taken from a shard;
- the request stores copied into one (`INSERT OR IGNORE` on the request key: nothing is duplicated);
- `run.json` with every shard's statuses, `merged_from` naming the shards, and `finished` only when every shard
  finished (else `partial`, which the report shows as a warning).

The shards must be runs of the same folder of checkpoints with the same settings, and no checkpoint may be in two
shards: anything else is refused before anything is written.
"""

from __future__ import annotations

import calendar
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from evalsuite.errors import ConfigError
from evalsuite.run.discovery import Checkpoint, TrainingMetrics, attach_base_models, discovery_rank
from evalsuite.run.types import Condition, ItemResult, Status, TaskInfo

SIGNIFICANCE_METRICS = ("mcnemar_p_vs_0_1", "paired_bootstrap_p_vs_0_1", "diff_vs_0_1")
SIGNIFICANCE_CONDITION = "significance_vs_0_1"
TEST_COLUMNS = ["task", "condition", "item_id", "variant", "answer", "score", "subset"]  # what the paired tests read


def _records(frame: Any) -> list[dict[str, Any]]:
    """DataFrame rows as dicts with None for every missing value (as the run loop builds them)."""
    import pandas as pd

    return [{k: None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
             for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


def _same_root(records: Sequence[dict[str, Any]]) -> str:
    roots = {os.path.realpath(os.path.expanduser(r["models"])) for r in records}
    if len(roots) > 1:
        raise ConfigError(f"the shards evaluated different folders ({', '.join(sorted(roots))}): merge shards of one "
                          "run, whose checkpoint names are relative to the same --models folder")
    return records[0]["models"]


def _same_settings(records: Sequence[dict[str, Any]], shards: Sequence[Path]) -> dict[str, Any]:
    first = records[0]["settings"]
    for shard, record in zip(shards[1:], records[1:]):
        differ = sorted(k for k in set(first) | set(record["settings"]) if first.get(k) != record["settings"].get(k))
        if differ:
            raise ConfigError(f"{shard} was run with other settings than {shards[0]} ({', '.join(differ)} differ): "
                              "only shards of one run can be merged")
    return first


def checkpoint_of(row: dict[str, Any], path: str = "", problem: str | None = None) -> Checkpoint:
    """A checkpoint as a run's checkpoints table describes it (what the tables and the paired tests need)."""
    cell = None if row["lambda_p"] is None else (float(row["lambda_p"]), float(row["lambda_r"]))
    return Checkpoint(row["checkpoint"], Path(path), row["stage"], cell, row["prompt_format"], problem=problem,
                      experiment=row["experiment"] or "", parent=row["parent"], base_model=row["base_model"],
                      dataset=row["dataset"], dataset_fingerprint=row["dataset_fingerprint"],
                      metrics=TrainingMetrics(*(row[k] for k in ("final_loss", "train_loss", "reward_accuracy",
                                                                 "reward_margin"))),
                      fingerprint=row["fingerprint"])


def clean_conditions(items: Any) -> list[Condition]:
    """One checkpoint's clean conditions rebuilt from its items rows (answers and scores: what the paired tests
    read)."""
    conditions = []
    for task, rows in items[items.condition == "clean"].groupby("task", sort=False):
        results = {(r["item_id"], None if r["variant"] is None else int(r["variant"])):
                   ItemResult(r["answer"], None if r["score"] is None else float(r["score"]), r["subset"] or "")
                   for r in _records(rows)}
        conditions.append(Condition(str(task), "clean", {}, results))
    return conditions


def merge_runs(shards: Sequence[Path], out: Path, *, log: Any = lambda message: None) -> Any:
    """Merge the run folders `shards` into `out` (see the module doc); returns the merged results DataFrame."""
    import pandas as pd
    import pyarrow.parquet as pq

    from evalsuite.paths import ensure_output_dir
    from evalsuite.run.pipeline import run_lock, write_run_record
    from evalsuite.run.records import (CHECKPOINTS, CHECKPOINTS_TYPES, ITEMS, ITEMS_TYPES, PROMPTS, RESULTS,
                                       RESULTS_TYPES, check_run, checkpoints_table, item_part,
                                       prune_item_parts, read_table, write_parquet)
    from evalsuite.run.results import significance_rows, status_rows, write_table
    from evalsuite.store import RequestStore

    shards = [Path(s).expanduser() for s in shards]
    if not shards:
        raise ConfigError("nothing to merge: name the shards' run folders")
    if len({os.path.realpath(s) for s in shards}) < len(shards):
        raise ConfigError("a shard is named twice")
    out = Path(out).expanduser()
    if any(os.path.realpath(s) == os.path.realpath(out) for s in shards):
        raise ConfigError(f"--out {out} is one of the shards: merge into another folder")
    records = [check_run(s) for s in shards]
    models = _same_root(records)
    settings = _same_settings(records, shards)
    _every_shard(records, shards)
    # small tables in memory; items (the answers' texts) one part file at a time
    tables = [(shard, read_table(shard / RESULTS, RESULTS_TYPES), read_table(shard / CHECKPOINTS, CHECKPOINTS_TYPES))
              for shard in shards]
    owner: dict[str, Path] = {}
    placed = []  # (row of checkpoints.parquet, its shard, its part file there)
    for shard, _, checkpoints in tables:
        for position, row in enumerate(_records(checkpoints)):
            if row["checkpoint"] in owner:
                raise ConfigError(f"checkpoint {row['checkpoint']} is in two shards ({owner[row['checkpoint']]} and "
                                  f"{shard}): each checkpoint must be evaluated by exactly one shard")
            owner[row["checkpoint"]] = shard
            placed.append((row, shard, item_part(shard, position)))
    placed.sort(key=lambda p: discovery_rank(p[0]["stage"], p[0]["checkpoint"]))
    paths = {c["checkpoint"]: (c.get("path") or "", c.get("problem")) for rec in records for c in rec["checkpoints"]}
    # a base model takes the base_model its SFT cells name (as discovery does): its own shard may have been made
    # before any cell existed (a study evaluates the base while the cells train)
    found = attach_base_models([checkpoint_of(row, *paths.get(row["checkpoint"], ("", None))) for row, _, _ in placed])
    results = pd.concat([r for _, r, _ in tables], ignore_index=True)
    tasks = {r["task"]: TaskInfo(r["task"], r["benchmark"], r["score_metric"], r["scale"])
             for r in _records(results.drop_duplicates("task")) if r["benchmark"] is not None}

    ensure_output_dir(out)
    with run_lock(out):
        # rows: each checkpoint's own rows (the shards' tests against (0, 1), if any, are made again below)
        own = results[~results.metric.isin(SIGNIFICANCE_METRICS) & (results.metric != "status")]
        order = {c.name: i for i, c in enumerate(found)}
        own = own.assign(_o=own.checkpoint.map(order)).sort_values("_o", kind="stable").drop(columns="_o")
        own = own.assign(base_model=own.checkpoint.map({c.name: c.base_model for c in found}))  # as attached
        by_checkpoint = {}
        parts = []
        for position, (ckpt, (_, _, part)) in enumerate(zip(found, placed)):
            if not part.is_file():  # a checkpoint that failed to load has no items
                continue
            # its part file under its place in the merged discovery order (a link: parts are written once)
            parts.append(item_part(out, position))
            parts[-1].parent.mkdir(parents=True, exist_ok=True)
            _link(str(part), str(parts[-1]))
            if ckpt.problem is None:  # as the run loop: only checkpoints that could be evaluated are tested
                clean = read_table(part, ITEMS_TYPES, TEST_COLUMNS, [("condition", "=", "clean")])
                by_checkpoint[ckpt.name] = (ckpt, clean_conditions(clean))
        sig_rows, notes = significance_rows(by_checkpoint, tasks, int(settings.get("seed", 0)))
        statuses = [Status(**s) for rec in records for s in rec["status"] if s["condition"] != SIGNIFICANCE_CONDITION]
        statuses.sort(key=lambda s: order.get(s.checkpoint, len(order)))
        (out / ITEMS).mkdir(parents=True, exist_ok=True)
        prune_item_parts(out, parts)
        write_parquet(out / PROMPTS, pq.read_table(shards[0] / PROMPTS))  # the same in every shard
        write_parquet(out / CHECKPOINTS, checkpoints_table(found))
        table = write_table(_records(own) + sig_rows + status_rows(found, statuses + notes, tasks), out)
        for shard in shards:  # per-checkpoint samples, as `evalsuite run` writes them
            if (shard / "checkpoints").is_dir():
                shutil.copytree(shard / "checkpoints", out / "checkpoints", dirs_exist_ok=True, copy_function=_link)
        merged = RequestStore(out / "requests.sqlite").merge([s / "requests.sqlite" for s in shards
                                                               if (s / "requests.sqlite").is_file()])
        log(f"merged {len(shards)} shards: {len(found)} checkpoints, {merged} stored requests -> {out}")
        state = "finished" if all(r.get("state") == "finished" for r in records) else "partial"
        starts = [calendar.timegm(time.strptime(r["started"], "%Y-%m-%dT%H:%M:%SZ")) for r in records if r.get("started")]
        write_run_record(out, Path(models), settings, found, statuses + notes, min(starts, default=time.time()), state,
                         merged_from=[str(s) for s in shards])
    return table


def _every_shard(records: Sequence[dict[str, Any]], shards: Sequence[Path]) -> None:
    """Shards made with `--shard i/n` must all be there: a merge of 3 of 4 would look like a finished run."""
    split = [(r.get("selection") or {}).get("shard") for r in records]
    if not any(split):
        return
    counts = {s.partition("/")[2] for s in split if s}
    if None in split or len(counts) > 1:
        raise ConfigError("merge either every shard of one `--shard i/n` split or runs split by --checkpoints, not both")
    n = int(counts.pop())
    missing = sorted(set(range(1, n + 1)) - {int(s.partition("/")[0]) for s in split})
    if missing:
        raise ConfigError(f"shard(s) {', '.join(f'{i}/{n}' for i in missing)} missing: merge all {n} shards")


def _link(src: str, dst: str) -> None:
    """A hard link where the filesystem allows it (samples are written once), else a copy."""
    try:
        if os.path.exists(dst):
            os.unlink(dst)
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)

