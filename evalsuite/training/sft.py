"""Train one (λp, λr) cell, or a grid of them, into `OUT/sft/lp{λp}_lr{λr}/` (the cell life cycle:
work dir, resume, atomic publish, is `evalsuite.training.cells`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evalsuite.manifest import CheckpointManifest
from evalsuite.models.checkpoint import CHECKPOINT_FILE_SUFFIXES, check_checkpoint_dir
from evalsuite.paths import fingerprint_dir
from evalsuite.training.cells import (
    CellDirs,
    CellPlan,
    CellResult,
    Log,
    device_defaults,
    gradient_accumulation,
    run_cell,
    run_key,
    run_metrics,
    trainer_settings,
)
from evalsuite.training.config import SFTRunConfig, cell_name
from evalsuite.training.data import PreparedData, adds_bos, prepare_data

logger = logging.getLogger(__name__)


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


DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}


def load_model(path: Path, dtype: torch.dtype, trust_remote_code: bool, adapter: str = "merge"):
    """A checkpoint's model in the training dtype. An adapter-only cell is its base with the adapter merged in
    (`adapter="merge"`) or kept as a trainable peft adapter (`"train"`)."""
    from transformers import AutoModelForCausalLM

    from evalsuite.models.checkpoint import adapter_base, is_adapter_only

    weights = adapter_base(path) if is_adapter_only(path) else path
    # Load in the training dtype directly: casting after load would also round the RoPE buffers.
    model = AutoModelForCausalLM.from_pretrained(str(weights), dtype=dtype, trust_remote_code=trust_remote_code)
    if weights == path:
        return model
    if adapter == "merge":
        from evalsuite.models.merge import merge_adapter

        return merge_adapter(model, path)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(path), is_trainable=True)


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    """The checkpoint's tokenizer, padding with EOS when it has no pad token (collators need one)."""
    from evalsuite.backends.loading import load_tokenizer as _load

    tok = _load(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def config_data(config: SFTRunConfig, tokenizer: Any) -> PreparedData:
    return prepare_data(config.dataset, tokenizer, config.prompt_format, config.max_length, config.truncation)


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
    tokenizer = tokenizer or load_tokenizer(base.path, config.trust_remote_code)
    data = data or config_data(config, tokenizer)
    dirs = CellDirs.of(config.output_dir, "sft", cell_name(config.lambda_p, config.lambda_r))
    key = run_key({**config.model_dump(mode="json", exclude={"output_dir"}),
                   "base_fingerprint": base.fingerprint, "data_fingerprint": data.fingerprint})
    dtype, autocast = torch_dtype_and_autocast(config.precision)

    def trainer(callbacks: list[Any]) -> WITTrainer:
        args = WITConfig(
            output_dir=str(dirs.work),
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
        return WITTrainer(load_model(base.path, dtype, config.trust_remote_code), args=args, processing_class=tokenizer,
                          train_dataset=data.to_dataset(), peft_config=lora_config(config.lora), callbacks=callbacks)

    def manifest(trainer: Any, result: Any, elapsed: float) -> CheckpointManifest:
        return CheckpointManifest(
            stage="sft",
            base_model=base.name,
            parent=str(base.path.resolve()),
            prompt_format=config.prompt_format,
            add_bos_token=adds_bos(tokenizer, config.prompt_format),
            dtype=DTYPE_NAMES[dtype],
            source={"dataset": config.dataset.model_dump(mode="json"), "dataset_fingerprint": data.fingerprint,
                    "data_stats": data.stats, "base_fingerprint": base.fingerprint},
            hyperparameters={
                "lambda_p": config.lambda_p, "lambda_r": config.lambda_r, "seed": config.seed,
                "precision": config.precision, "global_batch_size": config.global_batch_size,
                "max_length": config.max_length, "truncation": config.truncation,
                "lora": config.lora.model_dump() if config.lora else None, "run_key": key,
                "trainer": trainer_settings(trainer.args),
            },
            metrics={**run_metrics(trainer, result, elapsed), "tokens_seen": int(trainer.state.num_input_tokens_seen)},
            cell={"lambda_p": config.lambda_p, "lambda_r": config.lambda_r},
        )

    summary = f"training {len(data.examples)} examples, {config.global_batch_size} per step"
    return run_cell(CellPlan(dirs, key, tokenizer, config.lora is not None, summary, trainer, manifest,
                             config.training_args(), merged=config.lora is None or config.lora.merged),
                    force=force, retrain_changed=retrain_changed, log=log)


def lora_config(lora: Any):
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


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
    tokenizer = load_tokenizer(base.path, config.trust_remote_code)
    data = config_data(config, tokenizer)
    log(f"data: {data.stats}")
    results = []
    for i, (lp, lr) in enumerate(cells, 1):
        log(f"[cell {i}/{len(cells)}] lambda_p={lp:g} lambda_r={lr:g}")
        results.append(train_cell(config.with_cell(lp, lr), base=base, data=data, tokenizer=tokenizer,
                                  force=force, retrain_changed=retrain_changed, log=log))
    return results
