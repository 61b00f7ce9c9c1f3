"""The `local` executor: every unit in this process, inputs first (what `evalsuite train` and `evalsuite run`
do by hand, as one command)."""

from __future__ import annotations

from typing import Sequence

from evalsuite.study.executors import Log, blocked_by, reason
from evalsuite.study.graph import Study, Unit


class LocalExecutor:
    def run(self, study: Study, units: Sequence[Unit], log: Log) -> dict[str, str]:
        from evalsuite.study.units import execute

        outcome: dict[str, str] = {}
        for unit in units:
            if (failed := blocked_by(unit, outcome)) is not None:
                outcome[unit.id] = f"skipped: {failed} failed"
                continue
            try:
                execute(str(study.folder), unit.id)
                outcome[unit.id] = "ok"
            except Exception as exc:  # noqa: BLE001 - one unit's failure must not lose the others' work
                outcome[unit.id] = f"failed: {reason(exc)}"
                log(f"{unit.id} failed: {reason(exc)}")
        return outcome
