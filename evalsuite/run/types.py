"""The values `evalsuite run` passes between its modules: the settings of a run, one benchmark asked one way on
one checkpoint (`Condition`), and the status of each unit of work (`Status`). In their own module so that the
pipeline and the results table import them from here and not from each other."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, NamedTuple

Log = Callable[[str], None]
PosixNormalization = Literal["response_length", "max_new_tokens"]
DEFAULT_KINDS = ("typo", "rephrase", "format")


@dataclass
class RunSettings:
    benchmarks: list[str]
    kinds: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))
    variants: int = 2
    severity: float = 0.1
    seed: int = 1234
    limit: int | None = None
    data: str | None = None
    backend: dict[str, Any] = field(default_factory=dict)  # kind, dtype, batch_size, ... (model filled per checkpoint)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per benchmark name (judge, num_fewshot, ...)
    prompt_format: str = "auto"
    # POSIX's normaliser: the paper's per-response length (default) or the released library's max_new_tokens
    posix: PosixNormalization = "response_length"
    paraphraser: Any = None  # rephrase by an LLM (perturbations.llm.Paraphraser); None: the offline rules

    def record(self) -> dict[str, Any]:
        """The settings as JSON values for `run.json` (a judge or paraphraser by its identity, never an object)."""
        def value(v: Any) -> Any:  # a judge as a plain dict (model, kind, endpoint, decoding)
            return v.describe() if hasattr(v, "describe") else v.identity() if hasattr(v, "identity") else v

        return {"benchmarks": self.benchmarks, "kinds": self.kinds, "variants": self.variants, "severity": self.severity,
                "seed": self.seed, "limit": self.limit, "data": self.data, "backend": self.backend,
                "options": {name: {k: value(v) for k, v in opts.items()} for name, opts in self.options.items()},
                "prompt_format": self.prompt_format, "posix": self.posix,
                "paraphraser": self.paraphraser.identity() if self.paraphraser is not None else None}


@dataclass(frozen=True)
class TaskInfo:
    """What the tables say about a task besides its name: the benchmark it is (registry name), which metric and
    filter its `score` is, and on which scale."""

    task: str  # e.g. "mmlu_generative"
    benchmark: str  # e.g. "mmlu"
    score_metric: str  # e.g. "exact_match,flexible-extract"
    scale: str  # "proportion" or "rating_1_10"

    @classmethod
    def of(cls, bench: Any) -> "TaskInfo":
        return cls(bench.task_name, bench.name, bench.score_metric, bench.scale)

    def columns(self) -> dict[str, str]:
        return {"task": self.task, "benchmark": self.benchmark, "score_metric": self.score_metric, "scale": self.scale}


class ItemResult(NamedTuple):
    """One prompt (an item, or one variant of it) under its benchmark's primary metric. Its first two fields are
    what the robustness metrics pair ((answer, score): an `evalsuite.metrics` Answer); the rest is what
    `items.parquet` shows beside them."""

    answer: Any  # compared across variants (None for free text)
    score: float | None  # None: could not be scored (e.g. a failed judgement)
    subset: str = ""
    truncated: int = 0  # requests of this prompt whose prompt was cut to fit the context
    response: str | None = None  # the model's output (turns joined); None for log-likelihood items
    judgement: str | None = None  # the judge's output (turns joined), where a judge scored it


@dataclass
class Condition:
    """One benchmark asked one way on one checkpoint: clean or one perturbation kind."""

    task: str
    condition: str  # "clean" or the kind
    results: dict[str, Any]
    item_results: dict[tuple[str, int | None], ItemResult]  # (item id, variant) -> its result
    skipped: int = 0  # variants with no safe change of this kind
    posix: float | None = None
    posix_sets: int = 0

    def without_texts(self) -> "Condition":
        """The same condition without responses and judgements: what is kept for the end of the run once the
        checkpoint's items are written (a full grid's texts would not fit in memory)."""
        return replace(self, item_results={k: r._replace(response=None, judgement=None)
                                           for k, r in self.item_results.items()})


@dataclass(frozen=True)
class Status:
    """How one unit of work ended: a checkpoint × benchmark (condition "all"), or one condition of it."""

    checkpoint: str
    task: str
    condition: str
    status: str  # "ok", "failed: <reason>" or "skipped: <reason>"

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")
