"""What every benchmark is: items with stable ids, requests built from them, scored samples, aggregates.

A benchmark module subclasses `Benchmark` and registers it (`evalsuite.benchmarks.register`). The shared
runner (`evalsuite.benchmarks.runner`) does the rest: it sends every item's requests to a backend in one
batch, hands each item its responses back, and writes lm-eval-shaped records. So a benchmark never talks
to a model and never batches anything itself.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from evalsuite.backends import GenerationRequest, LoglikelihoodRequest
from evalsuite.benchmarks.prompting import Prompter

Request = LoglikelihoodRequest | GenerationRequest


@dataclass(frozen=True)
class Perturbed:
    """A perturbation variant of an item (a row of `evalsuite perturb`): its text replaces the item's prompt
    body (lm-eval's `doc_to_text`; each turn for MT-Bench); scoring still uses the item's own doc and target.
    `option_style` is how the variant labels options; `prompt_format` overrides the run's."""

    kind: str
    variant: int
    severity: float
    text: str | None = None
    turns: tuple[str, ...] | None = None
    option_style: str | None = None
    prompt_format: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Perturbed":
        return cls(row["kind"], int(row["variant"]), float(row["severity"]), row.get("text"),
                   tuple(row["turns"]) if row.get("turns") is not None else None, row.get("option_style"),
                   row.get("prompt_format"))


@dataclass(frozen=True)
class Item:
    """One benchmark item. `id` is stable across runs and machines (perturbed copies keep it), `subset`
    is the subject / task / category it is aggregated under, `doc` the row as the reference tool sees it,
    `perturbed` the variant it is asked in (None: the clean item)."""

    id: str
    subset: str
    doc: dict[str, Any]
    target: Any
    perturbed: Perturbed | None = None

    def text(self, clean: str) -> str:
        """The prompt body to ask: the variant's, else `clean` (the benchmark's own rendering)."""
        return self.perturbed.text if self.perturbed is not None and self.perturbed.text is not None else clean

    def turns(self, clean: Sequence[str]) -> list[str]:
        return list(self.perturbed.turns) if self.perturbed is not None and self.perturbed.turns else list(clean)

    def option_style(self, clean: str) -> str:
        return self.perturbed.option_style if self.perturbed is not None and self.perturbed.option_style else clean


@dataclass
class Sample:
    """One scored item under one filter, in lm-eval's sample-log shape plus our id and subset."""

    doc_id: int
    item_id: str
    subset: str
    doc: dict[str, Any]
    target: Any
    arguments: list[Any]
    resps: list[Any]
    filtered_resps: list[Any]
    filter: str
    metrics: dict[str, float]
    prompt_format: str
    extra: dict[str, Any] = field(default_factory=dict)
    perturbed: Perturbed | None = None  # the variant the item was asked in (None: clean)

    def to_record(self) -> dict[str, Any]:
        from evalsuite.benchmarks.records import sample_record

        return sample_record(self)


class Benchmark(ABC):
    """A benchmark variant: `name` (registry key, e.g. `mmlu`), `variant` (e.g. `loglikelihood`)."""

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]

    def __init__(self, variant: str | None = None, **options: Any) -> None:
        variant = variant or self.variants[0]
        if variant not in self.variants:
            from evalsuite.errors import ConfigError

            raise ConfigError(f"{self.name} has no variant {variant!r}; choose from {', '.join(self.variants)}")
        self.variant = variant
        self.options = options

    def settings(self) -> dict[str, Any]:
        """What results files record about this benchmark's configuration."""
        return {"name": self.name, "variant": self.variant, **self.options}

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

    def primary_for(self) -> tuple[str, str]:
        return self.primary

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
        from evalsuite.errors import ConfigError

        raise ConfigError(f"{self.name} has no perturbation adapter")

    def aggregate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """lm-eval-style results: `{"acc,none": ..., "acc_stderr,none": ...}` overall (micro-average) and per
        subset."""
        from evalsuite.benchmarks.records import aggregate_samples

        return aggregate_samples(samples)


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


def doc_json(doc: dict[str, Any]) -> str:
    """The doc as lm-eval hashes it (its own serialiser for numpy values and sets)."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False)
