"""Checkpoints below a folder: every directory with an evalsuite manifest or a Hugging Face config (a base
model included). A checkpoint's own subfolders are not searched; hidden folders (cells being trained) and
trainer `checkpoint-N` folders are skipped. Each one is checked cheaply (config, manifest, safetensors
headers) so a corrupt checkpoint is reported before anything is loaded, and recorded as failed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Checkpoint:
    name: str  # path relative to the searched folder ("." for the folder itself)
    path: Path
    stage: str  # base | sft | dpo (from the manifest), or "hf" without one
    cell: tuple[float, float] | None  # (λp, λr) of a WIT cell
    prompt_format: str | None
    problem: str | None = None  # why it cannot be evaluated
    # which grid it belongs to: its stage, base model and training data (and, for DPO, the SFT grid it came
    # from), so cells are only ever compared with the (0, 1) cell of their own grid
    grid: tuple[str, ...] = ()

    def info(self) -> dict[str, Any]:
        return {"checkpoint": self.name, "stage": self.stage, "lambda_p": self.cell[0] if self.cell else None,
                "lambda_r": self.cell[1] if self.cell else None}


def inspect(root: Path, path: Path) -> Checkpoint:
    from evalsuite.errors import EvalsuiteError
    from evalsuite.manifest import read_manifest
    from evalsuite.models.checkpoint import check_checkpoint_dir

    name = str(path.relative_to(root)) if path != root else "."
    try:
        manifest = read_manifest(path)
    except Exception as exc:  # a manifest that does not parse
        return Checkpoint(name, path, "hf", None, None, f"unreadable evalsuite.json: {str(exc).splitlines()[0]}")
    stage = manifest.stage if manifest else "hf"
    cell = None
    if manifest is not None and isinstance(getattr(manifest, "cell", None), dict):
        cell = (float(manifest.cell["lambda_p"]), float(manifest.cell["lambda_r"]))  # type: ignore[attr-defined]
    grid = grid_of(manifest) if manifest is not None else ()
    fmt = manifest.prompt_format if manifest else None
    try:
        check_checkpoint_dir(path)
    except EvalsuiteError as exc:
        return Checkpoint(name, path, stage, cell, fmt, str(exc), grid)
    return Checkpoint(name, path, stage, cell, fmt, None, grid)


def grid_of(manifest: Any) -> tuple[str, ...]:
    """(stage, base model, training data fingerprint[, the SFT grid's folder for a DPO cell])."""
    grid = (manifest.stage, str(manifest.base_model), str(manifest.source.get("dataset_fingerprint", "")))
    if manifest.stage == "dpo" and manifest.parent:
        grid += (str(Path(manifest.parent).parent),)
    return grid


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
        if "evalsuite.json" in filenames or "config.json" in filenames:
            dirnames[:] = []
            found.append(inspect(root, Path(dirpath)))
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not d.startswith("checkpoint-"))
    return sorted(found, key=lambda c: ({"base": 0, "hf": 0, "sft": 1, "dpo": 2}.get(c.stage, 3), c.name))
