"""Executors: how a study's units run. One small interface, three engines (no scheduler of our own):

    local   in this process, one unit after another (inputs first)
    ray     Ray core tasks, a unit's inputs passed as its arguments so Ray starts it once they exist, with
            num_cpus / num_gpus / memory from the study's resources; a unit whose worker dies is retried by Ray
    slurm   one submitit job per unit (SLURM, or submitit's `local` / `debug` executors here), submitted once its
            inputs are done; a preempted or timed-out job is requeued and resumes; a failed one is resubmitted

Every executor returns each unit's outcome: "ok", "failed: <reason>", or "skipped: <input> failed".
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

from evalsuite.study.graph import Study, Unit

Log = Callable[[str], None]


class Executor(Protocol):
    def run(self, study: Study, units: Sequence[Unit], log: Log) -> dict[str, str]: ...


def blocked_by(unit: Unit, outcome: dict[str, str]) -> str | None:
    """The first input of `unit` that did not end well, if any (inputs not in this plan were already done)."""
    return next((d for d in unit.deps if d in outcome and outcome[d] != "ok"), None)


def reason(exc: BaseException) -> str:
    from evalsuite.run.pipeline import reason as one_line

    return one_line(exc)


def require(module: str, executor: str) -> None:
    """A one-line error naming the extra to install when an executor's engine is missing."""
    import importlib.util

    from evalsuite.errors import ConfigError

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"the {executor} executor needs {module}: pip install 'evalsuite[cluster]'")


def make_executor(name: str, study: Study, **options: object) -> Executor:
    from evalsuite.errors import ConfigError, did_you_mean
    from evalsuite.study.executors.local import LocalExecutor
    from evalsuite.study.executors.ray import RayExecutor
    from evalsuite.study.executors.slurm import SlurmExecutor

    registry: dict[str, tuple[str | None, Callable[..., Executor]]] = {
        "local": (None, lambda: LocalExecutor()),
        "ray": ("ray", lambda: RayExecutor.of(study.config.ray, **options)),
        "slurm": ("submitit", lambda: SlurmExecutor.of(study.config.slurm)),
    }
    if name not in registry:
        raise ConfigError(f"unknown executor {name!r}{did_you_mean(name, list(registry))} (local, ray or slurm)")
    engine, make = registry[name]
    if engine is not None:
        require(engine, name)
    return make()
