"""What every benchmark is: items with stable ids, requests built from them, scored samples, aggregates.

A benchmark module subclasses `Benchmark` and registers it (`evalsuite.benchmarks.register`). The shared
runner (`evalsuite.benchmarks.runner`) does the rest: it sends every item's requests to a backend in one
batch, hands each item its responses back, and writes lm-eval-shaped records. So a benchmark never talks
to a model and never batches anything itself.

A benchmark object is configuration only (variant, options, judge): whatever one evaluation needs travels
in the items (`Item.shots`, `Item.grading`, `Item.target`) or in the samples `score` returns, so one object
can score any number of item groups (prompt formats, perturbation kinds, checkpoints) in any order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from evalsuite.backends import GenerationRequest, LoglikelihoodRequest
from evalsuite.benchmarks.prompting import Prompter
from evalsuite.benchmarks.records import aggregate_samples, doc_json
from evalsuite.benchmarks.types import BenchmarkResult, Item, Perturbed, Sample
from evalsuite.errors import ConfigError

Request = LoglikelihoodRequest | GenerationRequest

__all__ = ["Benchmark", "BenchmarkResult", "Item", "Perturbed", "Request", "Sample", "doc_json",
           "generation_arguments", "join_turns", "raw_response", "subset_positions"]

SCALES = ("proportion", "rating_1_10")  # what a benchmark's per-item scores are: 0..1, or a 1-10 rating


class Benchmark(ABC):
    """A benchmark variant: `name` (registry key, e.g. `mmlu`), `variant` (e.g. `loglikelihood`). Subclasses
    take their options as keyword arguments of `__init__` (the registry rejects any other name)."""

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]
    # Benchmarks that cannot be scored without an LLM judge (checked before any model is asked).
    needs_judge: ClassVar[bool] = False

    def __init__(self, variant: str | None = None) -> None:
        variant = variant or self.variants[0]
        if variant not in self.variants:
            raise ConfigError(f"{self.name} has no variant {variant!r}; choose from {', '.join(self.variants)}")
        self.variant = variant

    def settings(self) -> dict[str, Any]:
        """What results files record about this benchmark's configuration (JSON values only)."""
        return {"name": self.name, "variant": self.variant}

    def provenance(self, source: Any = None) -> dict[str, Any]:
        """What the numbers depend on besides `settings()`: where the items really come from, which scorer
        resources are used (recorded beside the settings in every result)."""
        return {}

    @property
    def task_name(self) -> str:
        return f"{self.name}_{self.variant}"

    @abstractmethod
    def load(self, source: Any, limit: int | None = None, seed: int | None = None) -> list[Item]:
        """Items from `source` (see `evalsuite.benchmarks.data`); `limit` per subset, first N or, with a
        `seed`, a seeded sample."""

    @abstractmethod
    def requests(self, item: Item, prompter: Prompter) -> list[Request]:
        ...

    def followup(self, item: Item, prompter: Prompter, responses: Sequence[Any]) -> list[Request]:
        """Requests that depend on earlier answers (MT-Bench's second turn); none by default. The runner
        asks again after each round until no item has more."""
        return []

    @abstractmethod
    def score(self, items: Sequence[Item], requests: Sequence[Sequence[Request]], responses: Sequence[Sequence[Any]],
              prompter: Prompter) -> list[Sample]:
        """Every item's samples, one per filter (lm-eval logs one row per filter). Batched because lm-eval's
        filters are built per task and some are costly to build."""

    # The metric and filter robustness is measured on (`evalsuite run`): one number per item.
    primary: ClassVar[tuple[str, str]] = ("acc", "none")
    # The scale of that number (one of `SCALES`): tables say it beside every score.
    scale: ClassVar[str] = "proportion"

    def primary_for(self) -> tuple[str, str]:
        return self.primary

    @property
    def score_metric(self) -> str:
        """The primary metric as lm-eval keys it (`exact_match,flexible-extract`): what `score` in a run's
        table is."""
        return ",".join(self.primary_for())

    @abstractmethod
    def clean_prompt(self, item: Item) -> str:
        """The item's prompt body in this benchmark's own rendering (lm-eval's `doc_to_text`): the text a
        perturbation variant replaces, before any few-shot header or chat template."""

    def prompt_turns(self, item: Item) -> list[str]:
        """The prompt body of each turn as it is asked: the variant's text, else `clean_prompt`."""
        return [item.text(self.clean_prompt(item))]

    def response(self, sample: Sample) -> str | None:
        """The model's own output for the item (turns joined, `join_turns`), before any relabelling of options
        read back for scoring; None for log-likelihood items, which have no output text."""
        raw = sample.extra.get("raw_response")
        if isinstance(raw, str):
            return raw
        texts = [r[0] for r in sample.resps if isinstance(r, list) and r and isinstance(r[0], str)]
        return join_turns(texts) if texts else None

    def judgement(self, sample: Sample) -> str | None:
        """The judge's output for the item (turns joined), for benchmarks scored by a judge; else None."""
        return None

    def item_result(self, sample: Sample) -> tuple[Any, float | None]:
        """(answer, score) of a sample under the primary metric: the answer compared across variants (None
        for free text), the score (None when it could not be scored, e.g. a failed judgement)."""
        value = sample.metrics.get(self.primary_for()[0])
        if isinstance(value, list):
            value = sum(value) / len(value) if value else None
        answer = sample.filtered_resps[0] if sample.filtered_resps else None
        return (answer if isinstance(answer, (str, int)) else None), (None if value is None else float(value))

    def perturbation_item(self, item: Item) -> Any:
        """The item as the `perturbations` package sees it (fields, options, what is protected); its default
        rendering is this benchmark's own prompt body for the item."""
        raise ConfigError(f"{self.name} has no perturbation adapter")

    def aggregate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """lm-eval-style results: `{"acc,none": ..., "acc_stderr,none": ...}` overall (micro-average) and per
        subset, computed from the samples alone."""
        return aggregate_samples(samples)


def join_turns(turns: Sequence[str]) -> str:
    """Several turns as one text (prompts, answers, judgements of MT-Bench): the first, then each next one after
    a "[turn k]" line."""
    return "".join(t if k == 1 else f"\n\n[turn {k}]\n{t}" for k, t in enumerate(turns, 1))


def raw_response(said: str, read_back: str) -> dict[str, Any]:
    """A sample's `extra` for an answer whose option labels were rewritten before scoring: the model's own
    text, kept (`Benchmark.response`); nothing when scoring read it as it was."""
    return {"raw_response": said} if said != read_back else {}


def subset_positions(items: Sequence[Item]) -> list[int]:
    """Each item's index within its subset: lm-eval's `doc_id` (one lm-eval task per subset)."""
    seen: dict[str, int] = {}
    out = []
    for it in items:
        out.append(seen.get(it.subset, 0))
        seen[it.subset] = out[-1] + 1
    return out


def generation_arguments(request: GenerationRequest) -> list[Any]:
    """lm-eval's logged `arguments` of a generation: the context and its generation kwargs."""
    return [request.prompt, {"until": list(request.stop), "max_gen_toks": request.max_new_tokens,
                             "do_sample": not request.greedy, "temperature": request.temperature}]
