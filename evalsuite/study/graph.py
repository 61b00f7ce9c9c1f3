"""The study as a graph of units, and where each unit stands.

    data                      the offline benchmark data (only with a `data:` section)
    base/<model>              the base model prepared, linked at checkpoints/base/<model>
    sft/<grid>/<cell>         one WIT cell         -> checkpoints/<grid>/sft/<cell>
    dpo/<grid>/<cell>         DPO on that cell     -> checkpoints/<grid>/dpo/<cell>
    eval/<checkpoint>         one checkpoint on every benchmark and condition -> eval/<checkpoint>/ (a run folder
                              with its own request store: one writer per SQLite file, wherever it runs)
    eval/<grid>/adapters      instead, when a grid's cells are LoRA adapters kept alone and the evaluation runs on
                              vLLM: all of them on one multi-LoRA engine (one engine start, not one per cell)
    report                    the shards merged into run/, and the report in report/

A unit's key is a hash of everything that decides its output (its settings and its inputs' keys). When a unit
ends, `units/<unit>.json` records its key: the unit is done while the key matches, "changed" when the study's
settings moved since (a re-run refuses to redo such units unless asked), "partial" while an interrupted attempt
left work to resume (a training checkpoint, a request store), "running" while a process holds its lock.

Folder layout of a study (everything a unit writes appears atomically: cells by one rename, tables by atomic
writes, the done record last):

    study.json  names.json  checkpoints/  data/  eval/<checkpoint>/  run/  report/  units/  logs/

(names.json keeps the folder names given to grids and base models, so a study that grows never renames them.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.errors import ConfigError
from evalsuite.study.config import Resources, StudyConfig, slug
from evalsuite.training.config import SFTRunConfig, cell_name

STUDY_FILE = "study.json"
NAMES_FILE = "names.json"  # the folder names given to grids and base models, kept as the study grows


@dataclass(frozen=True)
class Unit:
    id: str
    kind: str  # data | base | sft | dpo | eval | report
    deps: tuple[str, ...]
    key: str
    resources: Resources
    spec: dict[str, Any] = field(default_factory=dict, compare=False)  # what its runner needs (grid, cell, ...)


@dataclass(frozen=True)
class Grid:
    """One model × SFT dataset × completion split: its own experiment key, its own folder of cells."""

    id: str
    model: str
    dataset: dict[str, Any]


@dataclass
class Study:
    folder: Path
    config: StudyConfig
    units: list[Unit]  # in an order where every unit comes after its inputs
    grids: dict[str, Grid]

    def unit(self, unit_id: str) -> Unit:
        for u in self.units:
            if u.id == unit_id:
                return u
        raise ConfigError(f"the study in {self.folder} has no unit {unit_id}")

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    def grid_folder(self, grid: str) -> Path:
        return self.checkpoints / grid

    def shard(self, unit: Unit) -> Path:
        return self.folder / "eval" / slug(unit.id.removeprefix("eval/").replace("/", "__"))

    def record(self, unit: Unit, suffix: str = ".json") -> Path:
        return self.folder / "units" / f"{slug(unit.id.replace('/', '__'))}{suffix}"

    def sft_config(self, grid: Grid, cell: tuple[float, float]) -> SFTRunConfig:
        return SFTRunConfig.model_validate({**self.config.sft.settings(), "model": grid.model, "dataset": grid.dataset,
                                            "output_dir": str(self.grid_folder(grid.id)), "lambda_p": cell[0],
                                            "lambda_r": cell[1]})

    def data_folder(self) -> Path | None:
        return self.folder / "data" if self.config.data is not None else None


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def unique_names(named: list[tuple[str, Any]], taken: dict[str, str]) -> list[str]:
    """Readable folder names for (readable name, what it is). A name given before (`taken`, from the study folder's
    names.json) is kept, so growing a study never renames what exists; a new one that would clash with another
    gets a short hash of what it is, whatever the order of the study file's lists."""
    keys = [key_of(what) for _, what in named]
    new = [name for (name, _), k in zip(named, keys) if k not in taken]
    used = set(taken.values())
    return [taken[k] if k in taken else name if new.count(name) == 1 and name not in used else f"{name}-{k[:6]}"
            for (name, _), k in zip(named, keys)]


