"""The SFT run config (`evalsuite train sft|grid --config FILE`), validated with clear errors.

Top-level fields are the ones evalsuite itself acts on; `training:` takes any field of TRL's
`SFTConfig` / transformers' `TrainingArguments` (checked by name) on top of the paper's defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from evalsuite.configfile import ModelT, load_validated
from evalsuite.errors import ConfigError, did_you_mean
from evalsuite.models.embedded import DEFAULT_MODEL
from evalsuite.training.data import DatasetSpec, PromptFormat, Truncation

# WIT paper (arXiv 2507.07817) SFT settings: lr 2e-5, weight decay 0.1, cosine schedule with 1% warm-up,
# no packing, seed 23, global batch 64; 2 epochs is their Alpaca-Cleaned setting.
PAPER_TRAINING_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-5,
    "weight_decay": 0.1,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.01,
    "num_train_epochs": 2,
    "per_device_train_batch_size": 8,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 50,
    "save_total_limit": 2,
    "report_to": "none",
}
# Fields evalsuite sets itself; users set them through the top-level config instead.
RESERVED_TRAINING_FIELDS = {
    "output_dir": "output_dir", "seed": "seed", "data_seed": "seed", "bf16": "precision", "fp16": "precision",
    "lambda_p": "lambda_p", "lambda_r": "lambda_r", "max_length": "max_length", "packing": "(not supported)",
    "padding_free": "(not supported)", "dataset_kwargs": "dataset", "gradient_accumulation_steps": "global_batch_size",
    "resume_from_checkpoint": "(automatic)", "model_init_kwargs": "model / precision",
    "completion_only_loss": "lambda_p / lambda_r", "assistant_only_loss": "lambda_p / lambda_r",
}
Precision = Literal["auto", "fp32", "bf16", "bf16-autocast"]
GRID_VALUES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class LoraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    # Keep a merged copy of the weights beside the adapter (every tool loads the cell as is). False: the cell is
    # the adapter alone (MBs, not a model's size), evaluated as base + adapter, and a vLLM run serves all of a
    # grid's adapters from one engine.
    merged: bool = True

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("merged") is True:  # the default is left out: cells trained before it keep their run keys
            data.pop("merged")
        return data


def _lambda(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return round(float(value), 6)


class SFTRunConfig(BaseModel):
    """One SFT cell (or, with `train grid`, the settings every cell shares)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default=DEFAULT_MODEL, description="embedded model name, HF checkpoint dir, or .gguf")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    output_dir: Path = Path("runs/wit")
    prompt_format: PromptFormat = "chat_template"
    max_length: int = Field(default=1024, ge=8)
    truncation: Truncation = "drop"
    lambda_p: float = 0.0
    lambda_r: float = 1.0
    seed: int = 23
    # auto: bf16 autocast over fp32 weights on a GPU with bf16, plain fp32 elsewhere (CPUs without native
    # bf16 run it emulated). bf16 = bf16 weights and compute (fp32 optimizer states are not kept).
    precision: Precision = "auto"
    global_batch_size: int = Field(default=64, ge=1, description="sequences per optimizer step, all processes")
    lora: LoraSpec | None = None
    trust_remote_code: bool = False
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("lambda_p")
    @classmethod
    def _check_lp(cls, v: float) -> float:
        return _lambda(v, "lambda_p")

    @field_validator("lambda_r")
    @classmethod
    def _check_lr(cls, v: float) -> float:
        return _lambda(v, "lambda_r")

    @field_validator("training")
    @classmethod
    def _check_training(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_training_fields(value)  # a field check, so its problems are reported with the other fields'
        return value

    @model_validator(mode="after")
    def _check(self) -> "SFTRunConfig":
        if self.lambda_p == 0 and self.lambda_r == 0:
            raise ValueError("lambda_p and lambda_r are both 0: no token would be trained")
        return self

    def training_args(self) -> dict[str, Any]:
        return {**PAPER_TRAINING_DEFAULTS, **self.training}

    def with_cell(self, lambda_p: float, lambda_r: float) -> "SFTRunConfig":
        return SFTRunConfig.model_validate({**self.model_dump(), "lambda_p": lambda_p, "lambda_r": lambda_r})


def check_training_fields(training: dict[str, Any], config_cls: type | None = None,
                          reserved: dict[str, str] | None = None) -> None:
    """Every `training:` key must be a field of `config_cls` (default WITConfig) and not one evalsuite sets;
    one ValueError names every key that is not."""
    if config_cls is None:
        from evalsuite.training.trainer import WITConfig as config_cls
    reserved = RESERVED_TRAINING_FIELDS if reserved is None else reserved
    known = {f.name for f in dataclasses.fields(config_cls)}
    problems = []
    for key in training:
        if key in reserved:
            problems.append(f"training.{key} is set by evalsuite: use {reserved[key]} instead")
        elif key not in known:
            problems.append(f"training.{key} is not a {config_cls.__name__}/TrainingArguments field"
                            f"{did_you_mean(key, known)}")
    if problems:
        raise ValueError("; ".join(problems))


def cell_name(lambda_p: float, lambda_r: float) -> str:
    """`lp0.2_lr1`: the directory of one grid cell."""
    return f"lp{lambda_p:g}_lr{lambda_r:g}"


def paper_grid() -> list[tuple[float, float]]:
    """The paper's 35 cells: λp, λr ∈ {0, .2, .4, .6, .8, 1}, without (0, 0)."""
    return [(p, r) for p in GRID_VALUES for r in GRID_VALUES if (p, r) != (0.0, 0.0)]


def parse_cells(spec: str) -> list[tuple[float, float]]:
    """`"0:1,0.2:1,1:1"` (or `lp0_lr1,...`) → [(0, 1), (0.2, 1), (1, 1)]. One error names every bad cell."""
    cells, problems = [], []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            cells.append(_parse_cell(part))
        except ValueError as exc:
            problems.append(f"bad cell {part!r}: {exc}")
    if problems:
        raise ConfigError("; ".join(problems))
    if not cells:
        raise ConfigError(f"no cells in {spec!r}")
    return list(dict.fromkeys(cells))


def _parse_cell(part: str) -> tuple[float, float]:
    try:
        lp, lr = (float(x) for x in part.replace("lp", "").replace("_lr", ":").split(":"))
    except ValueError:
        raise ValueError("write cells as LP:LR, e.g. 0.2:1") from None
    cell = (_lambda(lp, "lambda_p"), _lambda(lr, "lambda_r"))
    if cell == (0.0, 0.0):
        raise ValueError("trains no token")
    return cell


def load_run_config(cls: type[ModelT], path: Path | None, overrides: list[str] | None = None) -> ModelT:
    """A run config of type `cls` from an optional YAML file plus KEY=VALUE overrides."""
    return load_validated(cls, path, overrides or ())


def load_sft_config(path: Path | None, overrides: list[str] | None = None) -> SFTRunConfig:
    return load_run_config(SFTRunConfig, path, overrides)
