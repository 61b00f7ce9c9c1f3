"""DPO on SFT cells: `OUT/sft/<cell>/` → `OUT/dpo/<cell>/`, identical data, settings and seed for every cell.

Each cell's preference pairs are formatted exactly as that cell's SFT prompts (its manifest's
`prompt_format`), the reference model is the SFT cell itself (or, with LoRA, the cell with the adapter
disabled), and the manifest's parent is the SFT cell, so lineage reads base → SFT cell → DPO cell.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from evalsuite.errors import ConfigError
from evalsuite.manifest import CheckpointManifest, read_manifest
from evalsuite.models.checkpoint import CHECKPOINT_FILE_SUFFIXES, adapter_base, check_checkpoint_dir, is_adapter_only
from evalsuite.paths import fingerprint_dir
from evalsuite.training.config import LoraSpec, Precision, check_training_fields
from evalsuite.training.data import DEMO_INSTRUCTIONS, DatasetSpec, adds_bos

if TYPE_CHECKING:  # the cell machinery imports torch and transformers: not needed to validate a config
    from evalsuite.training.cells import CellResult, Log

# Written by scripts/make_demo_data.py: correct-vs-wrong and constraint-following-vs-violating pairs.
DEMO_PREFERENCES = DEMO_INSTRUCTIONS.with_name("demo_preferences.jsonl")

logger = logging.getLogger(__name__)

# WIT paper (arXiv 2507.07817) DPO settings: lr 5e-7, warm-up ratio 0.1, 2 epochs, weight decay 0, batch 32;
# β is not stated, so TRL's default 0.1.
PAPER_DPO_DEFAULTS: dict[str, Any] = {
    "learning_rate": 5e-7,
    "warmup_steps": 0.1,
    "num_train_epochs": 2,
    "weight_decay": 0.0,
    "per_device_train_batch_size": 8,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 50,
    "save_total_limit": 2,
    "report_to": "none",
}
RESERVED_DPO_FIELDS = {
    "output_dir": "output_dir", "seed": "seed", "data_seed": "seed", "bf16": "precision", "fp16": "precision",
    "beta": "beta", "max_length": "max_length", "precompute_ref_log_probs": "precompute_ref_log_probs",
    "gradient_accumulation_steps": "global_batch_size", "resume_from_checkpoint": "(automatic)",
    "model_init_kwargs": "precision",
}


class DPORunConfig(BaseModel):
    """The DPO settings every SFT cell gets."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetSpec = Field(default_factory=lambda: DatasetSpec(path=str(DEMO_PREFERENCES)))
    output_dir: Path = Path("runs/wit")
    beta: float = Field(default=0.1, gt=0)
    max_length: int = Field(default=1024, ge=8)
    seed: int = 23
    precision: Precision = "auto"
    global_batch_size: int = Field(default=32, ge=1)
    lora: LoraSpec | None = None
    precompute_ref_log_probs: bool = False
    trust_remote_code: bool = False
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dataset", mode="before")
    @classmethod
    def _default_path(cls, value: Any) -> Any:
        # `dataset.limit=8` alone must still mean the demo preference set, not DatasetSpec's own default.
        if isinstance(value, dict) and "path" not in value:
            return {**value, "path": str(DEMO_PREFERENCES)}
        return value

    @field_validator("training")
    @classmethod
    def _check_training(cls, value: dict[str, Any]) -> dict[str, Any]:
        from trl import DPOConfig

        check_training_fields(value, DPOConfig, RESERVED_DPO_FIELDS)
        return value

    def training_args(self) -> dict[str, Any]:
        return {**PAPER_DPO_DEFAULTS, **self.training}


def sft_parent(cell: Path) -> CheckpointManifest:
    """The manifest of an SFT cell DPO starts from; a clear error for anything else."""
    adapter_base(cell) if is_adapter_only(cell) else check_checkpoint_dir(cell)
    manifest = read_manifest(cell)
    if manifest is None:
        raise ConfigError(f"{cell} has no evalsuite.json: DPO starts from SFT cells trained by `evalsuite train`")
    if manifest.stage != "sft":
        raise ConfigError(f"{cell} is a {manifest.stage} checkpoint, not an SFT cell")
    return manifest


