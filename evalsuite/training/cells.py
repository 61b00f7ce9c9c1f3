"""The life of one trained cell, shared by SFT and DPO: `run_cell` runs a stage's `CellPlan`.

A cell trains inside `OUT/<stage>/.work/<cell>/`, checkpointing every `save_steps`; the finished
checkpoint is moved into `OUT/<stage>/<cell>/` in one rename, with `evalsuite.json` written before the
move. So a cell dir with a manifest is always complete, a re-run skips it (after checking its run key),
and an interrupted cell resumes from its last complete checkpoint (one whose `trainer_state.json`,
written last by `Trainer`, parses). Under data parallelism only the main process touches the work dir.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
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


class BatchConfig(Protocol):
    """What both stages' run configs say about the batch."""

    global_batch_size: int

    def training_args(self) -> dict[str, Any]: ...


def device_defaults() -> dict[str, Any]:
    """Without an accelerator, Trainer must be told it is on CPU, else `torchrun`/`accelerate launch`
    processes silently train as independent single processes (accelerate only sets up gloo DDP for cpu)."""
    on_cpu = not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
                  or torch.backends.mps.is_available())
    return {"use_cpu": on_cpu, "dataloader_pin_memory": not on_cpu}


def process_state(training_args: dict[str, Any]) -> Any:
    """accelerate's view of this process (main or not, how many processes), usable before any Trainer
    exists; set up as Trainer sets it up (`use_cpu` without an accelerator, the user's `ddp_timeout` and
    `ddp_backend`), so it agrees with Trainer. The first call starts the process group: Trainer does not start
    it again, so its settings must be the user's here (main-process work such as a LoRA merge runs while the
    other ranks wait at a barrier, under that timeout)."""
    from datetime import timedelta

    from accelerate import PartialState

    return PartialState(cpu=device_defaults()["use_cpu"], backend=training_args.get("ddp_backend"),
                        timeout=timedelta(seconds=int(training_args.get("ddp_timeout", 1800))))


def gradient_accumulation(config: BatchConfig) -> int:
    """Micro-batches per optimizer step so that `global_batch_size` sequences, summed over all processes,
    make one step."""
    args = config.training_args()
    per_step = args["per_device_train_batch_size"] * process_state(args).num_processes
    if config.global_batch_size % per_step:
        raise ConfigError(
            f"global_batch_size {config.global_batch_size} is not a multiple of per_device_train_batch_size × "
            f"processes = {per_step}"
        )
    return config.global_batch_size // per_step


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


def prepare_work_dir(work: Path, key: str, *, fresh: bool, replace_changed: bool, state: Any) -> Path | None:
    """Create or reuse the work dir; the last complete checkpoint to resume from, if any. An interrupted
    run with other settings is an error unless `replace_changed`; `fresh` always starts over. Every process
    decides (so all raise alike), the main process alone changes the folder, the others then read it
    (`state`: `process_state`)."""
    discard = _discard_work_dir(work, key, fresh=fresh, replace_changed=replace_changed)
    state.wait_for_everyone()  # all have read the old run key before the main process replaces it
    if state.is_main_process:
        _reset_work_dir(work, key, discard)
    state.wait_for_everyone()
    good = complete_checkpoints(work)
    return good[-1] if good else None


def _discard_work_dir(work: Path, key: str, *, fresh: bool, replace_changed: bool) -> bool:
    """Whether an existing work dir must go; an error when it holds another run that may not be discarded."""
    if not work.exists():
        return False
    try:
        saved = json.loads((work / RUN_KEY_FILE).read_text()).get("run_key")
    except (OSError, ValueError):
        saved = None  # no readable key: nothing trustworthy to resume
    if saved is not None and saved != key and not (fresh or replace_changed):
        raise ConfigError(f"{work} holds an interrupted run with different settings: re-run with --force to discard it")
    return fresh or saved != key


def _reset_work_dir(work: Path, key: str, discard: bool) -> None:
    if discard:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / RUN_KEY_FILE).write_text(json.dumps({"run_key": key}))
    good = complete_checkpoints(work)
    for stale in work.glob("checkpoint-*"):  # killed mid-save: Trainer cannot resume from these
        if stale not in good:
            shutil.rmtree(stale, ignore_errors=True)


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


@dataclass(frozen=True)
class CellPlan:
    """A stage's own part of one cell (what differs between SFT and DPO); `run_cell` does the rest."""

    dirs: CellDirs
    key: str  # the run key: a finished cell with another key was trained with other settings
    tokenizer: Any  # saved with the weights
    lora: bool
    summary: str  # what is trained, for the log line: "DPO on 40 pairs"
    # callbacks to attach -> the trainer, writing into `dirs.work` (loads the model: only called to train)
    build_trainer: Callable[[list[TrainerCallback]], Any]
    # (trainer, its train() output, wall seconds over all attempts) -> the manifest
    build_manifest: Callable[[Any, Any, float], CheckpointManifest]
    training_args: dict[str, Any]  # the stage's Trainer arguments (the process group's settings come from them)
    merged: bool = True  # LoRA: also save the merged weights (False: the cell is the adapter alone)


