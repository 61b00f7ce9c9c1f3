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
      posix: response_length     # or max_new_tokens (the released POSIX library's normaliser)
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
from evalsuite.run.types import DEFAULT_KINDS, PosixNormalization, RunSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_list(value: Any) -> Any:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class RunSection(_Strict):
    """The `run:` section and the flags that override it: one validation for both."""

    benchmarks: list[str] = Field(default_factory=lambda: ["mmlu", "bbh", "ifeval"], min_length=1)
    perturb: list[str] = Field(default_factory=lambda: list(DEFAULT_KINDS))
    variants: int = Field(2, ge=1)
    severity: float = Field(0.1, gt=0, le=1)  # 0 changes nothing: every variant would be skipped
    seed: int = 1234
    limit: Optional[int] = Field(None, ge=1)
    data: Optional[str] = None
    prompt_format: Literal["auto", "plain", "chat_template"] = "auto"
    posix: PosixNormalization = "response_length"

    _lists = field_validator("benchmarks", "perturb", mode="before")(_as_list)

    @field_validator("perturb")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        from perturbations import kind_names

        unknown = [k for k in kinds if k not in kind_names()]
        if unknown:
            raise ValueError(f"unknown perturbation kind(s) {', '.join(unknown)} (choose from {', '.join(kind_names())})")
        return kinds


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
    run: RunSection = Field(default_factory=RunSection)  # validated again with the flags, in `run_settings`
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


def _given(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def run_settings(file: RunFile, *, benchmarks: str | None = None, perturb: str | None = None, variants: int | None = None,
                 severity: float | None = None, seed: int | None = None, limit: int | None = None, data: str | None = None,
                 backend: str | None = None, dtype: str | None = None, batch_size: int | None = None,
                 prompt_format: str | None = None, posix: str | None = None) -> RunSettings:
    """RunSettings from the flags (as typed), over the file's `run:` section, over the defaults, validated
    together: every problem of either is reported at once, before anything loads."""
    from evalsuite.backends.config import parse_backend_config
    from evalsuite.benchmarks.registry import BENCHMARKS, benchmark_class
    from evalsuite.errors import did_you_mean

    merged = {**file.run.model_dump(exclude_unset=True), **_given(benchmarks=benchmarks, perturb=perturb, variants=variants, severity=severity,
                                   seed=seed, limit=limit, data=data, prompt_format=prompt_format, posix=posix)}
    try:
        section = RunSection.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(f"run.{err['loc'][0]} (--{str(err['loc'][0]).replace('_', '-')}): {err['msg']}"
                             for err in exc.errors())
        raise ConfigError(f"invalid run settings: {problems}") from None
    backend_options = {"kind": "hf", "dtype": "auto", "batch_size": 16, **file.backend,
                       **_given(kind=backend, dtype=dtype, batch_size=batch_size)}
    if "model" in backend_options:
        raise ConfigError("backend.model: the models come from --models; remove `model` from the backend: section")
    parse_backend_config({**backend_options, "model": "<each checkpoint>"})  # errors now, not after a model loads
    for spec in section.benchmarks:
        benchmark_class(spec.partition(":")[0])
    known = sorted(BENCHMARKS)
    strays = [k for k in file.benchmark_options if k not in known]
    if strays:  # options of a benchmark this run leaves out are kept; a name no benchmark has is a typo
        raise ConfigError("benchmark_options: unknown benchmark(s) "
                          + "; ".join(f"{k}{did_you_mean(k, known)}" for k in strays))
    return RunSettings(
        benchmarks=section.benchmarks, kinds=section.perturb, variants=section.variants, severity=section.severity,
        seed=section.seed, limit=section.limit, data=section.data, backend=backend_options,
        options={name: dict(opts) for name, opts in file.benchmark_options.items()},
        prompt_format=section.prompt_format, posix=section.posix)


def _section(cls: type[BaseModel], from_file: BaseModel | None, **flags: Any) -> Any:
    """A section from the flags given over the file's; None when neither names a model."""
    merged = {**(from_file.model_dump() if from_file else {}), **_given(**flags)}
    if not merged.get("model"):
        return None
    try:
        return cls.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"invalid {cls.__name__.removesuffix('Section').lower()} settings: "
                          f"{validation_problems(exc, 'section')}") from None


def judge_spec(file: RunFile, *, model: str | None = None, base_url: str | None = None, api_key_env: str | None = None,
               max_new_tokens: int | None = None, backend: str | None = None) -> JudgeSection | None:
    return _section(JudgeSection, file.judge, model=model, base_url=base_url, api_key_env=api_key_env,
                    max_new_tokens=max_new_tokens, backend=backend)


def paraphrase_spec(file: RunFile, *, model: str | None = None, base_url: str | None = None,
                    api_key_env: str | None = None) -> ParaphraseSection | None:
    return _section(ParaphraseSection, file.paraphrase, model=model, base_url=base_url, api_key_env=api_key_env)
