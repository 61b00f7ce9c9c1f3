"""The study file (`evalsuite study --config STUDY.yaml`): the whole experiment in one place.

    name: demo
    models: [smollm2-135m-instruct]          # base models: embedded names or local checkpoint folders
    sft:
      datasets: [data/lima.jsonl]            # instruction data (paths, hub ids, or `evalsuite train` dataset mappings)
      completion_splits: [all]               # the PLW paper's split: all | short | long (each its own grid)
      cells: paper                           # the paper's 35 cells, or "0:1,0.4:1,1:1"
      global_batch_size: 64                  # ... any other key of an `evalsuite train sft` config
      training: {num_train_epochs: 5}
    dpo:                                     # any key of an `evalsuite train dpo` config; omit for no DPO
      dataset: {path: HuggingFaceH4/ultrafeedback_binarized, split: train_prefs}
    data: {bbh_source: lm-eval-exemplars}    # optional: build the offline benchmark data into STUDY/data first
    report: {notebook: true}                 # also execute the DPO plasticity notebook on the study's run
    eval:                                    # an `evalsuite run --config` file: backend, run, options, judge
      backend: {kind: vllm}
      run: {benchmarks: [mmlu, bbh, ifeval]}
    resources:                               # per unit kind: cpus, gpus, memory_gb, time_min
      sft: {cpus: 8, gpus: 1}
    ray: {address: auto}
    slurm: {partition: gpu, account: my-lab}

Each model × dataset × completion split is one grid (its own experiment key, shown side by side by the report).
Every value is checked when the file is read, by the configs of the commands that will use it, so a typo in a
training key fails now rather than hours later in a cluster job. Relative paths that exist are taken relative
to the current folder and stored absolute (units may run elsewhere).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evalsuite.configfile import load_validated
from evalsuite.errors import ConfigError
from evalsuite.run.config import RunFile
from evalsuite.training.config import SFTRunConfig, paper_grid, parse_cells
from evalsuite.training.data import CompletionSplit, DatasetSpec
from evalsuite.training.dpo import DPORunConfig

# keys the study sets itself, per grid and cell
STUDY_SFT_KEYS = ("model", "dataset", "output_dir", "lambda_p", "lambda_r")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, (str, dict)) else value


def absolute(value: str) -> str:
    """A path that exists, made absolute (units may run in another folder or on another machine); anything else
    (a hub id, an embedded model name) as it is."""
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


class Resources(_Strict):
    """What one unit asks of the executor: Ray's num_cpus / num_gpus / memory, SLURM's cpus-per-task, GPUs per
    node, memory and time limit. A training unit with more than one GPU runs `accelerate launch` with one
    process per GPU inside its allocation."""

    cpus: int = Field(1, ge=1)
    gpus: int = Field(0, ge=0)
    memory_gb: Optional[float] = Field(None, gt=0)
    time_min: int = Field(24 * 60, ge=1)  # SLURM's time limit; a unit past it is requeued and resumes


class ResourcesSection(_Strict):
    data: Resources = Resources(cpus=1)
    base: Resources = Resources(cpus=1)
    sft: Resources = Resources(cpus=4, gpus=1)
    dpo: Resources = Resources(cpus=4, gpus=1)
    eval: Resources = Resources(cpus=4, gpus=1)
    report: Resources = Resources(cpus=2)

    def of(self, kind: str) -> Resources:
        return getattr(self, kind)


class RaySection(_Strict):
    address: Optional[str] = None  # None: RAY_ADDRESS, else a local cluster started for the study
    max_retries: int = Field(3, ge=0)  # a unit whose worker or node dies is run again (and resumes)


class ReportSection(_Strict):
    # also execute the DPO plasticity notebook on the study's merged run (STUDY/report/notebook/*.ipynb, .html)
    notebook: bool = False


class SlurmSection(_Strict):
    # None: SLURM if `sbatch` is here; "local" / "debug": submitit's executors on this machine (tests, trials)
    cluster: Optional[Literal["slurm", "local", "debug"]] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    additional: dict[str, Any] = Field(default_factory=dict)  # any other sbatch option, e.g. {exclude: node12}
    setup: list[str] = Field(default_factory=list)  # shell lines run before each unit, e.g. "module load cuda"
    max_retries: int = Field(1, ge=0)  # a failed job is submitted again (a preempted or timed-out one is requeued)
    poll_s: float = Field(5.0, gt=0)


class DataSection(_Strict):
    """Build the offline benchmark data (`evalsuite data prepare`) into STUDY/data as the first unit."""

    bbh_source: Optional[str] = None
    packages: Optional[str] = None

    @field_validator("packages")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return absolute(value) if value else value


class SFTSection(BaseModel):
    """`datasets`, `completion_splits` and `cells`, and any other key of an `evalsuite train sft` config."""

    model_config = ConfigDict(extra="allow")

    datasets: list[Any] = Field(default_factory=lambda: [{"path": DatasetSpec().path}], min_length=1)
    completion_splits: list[CompletionSplit] = Field(default_factory=lambda: ["all"], min_length=1)
    cells: Any = "paper"

    _lists = field_validator("datasets", "completion_splits", mode="before")(_as_list)

    @field_validator("cells")
    @classmethod
    def _cells(cls, value: Any) -> list[tuple[float, float]]:
        if value == "paper":
            return paper_grid()
        if isinstance(value, list):
            value = ",".join(f"{c[0]}:{c[1]}" if isinstance(c, (list, tuple)) else str(c) for c in value)
        try:
            return parse_cells(str(value))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: list[Any]) -> list[dict[str, Any]]:
        specs = []
        for item in value:
            if isinstance(item, dict) and "completion_split" in item:
                raise ValueError("completion_split: give the splits as sft.completion_splits (each is its own grid)")
            spec = DatasetSpec.model_validate({"path": item} if isinstance(item, str) else item)
            specs.append({**spec.model_dump(exclude_unset=True), "path": absolute(spec.path)})
        return specs

    @model_validator(mode="after")
    def _settings(self) -> "SFTSection":
        taken = [k for k in STUDY_SFT_KEYS if k in self.settings()]
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by the study (models:, sft.datasets:, sft.cells:, --out)")
        SFTRunConfig.model_validate(self.settings())  # every training key checked now
        return self

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StudyConfig(_Strict):
    name: str = Field("study", pattern=r"^[A-Za-z0-9._-]+$")
    out: Optional[Path] = None  # the study folder (--out overrides; default reports/study/<name>)
    models: list[str] = Field(min_length=1)
    sft: SFTSection = Field(default_factory=SFTSection)
    dpo: Optional[dict[str, Any]] = None
    data: Optional[DataSection] = None
    eval: RunFile = Field(default_factory=RunFile)
    report: ReportSection = Field(default_factory=ReportSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    ray: RaySection = Field(default_factory=RaySection)
    slurm: SlurmSection = Field(default_factory=SlurmSection)

    _models = field_validator("models", mode="before")(_as_list)

    @field_validator("models")
    @classmethod
    def _absolute_models(cls, value: list[str]) -> list[str]:
        return [absolute(m) for m in value]

    @field_validator("dpo")
    @classmethod
    def _dpo(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if "output_dir" in value:
            raise ValueError("output_dir: set by the study")
        config = DPORunConfig.model_validate(value)  # every key checked now
        dataset = config.dataset.model_dump(exclude_unset=True)
        return {**value, "dataset": {**dataset, "path": absolute(config.dataset.path)}}

    @field_validator("eval")
    @classmethod
    def _eval(cls, value: RunFile) -> RunFile:
        from evalsuite.run.config import run_settings

        if value.run.data:
            value.run.data = absolute(value.run.data)
        run_settings(value)  # benchmarks, kinds, backend and options checked now
        return value

    @model_validator(mode="after")
    def _data_or_eval_data(self) -> "StudyConfig":
        if self.data is not None and self.eval.run.data:
            raise ValueError("data: builds STUDY/data for the evaluation; eval.run.data names other data: keep one")
        return self

    def folder(self, out: Path | None) -> Path:
        return Path(out or self.out or Path("reports/study") / self.name).expanduser().resolve()

    def dpo_config(self) -> DPORunConfig | None:
        return None if self.dpo is None else DPORunConfig.model_validate(self.dpo)

    def adapter_stages(self) -> tuple[str, ...]:
        """The stages whose cells are LoRA adapters kept alone (`lora.merged: false`) and that the evaluation's
        vLLM backend serves from one multi-LoRA engine: their cells are evaluated as one unit per grid."""
        backend = self.eval.backend or {}
        if backend.get("kind") != "vllm" or backend.get("enable_lora") is False:
            return ()
        sft_lora = SFTRunConfig.model_validate(self.sft.settings()).lora
        dpo = self.dpo_config()
        stages = ("sft",) if sft_lora is not None and not sft_lora.merged else ()
        return stages + (("dpo",) if stages and dpo is not None and dpo.lora is not None and not dpo.lora.merged else ())


def slug(text: str) -> str:
    """A folder-name-safe form of a name (letters, digits, `.`, `_`, `-`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def load_study(path: Path, overrides: Sequence[str] = ()) -> StudyConfig:
    """The study file with KEY=VALUE overrides applied (`eval.run.limit=2`, `sft.training.max_steps=4`)."""
    return load_validated(StudyConfig, path, overrides, what="study config", root="study")


def demo_config() -> Path:
    """The packaged demo study (`evalsuite demo`, `make demo`; `configs/demo.yaml` in the repository)."""
    return Path(__file__).with_name("demo.yaml")
