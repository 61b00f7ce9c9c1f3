"""Driving a study: the folder and its lock, the plan (which units are left), the run through an executor, and
the table `--dry-run` and `study status` print."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from evalsuite.errors import ConfigError
from evalsuite.study.config import StudyConfig
from evalsuite.study.graph import NAMES_FILE, STUDY_FILE, Study, Unit, build, load_names, names_of, state

Log = Callable[[str], None]


@dataclass(frozen=True)
class Row:
    """One line of the status table."""

    unit: Unit
    state: str  # done | changed | running | partial | to do


def rows(study: Study) -> list[Row]:
    """Every unit and its state, inputs first; the report is to do again whenever one of its inputs is."""
    table, states = [], {}
    for unit in study.units:
        states[unit.id] = state(study, unit)
        if unit.kind == "report" and states[unit.id] == "done" and any(states[d] != "done" for d in unit.deps):
            states[unit.id] = "to do"
        table.append(Row(unit, states[unit.id]))
    return table


def left(table: Sequence[Row]) -> list[Unit]:
    """The units a run must still do, inputs first (an input already done is not waited for)."""
    return [r.unit for r in table if r.state != "done"]


@contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """One driver per study folder (two would submit every unit twice)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".study.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another `evalsuite study` is driving {folder}: wait for it to end, or look at it "
                              f"with `evalsuite study status {folder}`") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare(config: StudyConfig, out: Path | None) -> Study:
    """The study's graph in its folder (nothing written). The evaluation data is fixed here, on the driver's
    machine (the prepared folder when there is one, as `evalsuite run` chooses), so every unit, wherever it runs,
    asks the same data, and the choice is part of the units' keys."""
    from evalsuite.benchmarks.prepare import prepared_or

    if config.data is None and not config.eval.run.data:
        config = config.model_copy(deep=True)
        config.eval.run.data = prepared_or(None, None)
    folder = config.folder(out)
    return build(folder, config, load_names(folder))


def check_judge_key(study: Study, executor: str) -> None:
    """A judge's key variable must be set where the units run: checked here for the executors whose units inherit
    this environment (Ray workers have the environment of whoever started them)."""
    import os

    judge = study.config.eval.judge
    if executor != "ray" and judge is not None and judge.api_key_env and not os.environ.get(judge.api_key_env):
        raise ConfigError(f"eval.judge.api_key_env: {judge.api_key_env} is not set (the judge's API key is read from "
                          "it; nothing is judged without it)")


def run_study(study: Study, executor: str, *, redo_changed: bool = False, log: Log = print,
              **options: object) -> dict[str, str]:
    """Every unit left, through `executor`; returns each run unit's outcome ("ok", "failed: ...", "skipped: ...").
    Units done with other settings ("changed") are refused unless `redo_changed`."""
    from evalsuite.paths import ensure_output_dir, write_json
    from evalsuite.study.executors import make_executor

    engine = make_executor(executor, study, **options)  # an unknown executor fails before anything is written
    check_judge_key(study, executor)
    ensure_output_dir(study.folder)
    with study_lock(study.folder):
        table = rows(study)
        changed = [r.unit.id for r in table if r.state == "changed"]
        if changed and not redo_changed:
            raise ConfigError(f"{len(changed)} unit(s) were done with other settings ({', '.join(changed[:4])}"
                              f"{', ...' if len(changed) > 4 else ''}): re-run with --redo-changed to redo them with "
                              "this study file, or choose another --out")
        write_json(study.folder / NAMES_FILE, {**load_names(study.folder), **names_of(study)})
        write_json(study.folder / STUDY_FILE, study.config.model_dump(mode="json"))
        todo = left(table)
        if not todo:
            log(f"every unit of {study.folder} is done")
            return {}
        log(f"{len(todo)} of {len(table)} units to run with the {executor} executor")
        return engine.run(study, todo, log)


def resources_text(unit: Unit) -> str:
    r = unit.resources
    parts = [f"{r.cpus} cpu", f"{r.gpus} gpu"] + ([f"{r.memory_gb:g} GB"] if r.memory_gb else [])
    return ", ".join(parts) + f", {r.time_min} min"


def summary(table: Sequence[Row]) -> str:
    counts: dict[str, int] = {}
    for r in table:
        counts[r.state] = counts.get(r.state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items())

