"""The `ray` executor: one Ray core task per unit.

A unit's inputs are passed to its task as object references, so Ray itself starts it the moment they exist (an
SFT cell's evaluation runs while other cells still train). Each task asks for the unit's num_cpus / num_gpus /
memory; `max_retries` makes Ray run a unit again when its worker or node dies (the unit resumes from its
checkpoints and store); an exception raised by the unit is not retried (it would fail the same way). The cluster
is `--ray-address`, else `ray.address` in the study file, else RAY_ADDRESS, else (Ray's own rule) the cluster a
`ray start` left running on this machine, else a new local one started for the study (and stopped with it)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from evalsuite.errors import ConfigError
from evalsuite.study.config import RaySection
from evalsuite.study.executors import Log, blocked_by, reason
from evalsuite.study.graph import Study, Unit

# passed to the workers so they see the cache and offline settings the driver sees (never API keys: a judge's key
# must be set on the workers by whoever starts them)
FORWARDED_ENV = ("EVALSUITE_CACHE_DIR", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "NLTK_DATA", "TOKENIZERS_PARALLELISM", "VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY")


@dataclass
class RayExecutor:
    address: str | None
    max_retries: int

    @classmethod
    def of(cls, section: RaySection, address: str | None = None, **_: Any) -> "RayExecutor":
        return cls(address or section.address or os.environ.get("RAY_ADDRESS") or None, section.max_retries)

    def run(self, study: Study, units: Sequence[Unit], log: Log) -> dict[str, str]:
        use_token(self.address)
        import ray

        from evalsuite.study.units import execute

        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, runtime_env={"env_vars": env} if env else None, log_to_driver=True,
                         **({} if self.address else {"include_dashboard": False}))
            except ConnectionError as exc:
                raise ConfigError(f"{exc}: is the cluster up (`ray status` on its head node)?") from None
        try:
            check_resources(ray.cluster_resources(), units)
            resources = ray.cluster_resources()
            log(f"ray: cluster at {ray.get_runtime_context().gcs_address}, {resources.get('CPU', 0):g} CPUs, "
                f"{resources.get('GPU', 0):g} GPUs")
            task = ray.remote(execute)
            refs: dict[str, Any] = {}
            for unit in units:
                r = unit.resources
                inputs = [refs[d] for d in unit.deps if d in refs]
                refs[unit.id] = task.options(
                    name=unit.id, num_cpus=r.cpus, num_gpus=r.gpus, max_retries=self.max_retries, retry_exceptions=False,
                    **({"memory": int(r.memory_gb * 2**30)} if r.memory_gb else {}),
                ).remote(str(study.folder), unit.id, *inputs)
            return collect(refs, units, log)
        finally:
            if started:
                ray.shutdown()


def use_token(address: str | None) -> None:
    """Ray sends its token (token authentication, which `ray start` turns on when a token exists) only when it finds
    the cluster itself or is told to; given an address, it is told to whenever a token is at hand (a cluster without
    authentication ignores it). Set before Ray is imported, which reads it once. evalsuite never reads the token."""
    token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
             or (Path.home() / ".ray" / "auth_token").is_file())
    if address and token and os.environ.get("RAY_AUTH_MODE") is None:
        os.environ["RAY_AUTH_MODE"] = "token"


def check_resources(cluster: dict[str, float], units: Sequence[Unit]) -> None:
    """A unit asking for more than the whole cluster has would wait forever: say so before submitting anything."""
    for unit in units:
        for name, want in (("CPU", unit.resources.cpus), ("GPU", unit.resources.gpus)):
            if want > cluster.get(name, 0):
                raise ConfigError(f"unit {unit.id} asks for {want} {name}s and the Ray cluster has "
                                  f"{cluster.get(name, 0):g}: lower resources.{unit.kind}.{name.lower()}s in the study "
                                  "file, or add nodes")


def collect(refs: dict[str, Any], units: Sequence[Unit], log: Log) -> dict[str, str]:
    """Each unit's outcome as its task ends (in the order they end)."""
    import ray

    pending = {ref: uid for uid, ref in refs.items()}
    ended: dict[str, str] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        uid = pending.pop(ready[0])
        try:
            ray.get(ready[0])
            ended[uid] = "ok"
            log(f"{uid}: done")
        except Exception as exc:  # noqa: BLE001 - a failed unit (or a failed input, sorted out below)
            ended[uid] = f"failed: {reason(getattr(exc, 'cause', None) or exc)}"
    outcome: dict[str, str] = {}
    for unit in units:  # inputs first: a unit whose input failed was never run, it did not fail
        failed = blocked_by(unit, outcome)
        outcome[unit.id] = f"skipped: {failed} failed" if failed else ended[unit.id]
        if outcome[unit.id].startswith("failed"):
            log(f"{unit.id} {outcome[unit.id]}")
    return outcome