def train_dpo_cell(
    config: DPORunConfig, sft_cell: Path, *, force: bool = False, retrain_changed: bool = False,
    log: Log = logger.info,
) -> CellResult:
    from trl import DPOConfig

    from evalsuite.training.cells import (
        CellDirs,
        CellPlan,
        device_defaults,
        gradient_accumulation,
        run_cell,
        run_key,
        run_metrics,
        trainer_settings,
    )
    from evalsuite.training.dpo_trainer import EvalsuiteDPOTrainer
    from evalsuite.training.preference import prepare_preferences
    from evalsuite.training.sft import (
        DTYPE_NAMES,
        load_model,
        load_tokenizer,
        lora_config,
        torch_dtype_and_autocast,
    )

    parent = sft_parent(sft_cell)
    tokenizer = load_tokenizer(sft_cell, config.trust_remote_code)
    data = prepare_preferences(config.dataset, tokenizer, parent.prompt_format, config.max_length)
    parent_fp = fingerprint_dir(sft_cell, CHECKPOINT_FILE_SUFFIXES)
    dirs = CellDirs.of(config.output_dir, "dpo", sft_cell.name)
    key = run_key({**config.model_dump(mode="json", exclude={"output_dir"}), "parent_fingerprint": parent_fp,
                   "data_fingerprint": data.fingerprint})
    dtype, autocast = torch_dtype_and_autocast(config.precision)
    continues_adapter = config.lora is not None and is_adapter_only(sft_cell)

    def trainer(callbacks: list[Any]) -> EvalsuiteDPOTrainer:
        args = DPOConfig(
            output_dir=str(dirs.work), seed=config.seed, data_seed=config.seed, beta=config.beta, max_length=None,
            bf16=autocast, precompute_ref_log_probs=config.precompute_ref_log_probs,
            gradient_accumulation_steps=gradient_accumulation(config),
            **{**device_defaults(), **config.training_args()},
        )
        # Reference = the SFT cell: a frozen copy, or (LoRA) the same weights with the new adapter disabled. An SFT
        # cell kept as its adapter is trained further as that adapter: TRL then keeps a frozen copy of it ("ref")
        # as the reference, so the reference is the SFT cell there too, never the bare base model. With
        # precomputed reference log-probs TRL scores the data with the untrained policy first, so no copy is kept.
        model = load_model(sft_cell, dtype, config.trust_remote_code, "train" if continues_adapter else "merge")
        keep_ref = config.lora is None and not config.precompute_ref_log_probs
        ref = load_model(sft_cell, dtype, config.trust_remote_code) if keep_ref else None
        return EvalsuiteDPOTrainer(model, ref_model=ref, args=args, train_dataset=data.to_dataset(),
                                   processing_class=tokenizer, callbacks=callbacks,
                                   peft_config=None if continues_adapter else lora_config(config.lora))

    def manifest(trainer: Any, result: Any, elapsed: float) -> CheckpointManifest:
        logged = [h for h in trainer.state.log_history if "rewards/margins" in h]
        last = logged[-1] if logged else {}
        return CheckpointManifest(
            stage="dpo", base_model=parent.base_model, parent=str(sft_cell.resolve()),
            # The pairs were encoded as the SFT cell's prompts (same format, same tokenizer).
            prompt_format=parent.prompt_format, add_bos_token=adds_bos(tokenizer, parent.prompt_format),
            dtype=DTYPE_NAMES[dtype],
            source={"dataset": config.dataset.model_dump(mode="json"), "dataset_fingerprint": data.fingerprint,
                    "data_stats": data.stats, "parent_fingerprint": parent_fp},
            hyperparameters={"beta": config.beta, "seed": config.seed, "precision": config.precision,
                             "global_batch_size": config.global_batch_size, "max_length": config.max_length,
                             "lora": config.lora.model_dump() if config.lora else None,
                             "lora_continues_sft_adapter": continues_adapter,
                             "precompute_ref_log_probs": config.precompute_ref_log_probs, "run_key": key,
                             "trainer": trainer_settings(trainer.args)},
            metrics={**run_metrics(trainer, result, elapsed), "reward_accuracy": last.get("rewards/accuracies"),
                     "reward_margin": last.get("rewards/margins")},
            cell=getattr(parent, "cell", None),
        )

    return run_cell(CellPlan(dirs, key, tokenizer, config.lora is not None, f"DPO on {len(data.examples)} pairs",
                             trainer, manifest, config.training_args(),
                             merged=config.lora is None or config.lora.merged),
                    force=force, retrain_changed=retrain_changed, log=log)


def sft_root(from_dir: Path) -> Path:
    """`OUT/sft` given `OUT` or `OUT/sft` (or any folder of SFT cells)."""
    root = from_dir / "sft" if (from_dir / "sft").is_dir() else from_dir
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    return root


def sft_cells(from_dir: Path, cells: list[tuple[float, float]] | None = None) -> list[Path]:
    """The SFT cells under `from_dir` (an `OUT/sft` folder or `OUT`): those in `cells`, in that order, or all
    of them by (λp, λr)."""
    from evalsuite.training.config import cell_name

    root = sft_root(from_dir)
    found = {p.name: p for p in root.iterdir()
             if p.is_dir() and not p.name.startswith(".") and (p / "evalsuite.json").is_file()}
    if cells is not None:
        missing = [cell_name(lp, lr) for lp, lr in cells if cell_name(lp, lr) not in found]
        if missing:
            raise ConfigError(f"no finished SFT cell {', '.join(missing)} under {root}")
        return [found[cell_name(lp, lr)] for lp, lr in cells]
    if not found:
        raise ConfigError(f"no finished SFT cells (folders with evalsuite.json) under {root}")
    return sorted(found.values(), key=_grid_position)


def _grid_position(cell: Path) -> tuple[float, float, str]:
    lambdas = getattr(read_manifest(cell), "cell", None) or {}
    return (lambdas.get("lambda_p", float("inf")), lambdas.get("lambda_r", float("inf")), cell.name)


def train_dpo_grid(
    config: DPORunConfig, from_dir: Path, cells: list[tuple[float, float]] | None = None, *,
    force: bool = False, retrain_changed: bool = False, log: Log = logger.info,
) -> list[CellResult]:
    """DPO on every SFT cell with identical data, settings and seed; finished cells are skipped."""
    targets = sft_cells(from_dir, cells)
    results = []
    for i, cell in enumerate(targets, 1):
        log(f"[dpo {i}/{len(targets)}] {cell.name}")
        results.append(train_dpo_cell(config, cell, force=force, retrain_changed=retrain_changed, log=log))
    return results
