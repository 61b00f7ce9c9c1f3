"""Checkpoints below a folder: every directory with an evalsuite manifest, a Hugging Face config or a peft
adapter (a base model included; an adapter alone is evaluated on the base it names). A checkpoint's own
subfolders are not searched; hidden folders (cells being trained) and trainer `checkpoint-N` folders are
skipped. Each one is checked cheaply (config, manifest, safetensors headers) so a corrupt checkpoint is
reported before anything is loaded, and recorded as failed.

Each checkpoint also carries its lineage from the manifests: the experiment (grid) it belongs to, its parent,
base model, training data and training metrics, so that two grids gathered under one folder never mix."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence


DATA_SUFFIXES = (".gz", ".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class TrainingMetrics:
    """What the manifest says about training (None where the stage has no such figure)."""

    final_loss: float | None = None
    train_loss: float | None = None
    reward_accuracy: float | None = None  # DPO
    reward_margin: float | None = None  # DPO


@dataclass(frozen=True)
class Checkpoint:
    name: str  # path relative to the searched folder ("." for the folder itself)
    path: Path
    stage: str  # base | sft | dpo (from the manifest), or "hf" without one
    cell: tuple[float, float] | None  # (λp, λr) of a WIT cell
    prompt_format: str | None
    problem: str | None = None  # why it cannot be evaluated
    # the grid it belongs to (`experiment_key`); "" for a base model, which belongs to every grid trained from it
    experiment: str = ""
    parent: str | None = None  # the parent checkpoint's path, as the manifest records it
    base_model: str | None = None
    dataset: str | None = None  # this stage's own training data (name or path) and its fingerprint
    dataset_fingerprint: str | None = None
    metrics: TrainingMetrics = field(default_factory=TrainingMetrics)
    fingerprint: str | None = None  # the request store's identity of the weights, once evaluated
    adapter_of: Path | None = None  # an adapter-only checkpoint (a LoRA cell kept as its adapter): its base weights

    def weights(self) -> tuple[Path, Path | None]:
        """(the weights a backend loads, the adapter it applies to them)."""
        return (self.adapter_of, self.path) if self.adapter_of is not None else (self.path, None)

    @property
    def grid(self) -> tuple[str, ...]:
        """Which cells may be compared with each other (the (0, 1) reference of significance tests): one stage
        of one experiment, and for DPO cells the same preference data too."""
        if not self.experiment:
            return ()
        return (self.stage, self.experiment) + ((self.dataset_fingerprint or "",) if self.stage == "dpo" else ())

    def info(self) -> dict[str, Any]:
        """The checkpoint's columns in every table of the run, in the tables' order."""
        return {"experiment": self.experiment, "checkpoint": self.name, "stage": self.stage,
                "lambda_p": self.cell[0] if self.cell else None, "lambda_r": self.cell[1] if self.cell else None,
                "parent": self.parent, "base_model": self.base_model, "prompt_format": self.prompt_format}


def inspect(root: Path, path: Path) -> Checkpoint:
    from evalsuite.errors import EvalsuiteError
    from evalsuite.manifest import read_manifest
    from evalsuite.models.checkpoint import adapter_base, check_checkpoint_dir, is_adapter_only

    name = str(path.relative_to(root)) if path != root else "."
    try:
        manifest = read_manifest(path)
    except Exception as exc:  # a manifest that does not parse
        return Checkpoint(name, path, "hf", None, None, f"unreadable evalsuite.json: {str(exc).splitlines()[0]}")
    found = Checkpoint(name, path, "hf", None, None) if manifest is None else from_manifest(name, path, manifest)
    try:
        if is_adapter_only(path):
            return replace(found, adapter_of=adapter_base(path))
        check_checkpoint_dir(path)
    except EvalsuiteError as exc:
        return replace(found, problem=str(exc))
    return found


def from_manifest(name: str, path: Path, manifest: Any) -> Checkpoint:
    cell = None
    if isinstance(getattr(manifest, "cell", None), dict):
        cell = (float(manifest.cell["lambda_p"]), float(manifest.cell["lambda_r"]))  # type: ignore[attr-defined]
    metrics = manifest.metrics or {}
    return Checkpoint(
        name, path, manifest.stage, cell, manifest.prompt_format, experiment=experiment_of(path, manifest),
        parent=manifest.parent, base_model=str(manifest.base_model), dataset=dataset_name(manifest.source, full=True),
        dataset_fingerprint=manifest.source.get("dataset_fingerprint"),
        metrics=TrainingMetrics(*(_number(metrics.get(k)) for k in ("final_loss", "train_loss", "reward_accuracy",
                                                                      "reward_margin"))))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def dataset_name(source: dict[str, Any], full: bool = False) -> str | None:
    """The training data as the manifest's `source.dataset` names it: its path or hub id (`full`), or a short
    name (`lima`, `alpaca_cleaned`), with the PLW paper's completion split when one was kept (`lima-short`)."""
    spec = source.get("dataset")
    path = spec.get("path") if isinstance(spec, dict) else spec if isinstance(spec, str) else None
    if not path:
        return None
    if full:
        return str(path)
    short = Path(str(path).rstrip("/")).name
    for suffix in DATA_SUFFIXES:  # a file's suffix is not part of the data's name
        short = short.removesuffix(suffix)
    split = spec.get("completion_split", "all") if isinstance(spec, dict) else "all"
    return short if split in (None, "all") else f"{short}-{split}"