def grids_of(config: StudyConfig, taken: dict[str, str]) -> list[Grid]:
    """model × dataset × completion split (each once), each with a readable, unique folder name."""
    combos = list(dict.fromkeys((model, json.dumps(dataset, sort_keys=True), split) for model in config.models
                                for dataset in config.sft.datasets for split in config.sft.completion_splits))
    named = [(slug(f"{Path(m.rstrip('/')).name}_{Path(str(json.loads(d)['path']).rstrip('/')).name.split('.')[0]}"
                   + ("" if split == "all" else f"-{split}")), ("grid", m, d, split)) for m, d, split in combos]
    return [Grid(name, m, {**json.loads(d), "completion_split": split})
            for name, (m, d, split) in zip(unique_names(named, taken), combos)]


def names_of(study: "Study") -> dict[str, str]:
    """The names this study gave (for names.json): grids and base models by what they are."""
    names = {key_of(("grid", g.model, json.dumps({k: v for k, v in g.dataset.items() if k != "completion_split"},
                                                 sort_keys=True), g.dataset["completion_split"])): g.id
             for g in study.grids.values()}
    names.update({key_of(("base", u.spec["model"])): u.spec["name"] for u in study.units if u.kind == "base"})
    return names


def build(folder: Path, config: StudyConfig, taken: dict[str, str] | None = None) -> Study:
    """Every unit of the study, inputs first (`taken`: the names the study folder already gave, see names.json)."""
    taken = dict(taken or {})
    res = config.resources
    units: list[Unit] = []
    data: tuple[str, ...] = ()
    data_key = ""
    if config.data is not None:
        data_key = key_of("data", config.data.bbh_source)
        units.append(Unit("data", "data", (), data_key, res.data))
        data = ("data",)
    grids = grids_of(config, taken)
    study = Study(folder, config, [], {g.id: g for g in grids})  # its units are set below, once all are made
    evals: list[Unit] = []
    eval_settings = config.eval.model_dump(mode="json")

    def evaluate(checkpoint: str, producer: Unit) -> None:
        evals.append(Unit(f"eval/{checkpoint}", "eval", (producer.id, *data),
                          key_of("eval", eval_settings, producer.key, data_key), res.eval, {"checkpoints": [checkpoint]}))

    shared_stages = config.adapter_stages()

    def evaluate_together(grid: str, cells: list[tuple[str, Unit]]) -> None:
        """A grid's adapter cells on one multi-LoRA engine: one unit, which waits for all of them."""
        if cells:
            evals.append(Unit(f"eval/{grid}/adapters", "eval", (*(u.id for _, u in cells), *data),
                              key_of("eval", eval_settings, [u.key for _, u in cells], data_key), res.eval,
                              {"checkpoints": [c for c, _ in cells]}))

    bases: dict[str, Unit] = {}
    models = list(dict.fromkeys(config.models))
    for model, name in zip(models, unique_names([(slug(Path(m.rstrip("/")).name), ("base", m)) for m in models], taken)):
        base = Unit(f"base/{name}", "base", (), key_of("base", model), res.base, {"model": model, "name": name})
        bases[model] = base
        units.append(base)
        evaluate(f"base/{name}", base)
    dpo = config.dpo_config()
    for grid in grids:
        adapters: list[tuple[str, Unit]] = []
        for cell in config.sft.cells:
            sft_settings = study.sft_config(grid, cell).model_dump(mode="json", exclude={"output_dir"})
            sft = Unit(f"sft/{grid.id}/{cell_name(*cell)}", "sft", (bases[grid.model].id,),
                       key_of("sft", sft_settings, bases[grid.model].key), res.sft,
                       {"grid": grid.id, "cell": list(cell)})
            units.append(sft)
            name = f"{grid.id}/sft/{cell_name(*cell)}"
            if "sft" in shared_stages:
                adapters.append((name, sft))
            else:
                evaluate(name, sft)
            if dpo is not None:
                unit = Unit(f"dpo/{grid.id}/{cell_name(*cell)}", "dpo", (sft.id,),
                            key_of("dpo", dpo.model_dump(mode="json", exclude={"output_dir"}), sft.key), res.dpo,
                            {"grid": grid.id, "cell": list(cell)})
                units.append(unit)
                name = f"{grid.id}/dpo/{cell_name(*cell)}"
                if "dpo" in shared_stages:
                    adapters.append((name, unit))
                else:
                    evaluate(name, unit)
        evaluate_together(grid.id, adapters)
    units += evals
    report_key = (key_of("report", [u.key for u in evals]) if not config.report.notebook  # keys of older studies kept
                  else key_of("report", [u.key for u in evals], config.report.model_dump(mode="json")))
    units.append(Unit("report", "report", tuple(u.id for u in evals), report_key, res.report))
    study.units = units
    return study


