"""`evalsuite run --config FILE`: a YAML/JSON file holding what the flags hold, so a run is one file to share.

    backend:            # any backend option, as in `evalsuite eval --config` (kind, dtype, batch_size, ...)
      kind: hf
      dtype: float32
    run:
      benchmarks: [mmlu, bbh, ifeval]
      perturb: [typo, rephrase, format]
      variants: 2
      severity: 0.1
      seed: 1234
      limit: 20
      data: ~/evalsuite-data
      prompt_format: auto
    benchmark_options:  # keyword options per benchmark name
      mmlu: {num_fewshot: 5}
    judge:              # MT-Bench / AlpacaEval judge (the key comes from the environment variable named here)
      model: gpt-4o-mini
      base_url: https://api.openai.com/v1
      api_key_env: OPENAI_API_KEY
      max_new_tokens: 2048
    paraphrase:         # rephrase by an LLM instead of the offline rules (same fields as `evalsuite perturb`)
      model: /models/paraphraser   # a local checkpoint, or a served name with base_url

Flags given on the command line override the file; the file overrides the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evalsuite.configfile import load_config_file, validation_problems
from evalsuite.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_list(value: Any) -> Any:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class RunSection(_Strict):
    benchmarks: Optional[list[str]] = None
    perturb: Optional[list[str]] = None
    variants: Optional[int] = Field(None, ge=1)
    severity: Optional[float] = Field(None, ge=0, le=1)
    seed: Optional[int] = None
    limit: Optional[int] = Field(None, ge=1)
    data: Optional[str] = None
    prompt_format: Optional[Literal["auto", "plain", "chat_template"]] = None

    _lists = field_validator("benchmarks", "perturb", mode="before")(_as_list)


class JudgeSection(_Strict):
    model: str
    base_url: Optional[str] = None
    api_key_env: Optional[str] = None
    max_new_tokens: int = Field(2048, ge=1)
    backend: Optional[Literal["hf", "vllm"]] = None


class ParaphraseSection(_Strict):
    model: str
    base_url: Optional[str] = None
    api_key_env: Optional[str] = None


class RunFile(_Strict):
    backend: dict[str, Any] = Field(default_factory=dict)
    run: RunSection = Field(default_factory=RunSection)
    benchmark_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    judge: Optional[JudgeSection] = None
    paraphrase: Optional[ParaphraseSection] = None


def load_run_file(path: Path | None) -> RunFile:
    if path is None:
        return RunFile()
    try:
        return RunFile.model_validate(load_config_file(path))
    except ValidationError as exc:
        raise ConfigError(f"invalid run config {path}: {validation_problems(exc, 'config')}") from None


def pick(flag: Any, from_file: Any, default: Any) -> Any:
    """The flag if it was given, else the file's value, else the default."""
    return flag if flag is not None else from_file if from_file is not None else default


def _flag_list(value: str | None) -> list[str] | None:
    return None if value is None else _as_list(value)


def run_settings(file: RunFile, *, benchmarks: str | None = None, perturb: str | None = None, variants: int | None = None,
                 severity: float | None = None, seed: int | None = None, limit: int | None = None, data: str | None = None,
                 backend: str | None = None, dtype: str | None = None, batch_size: int | None = None,
                 prompt_format: str | None = None) -> Any:
    """RunSettings from the flags (strings as typed), the file and the defaults, in that order."""
    from evalsuite.perturbing import KINDS
    from evalsuite.run.pipeline import RunSettings

    section = file.run
    kinds = pick(_flag_list(perturb), section.perturb, list(KINDS))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown perturbation kind(s) {', '.join(unknown)} (choose from {', '.join(KINDS)})")
    flags = {"kind": backend, "dtype": dtype, "batch_size": batch_size}
    return RunSettings(
        benchmarks=pick(_flag_list(benchmarks), section.benchmarks, ["mmlu", "bbh", "ifeval"]), kinds=kinds,
        variants=pick(variants, section.variants, 2), severity=pick(severity, section.severity, 0.1),
        seed=pick(seed, section.seed, 1234), limit=pick(limit, section.limit, None), data=pick(data, section.data, None),
        backend={"kind": "hf", "dtype": "auto", "batch_size": 16, **file.backend,
                 **{k: v for k, v in flags.items() if v is not None}},
        options={name: dict(opts) for name, opts in file.benchmark_options.items()},
        prompt_format=pick(prompt_format, section.prompt_format, "auto"))


def _section(cls: type[BaseModel], from_file: BaseModel | None, **flags: Any) -> Any:
    """A section from the flags given over the file's; None when neither names a model."""
    merged = {**(from_file.model_dump() if from_file else {}), **{k: v for k, v in flags.items() if v is not None}}
    return cls.model_validate(merged) if merged.get("model") else None


def judge_spec(file: RunFile, *, model: str | None = None, base_url: str | None = None, api_key_env: str | None = None,
               max_new_tokens: int | None = None, backend: str | None = None) -> JudgeSection | None:
    return _section(JudgeSection, file.judge, model=model, base_url=base_url, api_key_env=api_key_env,
                    max_new_tokens=max_new_tokens, backend=backend)


def paraphrase_spec(file: RunFile, *, model: str | None = None, base_url: str | None = None,
                    api_key_env: str | None = None) -> ParaphraseSection | None:
    return _section(ParaphraseSection, file.paraphrase, model=model, base_url=base_url, api_key_env=api_key_env)