def experiment_key(base_model: str, data: str | None, data_fingerprint: str | None, prompt_format: str | None) -> str:
    """`<base model short name>/<SFT data name>#<8 hex>`: readable, and unique per grid (the hex is a hash of
    the base model, the SFT data fingerprint and the prompt format, so two grids differing in any of them, even
    with equal names, never share a key)."""
    digest = hashlib.sha256(json.dumps([base_model, data_fingerprint, prompt_format]).encode()).hexdigest()[:8]
    model = Path(base_model.rstrip("/")).name or base_model
    return f"{model}/{data or 'unknown'}#{digest}"


def sft_experiment(manifest: Any) -> str:
    return experiment_key(str(manifest.base_model), dataset_name(manifest.source),
                          manifest.source.get("dataset_fingerprint"), manifest.prompt_format)


def experiment_of(path: Path, manifest: Any) -> str:
    """An SFT cell's experiment is its own; a DPO cell's is its SFT parent's (read from the parent's manifest,
    where the parent folder is found: as recorded, else at the same place relative to this one, the layout of
    `evalsuite train` output moved as a whole); a base model's is ""."""
    if manifest.stage == "sft":
        return sft_experiment(manifest)
    if manifest.stage != "dpo":
        return ""
    parent = sft_parent_manifest(path, manifest.parent)
    if parent is not None:
        return sft_experiment(parent)
    # no parent to read: the DPO manifest's own lineage (its base model and format are its parent's), and the
    # SFT grid's folder in place of the SFT data
    grid = str(Path(manifest.parent).parent) if manifest.parent else None
    return experiment_key(str(manifest.base_model), f"sft-grid-{Path(grid).name}" if grid else None, grid,
                          manifest.prompt_format)


def sft_parent_manifest(path: Path, parent: str | None) -> Any:
    from evalsuite.manifest import read_manifest

    if not parent:
        return None
    recorded = Path(parent)
    for candidate in (recorded, path.parent.parent / recorded.parent.name / recorded.name):
        try:
            manifest = read_manifest(candidate) if candidate.is_dir() else None
        except Exception:  # noqa: BLE001 - an unreadable parent: try the next place, else the fallback
            manifest = None
        if manifest is not None and manifest.stage == "sft":
            return manifest
    return None


def attach_base_models(found: Sequence[Checkpoint]) -> list[Checkpoint]:
    """A base model without a manifest (a plain Hugging Face folder) takes the `base_model` its SFT cells record
    when they name this very folder (as their parent, or as the base model's path), so analysis can put it in
    the (0, 0) cell of those grids."""
    names: dict[str, str] = {}
    for c in found:
        if c.stage == "sft" and c.base_model is not None:
            for ref in (c.parent, c.base_model):
                if ref:
                    names.setdefault(os.path.realpath(os.path.expanduser(ref)), c.base_model)
    return [replace(c, base_model=names.get(os.path.realpath(c.path))) if c.stage == "hf" and c.base_model is None
            else c for c in found]


def discover(root: Path) -> list[Checkpoint]:
    """Every checkpoint below `root`. Symbolic links to folders are followed (a common way to gather the cells
    of several training runs into one folder), each real folder once: a link to a folder already seen, or a
    loop, is not searched again."""
    from evalsuite.errors import ConfigError

    root = root.expanduser()
    if not root.is_dir():
        raise ConfigError(f"--models {root} is not a folder")
    found = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        if "evalsuite.json" in filenames or "config.json" in filenames or "adapter_config.json" in filenames:
            dirnames[:] = []
            found.append(inspect(root, Path(dirpath)))
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not d.startswith("checkpoint-"))
    found = attach_base_models(found)
    return sorted(found, key=lambda c: discovery_rank(c.stage, c.name))


def discovery_rank(stage: str, name: str) -> tuple[int, str]:
    """Where a checkpoint comes in a run: base models, then SFT cells, then DPO cells, each by name."""
    return {"base": 0, "hf": 0, "sft": 1, "dpo": 2}.get(stage, 3), name


@dataclass(frozen=True)
class Selection:
    """Which of the checkpoints found a run evaluates: those named (`--checkpoints`), then shard `index` of `count`
    (`--shard i/n`: every n-th checkpoint in discovery order, starting at the i-th), so that n runs started by
    hand with the same folder cover every checkpoint exactly once."""

    names: tuple[str, ...] | None = None
    shard: tuple[int, int] | None = None  # (i, n), 1-based

    @classmethod
    def parse(cls, names: str | None, shard: str | None) -> "Selection":
        from evalsuite.errors import ConfigError

        chosen = tuple(n.strip().rstrip("/") for n in names.split(",") if n.strip()) if names is not None else None
        if chosen == ():
            raise ConfigError(f"--checkpoints {names!r} names no checkpoint")
        if shard is None:
            return cls(chosen, None)
        i, _, n = shard.partition("/")
        try:
            index, count = int(i), int(n)
        except ValueError:
            index = count = 0
        if not 1 <= index <= count:
            raise ConfigError(f"--shard {shard}: expected i/n with 1 <= i <= n, e.g. 2/4")
        return cls(chosen, (index, count))

    def apply(self, found: Sequence[Checkpoint]) -> list[Checkpoint]:
        from evalsuite.errors import ConfigError, did_you_mean

        chosen = list(found)
        if self.names is not None:
            by_name = {c.name: c for c in found}
            missing = [n for n in self.names if n not in by_name]
            if missing:
                raise ConfigError("--checkpoints: no checkpoint named "
                                  + "; ".join(f"{n}{did_you_mean(n, list(by_name))}" for n in missing))
            wanted = set(self.names)
            chosen = [c for c in found if c.name in wanted]
        if self.shard is not None:
            index, count = self.shard
            chosen = chosen[index - 1::count]
        return chosen

    def record(self) -> dict[str, Any] | None:
        if self.names is None and self.shard is None:
            return None
        return {"checkpoints": list(self.names) if self.names is not None else None,
                "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None}