# --- state --------------------------------------------------------------------------------------------------

def done_record(study: Study, unit: Unit) -> dict[str, Any] | None:
    try:
        return json.loads(study.record(unit).read_text())
    except (OSError, ValueError):
        return None


def is_running(study: Study, unit: Unit) -> bool:
    """Whether a process holds the unit's lock now (an attempt in progress, here or on another node)."""
    lock = study.record(unit, ".lock")
    if not lock.exists():
        return False
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def started_work(study: Study, unit: Unit) -> bool:
    """Whether an earlier attempt left something the next one resumes from."""
    if unit.kind in ("sft", "dpo"):
        stage = study.grid_folder(unit.spec["grid"]) / unit.kind
        name = cell_name(*unit.spec["cell"])
        return (stage / ".work" / name).exists() or (stage / name).exists()
    if unit.kind == "eval":
        return (study.shard(unit) / "requests.sqlite").exists()
    if unit.kind == "report":
        return (study.folder / "run").exists()
    if unit.kind == "data":
        return (study.folder / "data").exists()
    return False


def last_attempt_key(study: Study, unit: Unit) -> str | None:
    """The settings key the unit's last attempt started with (None before any attempt)."""
    try:
        return json.loads(study.record(unit, ".attempts").read_text().splitlines()[-1]).get("key")
    except (OSError, ValueError, IndexError):
        return None


def state(study: Study, unit: Unit) -> str:
    """done | changed | running | partial | to do. An evaluation that recorded failed benchmarks is partial: a
    re-run asks again only what its store does not hold (a judge that was down). The report is derived data:
    when its inputs moved it is to do again, never "changed"."""
    record = done_record(study, unit)
    if record is not None and record.get("key") == unit.key:
        return "partial" if record.get("failed") else "done"
    if is_running(study, unit):
        return "running"
    last = last_attempt_key(study, unit)
    # done or started with other settings; an interrupted redo (its last attempt had these settings) is partial
    changed = last not in (None, unit.key) or (record is not None and last is None)
    if changed and unit.kind != "report":
        return "changed"
    return "partial" if started_work(study, unit) else "to do"


def load_names(folder: Path) -> dict[str, str]:
    try:
        return json.loads((Path(folder) / NAMES_FILE).read_text())
    except (OSError, ValueError):
        return {}


def open_study(folder: Path) -> Study:
    """The study in `folder` as its last `evalsuite study` wrote it (study.json)."""
    from pydantic import ValidationError

    folder = Path(folder).expanduser().resolve()
    try:
        data = json.loads((folder / STUDY_FILE).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a study folder (no {STUDY_FILE}): give the folder `evalsuite study` "
                          "wrote") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}/{STUDY_FILE} cannot be read: {exc}") from None
    try:
        return build(folder, StudyConfig.model_validate(data), load_names(folder))
    except ValidationError as exc:
        raise ConfigError(f"{folder}/{STUDY_FILE} is not a study this evalsuite reads: {exc.errors()[0]['msg']}") from None