def run_cell(plan: CellPlan, *, force: bool, retrain_changed: bool, log: Log) -> CellResult:
    """Skip the cell if it is finished with these settings; else train it (resuming an interrupted run)
    and publish it."""
    dirs = plan.dirs
    if (done := finished(dirs, plan.key, force=force, retrain_changed=retrain_changed, log=log)) is not None:
        return done
    resume = prepare_work_dir(dirs.work, plan.key, fresh=force, replace_changed=retrain_changed,
                              state=process_state(plan.training_args))
    wall = WallClock(dirs.work)
    trainer = plan.build_trainer([wall])
    log(f"{dirs.label}: {plan.summary}" + (f", resuming from {resume.name}" if resume else ""))
    return _train_and_publish(trainer, plan, resume, wall, log)


def run_metrics(trainer: Any, output: Any, elapsed: float) -> dict[str, Any]:
    """The metrics every cell's manifest has. `final_loss` is the last logged step loss, `train_loss` the
    mean over all steps (Trainer's figure)."""
    step_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "train_loss": output.training_loss,
        "final_loss": step_losses[-1] if step_losses else None,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "wall_time_s": round(elapsed, 2),
        "world_size": trainer.accelerator.num_processes,
    }


def trainer_settings(args: Any) -> dict[str, Any]:
    """The Trainer's arguments as JSON, for the manifest (without the paths, which change on publish)."""
    settings = {k: v for k, v in args.to_dict().items() if k not in ("output_dir", "logging_dir")}
    return json.loads(json.dumps(settings, default=str))


def _train_and_publish(trainer: Any, plan: CellPlan, resume: Path | None, wall: WallClock, log: Log) -> CellResult:
    """Train (resuming if asked), save the final weights, write the manifest and the logged curves, and
    publish the cell in one rename."""
    dirs = plan.dirs
    wall.start(resume)
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = wall.total()
    final = dirs.work / "final"
    if final.exists() and trainer.accelerator.is_main_process:
        shutil.rmtree(final)
    trainer.accelerator.wait_for_everyone()
    _save_final(trainer, final, lora=plan.lora, merged=plan.merged)
    built = None
    if trainer.accelerator.is_main_process:
        plan.tokenizer.save_pretrained(str(final))
        _write_log_csv(trainer.state.log_history, final / TRAIN_LOG_CSV)
        built = plan.build_manifest(trainer, output, elapsed)
        write_manifest(final, built)
        if dirs.out.exists():
            shutil.rmtree(dirs.out)
        dirs.out.parent.mkdir(parents=True, exist_ok=True)
        final.rename(dirs.out)  # one rename: the cell dir appears complete or not at all
        shutil.rmtree(dirs.work, ignore_errors=True)
        log(f"{dirs.label}: done in {elapsed:.0f}s -> {dirs.out}")
    trainer.accelerator.wait_for_everyone()
    return CellResult(dirs.out, False, built or read_manifest(dirs.out))


def _save_final(trainer: Any, final: Path, lora: bool, merged: bool = True) -> None:
    if not lora:
        trainer.save_model(str(final))
        return
    if not merged:  # the cell is the adapter itself
        trainer.save_model(str(final))
        if trainer.accelerator.is_main_process:
            _adapter_only(final)
        return
    # LoRA: keep the adapter, and save merged weights so every backend (vLLM included) loads the cell as is.
    trainer.save_model(str(final / "adapter"))
    if trainer.accelerator.is_main_process:
        shutil.rmtree(final / "adapter" / "ref", ignore_errors=True)  # DPO's frozen reference copy
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(str(final), safe_serialization=True)


def _adapter_only(folder: Path) -> None:
    """The saved adapter as a cell: DPO's frozen reference copy (peft saves it as a second adapter) is dropped, and
    the base is named by its absolute path, so the cell is found from any working directory."""
    from evalsuite.paths import write_json

    shutil.rmtree(folder / "ref", ignore_errors=True)
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    base = config.get("base_model_name_or_path")
    if base and Path(base).expanduser().is_dir():
        config["base_model_name_or_path"] = str(Path(base).expanduser().resolve())
        write_json(config_path, config)


def _write_log_csv(history: list[dict[str, Any]], path: Path) -> None:
    import pandas as pd

    pd.DataFrame(history).to_csv(path, index=False)


