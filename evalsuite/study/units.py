"""Running one unit of a study, wherever an executor puts it: `execute(folder, unit_id)`.

What travels to a worker is two strings; the unit is rebuilt there from the study's `study.json`. A unit is
idempotent: it takes the unit's lock (a second attempt waits for an earlier one still running, e.g. after a
driver restart), returns at once when it is already done with these settings, else does its work, which resumes
whatever an interrupted attempt left (training checkpoints, the shard's request store), and writes its done
record last. Run as `python -m evalsuite.study.units FOLDER UNIT` (what a multi-GPU training unit launches under
`accelerate launch`, one process per GPU).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from evalsuite.study.graph import Study, Unit, done_record, open_study

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


@contextmanager
def unit_lock(study: Study, unit: Unit, log: Log) -> Iterator[None]:
    """The unit's lock (flock, released by the kernel when its holder dies, SIGKILL included) and its `.running`
    record (host, pid), which `study status` shows."""
    lock = study.record(unit, ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{unit.id}: waiting for an earlier attempt still holding it to end")
            fcntl.flock(fh, fcntl.LOCK_EX)
        running = study.record(unit, ".running")
        running.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": round(time.time())}))
        try:
            yield
        finally:
            running.unlink(missing_ok=True)
            fcntl.flock(fh, fcntl.LOCK_UN)


def execute(folder: str, unit_id: str, *deps: Any) -> str:
    """Run the unit `unit_id` of the study in `folder` (`deps`: its inputs' results, which executors pass so that
    their engines order the units; unused here). Returns the unit id; raises when the unit fails."""
    from evalsuite.paths import write_json

    study = open_study(Path(folder))
    unit = study.unit(unit_id)
    log = lambda message: _print(f"[{unit.id}] {message}")  # noqa: E731
    with unit_lock(study, unit, log):
        if already_done(study, unit):
            log("already done")
            return unit_id
        started = time.time()
        with open(study.record(unit, ".attempts"), "a") as fh:  # a line per attempt, with the settings it ran with
            fh.write(json.dumps({"key": unit.key, "host": socket.gethostname(), "pid": os.getpid(),
                                 "started": round(started)}) + "\n")
        if unit.kind in ("sft", "dpo") and unit.resources.gpus > 1:
            extra = launch(study, unit, log)
        else:
            extra = RUNNERS[unit.kind](study, unit, log) or {}
        write_json(study.record(unit), {"unit": unit.id, "key": unit.key, "host": socket.gethostname(),
                                        "seconds": round(time.time() - started, 1), "attempts": attempts(study, unit),
                                        **extra})
        log(f"done in {time.time() - started:.0f}s")
    return unit_id


def already_done(study: Study, unit: Unit) -> bool:
    """Done with these settings (an earlier attempt finished while this one waited). Read from the done record, not
    `graph.state`, which would open the lock file again (on NFS, closing any handle drops the process's lock). The
    report is rebuilt whenever it is run: the driver runs it only when one of its inputs was redone."""
    record = done_record(study, unit)
    return (unit.kind != "report" and record is not None and record.get("key") == unit.key
            and not record.get("failed"))


def attempts(study: Study, unit: Unit) -> int:
    """How many times the unit was started (interrupted attempts included)."""
    try:
        return len(study.record(unit, ".attempts").read_text().splitlines())
    except OSError:
        return 0


def launch(study: Study, unit: Unit, log: Log) -> dict[str, Any]:
    """A training unit on N GPUs: `accelerate launch` with N processes (data parallel; the WIT loss is pooled
    over every process), inside the GPUs the executor gave this unit."""
    n = unit.resources.gpus
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n), "--num_machines", "1",
               "--multi_gpu", "-m", "evalsuite.study.units", str(study.folder), unit.id]
    log(f"accelerate launch on {n} GPUs")
    # the launcher dies with this process (SIGTERM, on which torch's elastic agent stops the ranks): a retry of a
    # unit whose worker was killed never trains beside orphaned ranks of the attempt before
    subprocess.run(command, check=True, preexec_fn=die_with_parent())
    return {"processes": n}


def die_with_parent() -> Callable[[], None]:
    """What the child runs before exec: PR_SET_PDEATHSIG (Linux). libc is loaded here, in the parent: a forked child
    of a threaded process should call, not load."""
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def child() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call took effect
            os._exit(1)

    return child


# --- the runners, one per kind -----------------------------------------------------------------------------

def run_data(study: Study, unit: Unit, log: Log) -> None:
    from evalsuite.benchmarks.prepare import prepare_data

    spec = study.config.data
    assert spec is not None
    prepare_data(study.folder / "data", bbh_source=spec.bbh_source,
                 packages_dir=Path(spec.packages) if spec.packages else None, log=log)


def run_base(study: Study, unit: Unit, log: Log) -> None:
    """The base model prepared (an embedded GGUF converted once, cached) and linked where evaluation finds it."""
    from evalsuite.models.checkpoint import check_checkpoint_dir
    from evalsuite.models.prepare import resolve_model

    path = check_checkpoint_dir(resolve_model(unit.spec["model"])).resolve()
    link = study.checkpoints / "base" / unit.spec["name"]
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(path, target_is_directory=True)
    os.replace(tmp, link)  # atomic: the link is there whole or not at all
    log(f"{link} -> {path}")


def run_sft(study: Study, unit: Unit, log: Log) -> dict[str, Any]:
    from evalsuite.training.sft import train_cell

    grid = study.grids[unit.spec["grid"]]
    # retrain_changed: a cell published with other settings is only reached when the user asked to redo changed
    # units (the study refuses otherwise, before any unit runs)
    result = train_cell(study.sft_config(grid, tuple(unit.spec["cell"])), retrain_changed=True, log=log)
    return {"path": str(result.path), "final_loss": result.manifest.metrics.get("final_loss")}


def run_dpo(study: Study, unit: Unit, log: Log) -> dict[str, Any]:
    from evalsuite.training.config import cell_name
    from evalsuite.training.dpo import train_dpo_cell

    config = study.config.dpo_config()
    assert config is not None
    folder = study.grid_folder(unit.spec["grid"])
    result = train_dpo_cell(config.model_copy(update={"output_dir": folder}), folder / "sft" / cell_name(*unit.spec["cell"]),
                            retrain_changed=True, log=log)
    return {"path": str(result.path), "reward_accuracy": result.manifest.metrics.get("reward_accuracy")}


def run_eval(study: Study, unit: Unit, log: Log) -> dict[str, Any]:
    """One checkpoint, every benchmark and condition, into its own run folder and request store (a shard)."""
    from evalsuite.run.config import run_settings
    from evalsuite.run.discovery import Selection
    from evalsuite.run.pipeline import Tracker
    from evalsuite.run.session import evaluation

    # the data the driver fixed in study.json (never this machine's own prepared folder)
    data = study.data_folder()
    settings = run_settings(study.config.eval, data=str(data) if data else None)
    shard = study.shard(unit)
    with evaluation(study.config.eval, settings, study.checkpoints, shard,
                    Selection(names=tuple(unit.spec["checkpoints"]))) as evaluate:
        outcome = evaluate(Tracker(log=log))
    for s in outcome.failed:
        log(f"{s.task}: {s.status}")
    # a failed benchmark is in the shard's tables (the report shows it); the record's count makes the unit partial,
    # so the next run asks again what its store lacks
    return {"failed": len(outcome.failed)}


def run_report(study: Study, unit: Unit, log: Log) -> dict[str, Any]:
    """The shards merged into run/ (tables, items, stores, the tests against (0, 1)), then the report."""
    from evalsuite.report import build_report
    from evalsuite.run.merge import merge_runs

    shards = [study.shard(study.unit(d)) for d in unit.deps]
    table = merge_runs(shards, study.folder / "run", log=log)
    index = build_report([study.folder / "run"], study.folder / "report")
    log(f"report: {index}")
    record: dict[str, Any] = {"report": str(index), "rows": len(table)}
    if study.config.report.notebook:
        from evalsuite.report.notebook import execute

        _, page = execute([study.folder / "run"], study.folder / "report" / "notebook", name="dpo_plasticity")
        log(f"notebook: {page}")
        record["notebook"] = str(page)
    return record


RUNNERS: dict[str, Callable[[Study, Unit, Log], Any]] = {
    "data": run_data, "base": run_base, "sft": run_sft, "dpo": run_dpo, "eval": run_eval, "report": run_report,
}


def main() -> None:
    """One process of a multi-GPU training unit (under `accelerate launch`): the training alone; the parent
    process writes the done record."""
    folder, unit_id = sys.argv[1], sys.argv[2]
    study = open_study(Path(folder))
    unit = study.unit(unit_id)
    RUNNERS[unit.kind](study, unit, lambda message: _print(f"[{unit.id}] {message}"))


if __name__ == "__main__":
    main()
