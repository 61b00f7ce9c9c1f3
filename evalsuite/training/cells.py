"""The life of one trained cell, shared by SFT and DPO.

A cell trains inside `OUT/<stage>/.work/<cell>/`, checkpointing every `save_steps`; the finished
checkpoint is moved into `OUT/<stage>/<cell>/` in one rename, with `evalsuite.json` written before the
move. So a cell dir with a manifest is always complete, a re-run skips it (after checking its run key),
and an interrupted cell resumes from its last complete checkpoint (one whose `trainer_state.json`,
written last by `Trainer`, parses).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from evalsuite.errors import ConfigError
from evalsuite.manifest import CheckpointManifest, read_manifest, write_manifest

RUN_KEY_FILE = "evalsuite-run-key.json"
TRAIN_LOG_CSV = "train_log.csv"
Log = Callable[[str], None]


@dataclass
class CellResult:
    path: Path
    skipped: bool
    manifest: CheckpointManifest


@dataclass
class CellDirs:
    name: str
    out: Path  # the published cell
    work: Path  # where it trains

    @classmethod
    def of(cls, output_dir: Path, stage: str, name: str) -> "CellDirs":
        return cls(name, output_dir / stage / name, output_dir / stage / ".work" / name)

    @property
    def label(self) -> str:
        """`sft/lp0_lr1`, `dpo/lp0_lr1`: what log lines call the cell."""
        return f"{self.out.parent.name}/{self.name}"


def run_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def finished(dirs: CellDirs, key: str, *, force: bool, retrain_changed: bool, log: Log) -> CellResult | None:
    """The finished cell if it was trained with these settings; None when it must (re)train."""
    existing = read_manifest(dirs.out) if dirs.out.is_dir() else None
    if existing is None or force:
        return None
    if existing.hyperparameters.get("run_key") == key:
        log(f"{dirs.label}: already trained, skipping ({dirs.out})")
        return CellResult(dirs.out, True, existing)
    if not retrain_changed:
        raise ConfigError(f"{dirs.out} was trained with different settings: use --force to retrain, or another output_dir")
    log(f"{dirs.label}: trained with different settings, retraining")
    return None


def complete_checkpoints(work: Path) -> list[Path]:
    """Checkpoints `Trainer` finished writing, oldest first."""
    done = []
    for ckpt in work.glob("checkpoint-*"):
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
            done.append(ckpt)
        except (OSError, ValueError):
            continue
    return sorted(done, key=lambda p: int(p.name.split("-")[-1]))


def prepare_work_dir(work: Path, key: str, *, fresh: bool, replace_changed: bool) -> Path | None:
    """Create or reuse the work dir; the last complete checkpoint to resume from, if any. An interrupted
    run with other settings is an error unless `replace_changed`; `fresh` always starts over."""
    key_file = work / RUN_KEY_FILE
    if work.exists():
        try:
            saved = json.loads(key_file.read_text()).get("run_key")
        except (OSError, ValueError):
            saved = None  # no readable key: nothing trustworthy to resume
        if fresh or saved != key:
            if saved is not None and saved != key and not (fresh or replace_changed):
                raise ConfigError(
                    f"{work} holds an interrupted run with different settings: re-run with --force to discard it"
                )
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    key_file.write_text(json.dumps({"run_key": key}))
    good = complete_checkpoints(work)
    for stale in work.glob("checkpoint-*"):  # killed mid-save: Trainer cannot resume from these
        if stale not in good:
            shutil.rmtree(stale, ignore_errors=True)
    return good[-1] if good else None



class WallClock(TrainerCallback):
    """Training wall time summed over interrupted attempts: saved beside each checkpoint."""

    FILE = "evalsuite-wall-time.json"

    def __init__(self, work: Path) -> None:
        self.work, self.before, self.t0 = work, 0.0, time.perf_counter()

    def start(self, resume: Path | None) -> None:
        self.t0 = time.perf_counter()
        if resume is not None and (resume / self.FILE).is_file():
            self.before = json.loads((resume / self.FILE).read_text())["seconds"]

    def total(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def on_save(self, args, state, control, **kwargs):
        ckpt = self.work / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            (ckpt / self.FILE).write_text(json.dumps({"seconds": self.total()}))


def train_and_publish(
    trainer: Any,
    dirs: CellDirs,
    resume: Path | None,
    wall: WallClock,
    *,
    tokenizer: Any,
    lora: bool,
    manifest: Callable[[Any, float], CheckpointManifest],
    log: Log,
) -> CellResult:
    """Train (resuming if asked), save the final weights, write the manifest and the logged curves, and
    publish the cell in one rename. `manifest(train_output, wall_seconds)` builds the manifest."""
    wall.start(resume)
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = wall.total()
    final = dirs.work / "final"
    if final.exists() and trainer.accelerator.is_main_process:
        shutil.rmtree(final)
    trainer.accelerator.wait_for_everyone()
    _save_final(trainer, final, lora=lora)
    built = None
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(final))
        _write_log_csv(trainer.state.log_history, final / TRAIN_LOG_CSV)
        built = manifest(output, elapsed)
        write_manifest(final, built)
        if dirs.out.exists():
            shutil.rmtree(dirs.out)
        dirs.out.parent.mkdir(parents=True, exist_ok=True)
        final.rename(dirs.out)  # one rename: the cell dir appears complete or not at all
        shutil.rmtree(dirs.work, ignore_errors=True)
        log(f"{dirs.label}: done in {elapsed:.0f}s -> {dirs.out}")
    trainer.accelerator.wait_for_everyone()
    return CellResult(dirs.out, False, built or read_manifest(dirs.out))


def _save_final(trainer: Any, final: Path, lora: bool) -> None:
    if not lora:
        trainer.save_model(str(final))
        return
    # LoRA: keep the adapter, and save merged weights so every backend (vLLM included) loads the cell as is.
    trainer.save_model(str(final / "adapter"))
    if trainer.accelerator.is_main_process:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(str(final), safe_serialization=True)


def _write_log_csv(history: list[dict[str, Any]], path: Path) -> None:
    import pandas as pd

    pd.DataFrame(history).to_csv(path, index=False)


