"""The values that flow through a benchmark: items (what is asked), samples (what was scored) and results.

Plain data in their own module, so that the benchmark base class, the record writers and the runners all
import them from here and none imports another (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from evalsuite.benchmarks.prompting import Shot


@dataclass(frozen=True)
class Perturbed:
    """A perturbation variant of an item (a row of `evalsuite perturb`): its text replaces the item's prompt
    body (lm-eval's `doc_to_text`; each turn for MT-Bench); scoring still uses the item's own doc and target.
    `option_style` is how the variant labels options; `prompt_format` overrides the run's (`other`: the format
    that is not the run's, the `template` kind)."""

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
    """One benchmark item, carrying everything asking and scoring it needs, so that a benchmark object holds
    configuration only. `id` is stable across runs and machines (perturbed copies keep it), `subset` is the
    subject / task / category it is aggregated under, `doc` the row as the reference tool sees it, `target` the
    answer (or reference answers), `perturbed` the variant it is asked in (None: the clean item), `shots` the
    few-shot exemplars asked before it, `grading` what its scorer needs beyond doc and target (MT-Bench's judge
    prompt templates; never written to records)."""

    id: str
    subset: str
    doc: dict[str, Any]
    target: Any
    perturbed: Perturbed | None = None
    shots: tuple[Shot, ...] = ()
    grading: Mapping[str, Any] = field(default_factory=dict)

    def text(self, clean: str) -> str:
        """The prompt body to ask: the variant's, else `clean` (the benchmark's own rendering)."""
        return self.perturbed.text if self.perturbed is not None and self.perturbed.text is not None else clean

    def turns(self, clean: Sequence[str]) -> list[str]:
        return list(self.perturbed.turns) if self.perturbed is not None and self.perturbed.turns else list(clean)

    def option_style(self, clean: str) -> str:
        return self.perturbed.option_style if self.perturbed is not None and self.perturbed.option_style else clean

    @property
    def variant(self) -> int | None:
        """The variant number (None: the clean item): with `id`, what pairs a sample with its item."""
        return self.perturbed.variant if self.perturbed is not None else None


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
    metrics: dict[str, Any]
    prompt_format: str
    extra: dict[str, Any] = field(default_factory=dict)
    perturbed: Perturbed | None = None  # the variant the item was asked in (None: clean)
    truncated_requests: int = 0  # how many of the item's requests had their prompt cut to fit the context

    @property
    def variant(self) -> int | None:
        return self.perturbed.variant if self.perturbed is not None else None


@dataclass
class BenchmarkResult:
    """A benchmark run over some items: its samples and lm-eval-style aggregates (`results["all"]`, then per
    subset)."""

    task: str
    samples: list[Sample]
    results: dict[str, dict[str, Any]]
