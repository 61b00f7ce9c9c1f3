"""The `slurm` executor: one submitit job per unit, on SLURM (partition, account, time and GPUs from the study
file) or, for trials and tests, submitit's `local` / `debug` executors on this machine.

A unit is submitted once its inputs are done (the driver waits for jobs; keep it running, e.g. in tmux or as a
small job of its own: a re-run after it dies skips finished units and resumes the others). A job preempted or
past its time limit is requeued by submitit (`checkpoint`) and the unit resumes from its checkpoints and store;
a job that fails is submitted again up to `slurm.max_retries` times."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from evalsuite.study.config import SlurmSection
from evalsuite.study.executors import Log, blocked_by, reason
from evalsuite.study.graph import Study, Unit


class UnitJob:
    """What a job runs: one unit. submitit calls `checkpoint` on preemption or timeout; it requeues the same unit,
    which resumes."""

    def __call__(self, folder: str, unit_id: str) -> str:
        from evalsuite.study.units import execute

        return execute(folder, unit_id)

    def checkpoint(self, folder: str, unit_id: str) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(UnitJob(), folder, unit_id)


@dataclass
class SlurmExecutor:
    section: SlurmSection

    @classmethod
    def of(cls, section: SlurmSection) -> "SlurmExecutor":
        """Checked before anything is written: without `slurm.cluster`, SLURM itself must be here (submitit would
        otherwise quietly run every job on this machine)."""
        import shutil

        from evalsuite.errors import ConfigError

        if section.cluster is None and shutil.which("sbatch") is None:
            raise ConfigError("the slurm executor finds no SLURM here (no sbatch on PATH): run it on a login node, or "
                              "set slurm.cluster: local in the study file to run the jobs on this machine")
        return cls(section)

    def parameters(self, unit: Unit, cluster: str) -> dict[str, Any]:
        r, s = unit.resources, self.section
        params: dict[str, Any] = {"name": f"evalsuite-{unit.id}", "timeout_min": r.time_min, "cpus_per_task": r.cpus,
                                  "tasks_per_node": 1, "nodes": 1}
        if r.memory_gb:
            params["mem_gb"] = r.memory_gb
        if cluster == "slurm":
            params["gpus_per_node"] = r.gpus
            params.update({f"slurm_{k}": v for k, v in (("partition", s.partition), ("account", s.account),
                                                        ("qos", s.qos), ("constraint", s.constraint)) if v})
            if s.additional:
                params["slurm_additional_parameters"] = dict(s.additional)
            if s.setup:
                params["slurm_setup"] = list(s.setup)
        return params

    def run(self, study: Study, units: Sequence[Unit], log: Log) -> dict[str, str]:
        import submitit

        executor = submitit.AutoExecutor(folder=str(study.folder / "logs" / "submitit" / "%j"),
                                         cluster=self.section.cluster)
        cluster = executor.cluster
        log(f"submitit: {cluster} executor, jobs' logs in {study.folder / 'logs' / 'submitit'}")
        waiting = list(units)
        planned = {u.id for u in units}  # an input outside the plan was done before it
        running: dict[str, Any] = {}
        attempts: dict[str, int] = {}
        outcome: dict[str, str] = {}

        def submit(unit: Unit) -> None:
            executor.update_parameters(**self.parameters(unit, cluster))
            running[unit.id] = executor.submit(UnitJob(), str(study.folder), unit.id)
            attempts[unit.id] = attempts.get(unit.id, 0) + 1
            log(f"{unit.id}: job {running[unit.id].job_id}" + (f" (attempt {attempts[unit.id]})"
                                                              if attempts[unit.id] > 1 else ""))

        while waiting or running:
            for unit in list(waiting):
                if (failed := blocked_by(unit, outcome)) is not None:
                    outcome[unit.id] = f"skipped: {failed} failed"
                    waiting.remove(unit)
                elif all(outcome.get(d) == "ok" for d in unit.deps if d in planned):
                    waiting.remove(unit)
                    submit(unit)
            finished = [uid for uid, job in running.items() if job.done()]
            if not finished:
                time.sleep(self.section.poll_s)
                continue
            for uid in finished:
                job = running.pop(uid)
                try:
                    job.result()
                    outcome[uid] = "ok"
                    log(f"{uid}: done")
                except Exception as exc:  # noqa: BLE001 - the job failed: again, or recorded
                    if attempts[uid] <= self.section.max_retries:
                        log(f"{uid}: job {job.job_id} failed ({reason(exc)}); submitting again")
                        submit(next(u for u in units if u.id == uid))
                    else:
                        outcome[uid] = f"failed: {reason(exc)}"
                        log(f"{uid} failed: {reason(exc)} (log: {job.paths.stderr})")
        return {u.id: outcome[u.id] for u in units}
