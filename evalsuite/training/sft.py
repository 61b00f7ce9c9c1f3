"""Train one (λp, λr) cell, or a grid of them, into `OUT/sft/lp{λp}_lr{λr}/`.

Durability: a cell trains inside `OUT/sft/.work/<cell>/`, checkpointing every `save_steps`; the
finished checkpoint is moved into `OUT/sft/<cell>/` in one rename, with `evalsuite.json` written
before the move. So a cell dir with a manifest is always complete, a re-run skips it (after checking
it was trained with the same settings), and an interrupted cell resumes from its last complete
checkpoint (one whose `trainer_state.json`, written last by `Trainer`, parses).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import TrainerCallback

from evalsuite.errors import ConfigError
from evalsuite.manifest import CheckpointManifest, read_manifest, write_manifest
from evalsuite.models.checkpoint import CHECKPOINT_FILE_SUFFIXES, check_checkpoint_dir
from evalsuite.paths import fingerprint_dir
from evalsuite.training.config import SFTRunConfig, cell_name
from evalsuite.training.data import PreparedData, prepare_data

logger = logging.getLogger(__name__)
RUN_KEY_FILE = "evalsuite-run-key.json"
TRAIN_LOG_CSV = "train_log.csv"
Log = Callable[[str], None]


@dataclass
class CellResult:
    path: Path
    skipped: bool
    manifest: CheckpointManifest


@dataclass
class BaseCheckpoint:
    """The resolved base model every cell starts from."""

    name: str  # as the user wrote it
    path: Path
    fingerprint: str


def resolve_base(config: SFTRunConfig) -> BaseCheckpoint:
    from evalsuite.models import resolve_model

    path = check_checkpoint_dir(resolve_model(config.model))
    return BaseCheckpoint(config.model, path, fingerprint_dir(path, CHECKPOINT_FILE_SUFFIXES))


def torch_dtype_and_autocast(precision: str) -> tuple[torch.dtype, bool]:
    if precision == "auto":
        gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        precision = "bf16-autocast" if gpu_bf16 else "fp32"
    return {"fp32": (torch.float32, False), "bf16": (torch.bfloat16, False),
            "bf16-autocast": (torch.float32, True)}[precision]


def run_key(config: SFTRunConfig, base: BaseCheckpoint, data_fingerprint: str) -> str:
    """What makes two trainings of a cell the same: everything except where the output goes."""
    payload = config.model_dump(mode="json", exclude={"output_dir"})
    payload.update(base_fingerprint=base.fingerprint, data_fingerprint=data_fingerprint)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def device_defaults() -> dict[str, Any]:
    """Without an accelerator, Trainer must be told it is on CPU, else `torchrun`/`accelerate launch`
    processes silently train as independent single processes (accelerate only sets up gloo DDP for cpu)."""
    on_cpu = not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
                  or torch.backends.mps.is_available())
    return {"use_cpu": on_cpu, "dataloader_pin_memory": not on_cpu}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def gradient_accumulation(config: SFTRunConfig) -> int:
    per_step = config.training_args()["per_device_train_batch_size"] * world_size()
    if config.global_batch_size % per_step:
        raise ConfigError(
            f"global_batch_size {config.global_batch_size} is not a multiple of per_device_train_batch_size × "
            f"processes = {per_step}"
        )
    return config.global_batch_size // per_step


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


def _prepare_work_dir(work: Path, key: str, *, fresh: bool, replace_changed: bool) -> Path | None:
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


def _load_model(base: BaseCheckpoint, dtype: torch.dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM

    # Load in the training dtype directly: casting after load would also round the RoPE buffers.
    return AutoModelForCausalLM.from_pretrained(str(base.path), dtype=dtype, trust_remote_code=trust_remote_code)


def load_tokenizer(base: BaseCheckpoint, trust_remote_code: bool = False):
    from evalsuite.backends.loading import load_tokenizer as _load

    tok = _load(base.path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def config_data(config: SFTRunConfig, tokenizer: Any) -> PreparedData:
    return prepare_data(config.dataset, tokenizer, config.prompt_format, config.max_length, config.truncation)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def train_cell(
    config: SFTRunConfig,
    *,
    base: BaseCheckpoint | None = None,
    data: PreparedData | None = None,
    tokenizer: Any = None,
    force: bool = False,
    retrain_changed: bool = False,
    log: Log = logger.info,
) -> CellResult:
    """Train (or skip, or resume) the cell `config.lambda_p, config.lambda_r`. A finished cell trained
    with other settings is an error, unless `retrain_changed` (or `force`, which retrains every cell)."""
    from evalsuite.training.trainer import WITConfig, WITTrainer

    base = base or resolve_base(config)
    tokenizer = tokenizer or load_tokenizer(base, config.trust_remote_code)
    data = data or config_data(config, tokenizer)
    name = cell_name(config.lambda_p, config.lambda_r)
    out = config.output_dir / "sft" / name
    work = config.output_dir / "sft" / ".work" / name
    key = run_key(config, base, data.fingerprint)

    existing = read_manifest(out) if out.is_dir() else None
    if existing is not None and not force:
        if existing.hyperparameters.get("run_key") == key:
            log(f"{name}: already trained, skipping ({out})")
            return CellResult(out, True, existing)
        if not retrain_changed:
            raise ConfigError(f"{out} was trained with different settings: use --force to retrain, or another output_dir")
        log(f"{name}: trained with different settings, retraining")

    resume = _prepare_work_dir(work, key, fresh=force, replace_changed=retrain_changed)
    dtype, autocast = torch_dtype_and_autocast(config.precision)
    args = WITConfig(
        output_dir=str(work),
        seed=config.seed,
        data_seed=config.seed,
        lambda_p=config.lambda_p,
        lambda_r=config.lambda_r,
        max_length=None,  # truncation already applied by prepare_data
        bf16=autocast,
        gradient_accumulation_steps=gradient_accumulation(config),
        include_num_input_tokens_seen="non_padding",
        **{**device_defaults(), **config.training_args()},
    )
    peft_config = None
    if config.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                                 target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    model = _load_model(base, dtype, config.trust_remote_code)
    wall = _WallClock(work)
    trainer = WITTrainer(model, args=args, processing_class=tokenizer, train_dataset=data.to_dataset(),
                         peft_config=peft_config, callbacks=[wall])
    log(f"{name}: training {len(data.examples)} examples, {config.global_batch_size} per step"
        + (f", resuming from {resume.name}" if resume else ""))
    wall.start(resume)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = wall.total()

    final = work / "final"
    if final.exists() and trainer.accelerator.is_main_process:
        shutil.rmtree(final)
    trainer.accelerator.wait_for_everyone()
    _save_final(trainer, final, lora=peft_config is not None)
    manifest = None
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(final))
        history = trainer.state.log_history
        _write_log_csv(history, final / TRAIN_LOG_CSV)
        step_losses = [h["loss"] for h in history if "loss" in h]
        manifest = CheckpointManifest(
            stage="sft",
            base_model=base.name,
            parent=str(base.path.resolve()),
            prompt_format=config.prompt_format,
            dtype={torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype],
            source={"dataset": config.dataset.model_dump(mode="json"), "dataset_fingerprint": data.fingerprint,
                    "data_stats": data.stats, "base_fingerprint": base.fingerprint},
            hyperparameters=_json_safe({
                "lambda_p": config.lambda_p, "lambda_r": config.lambda_r, "seed": config.seed,
                "precision": config.precision, "global_batch_size": config.global_batch_size,
                "max_length": config.max_length, "truncation": config.truncation,
                "lora": config.lora.model_dump() if config.lora else None, "run_key": key,
                "trainer": {k: v for k, v in args.to_dict().items() if k not in ("output_dir", "logging_dir")},
            }),
            metrics={
                "train_loss": result.training_loss,  # mean over all steps (Trainer's figure)
                "final_loss": step_losses[-1] if step_losses else None,
                "steps": trainer.state.global_step,
                "epochs": trainer.state.epoch,
                "tokens_seen": int(trainer.state.num_input_tokens_seen),
                "wall_time_s": round(elapsed, 2),
                "world_size": trainer.accelerator.num_processes,
            },
            cell={"lambda_p": config.lambda_p, "lambda_r": config.lambda_r},
        )
        write_manifest(final, manifest)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        final.rename(out)  # one rename: the cell dir appears complete or not at all
        shutil.rmtree(work, ignore_errors=True)
        log(f"{name}: done in {elapsed:.0f}s, final loss {manifest.metrics['final_loss']}, -> {out}")
    trainer.accelerator.wait_for_everyone()
    return CellResult(out, False, manifest or read_manifest(out))


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


class _WallClock(TrainerCallback):
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


def train_grid(
    config: SFTRunConfig,
    cells: list[tuple[float, float]],
    *,
    force: bool = False,
    retrain_changed: bool = False,
    log: Log = logger.info,
) -> list[CellResult]:
    """Train every cell in order from the same base, data and settings. Finished cells are skipped, an
    interrupted one resumes; the data is tokenised once for all cells."""
    base = resolve_base(config)
    tokenizer = load_tokenizer(base, config.trust_remote_code)
    data = config_data(config, tokenizer)
    log(f"data: {data.stats}")
    results = []
    for i, (lp, lr) in enumerate(cells, 1):
        log(f"[cell {i}/{len(cells)}] lambda_p={lp:g} lambda_r={lr:g}")
        results.append(train_cell(config.with_cell(lp, lr), base=base, data=data, tokenizer=tokenizer,
                                  force=force, retrain_changed=retrain_changed, log=log))
    return results
