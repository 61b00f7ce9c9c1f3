"""A perturbation kind and the record of one variant.

A kind turns an `Item` into a variant with a `random.Random` that `perturb` seeds from the item's id (see
`seeding`), and reports what it changed; where no safe change exists it says why instead (a skip), and the
skip is recorded like any variant.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence, TypeVar

from perturbations.document import Document, Item


@dataclass(frozen=True)
class Change:
    turn: int
    field: str  # the field changed, or "layout" for format changes
    op: str  # what was done: keyboard, swap, misspelling, rule:<name>, label_sep, ...
    before: str
    after: str
    start: int = -1  # where `before` starts in the field's original text (-1: a layout change)


class Skip(Exception):
    """No safe change of this kind exists for the item (the message says why)."""


T = TypeVar("T")


def sample_sites(sites: Sequence[T], severity: float, rng: random.Random, none_reason: str) -> list[T]:
    """`severity` of the candidate sites (at least one), drawn from `rng`, in their original order."""
    if not sites:
        raise Skip(none_reason)
    if severity <= 0:
        raise Skip("severity 0")
    count = min(len(sites), max(1, round(severity * len(sites))))
    return [sites[k] for k in sorted(rng.sample(range(len(sites)), count))]


@dataclass
class Variant:
    id: str  # the original item's id: clean and perturbed answers pair up on it
    kind: str
    variant: int
    severity: float
    text: str | None = None  # single-turn items
    turns: list[str] | None = None  # multi-turn items
    edit_distance: int = 0
    changes: list[Change] = field(default_factory=list)
    skipped_reason: str | None = None
    choice_labels: list[str] | None = None  # how options are named in answers (MCQ; changes with option style)
    prompt_format: str | None = None  # None: the run's own; "other" (`template`): the one the run does not use
    option_style: str | None = None  # how options are labelled in `text` (MCQ), e.g. "A." or "(a)"
    multi_turn: bool = False  # rows carry `turns` (even when skipped) instead of `text`

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "kind": self.kind, "variant": self.variant, "severity": self.severity}
        row["turns" if self.multi_turn else "text"] = self.turns if self.multi_turn else self.text
        row["edit_distance"] = self.edit_distance
        row["skipped_reason"] = self.skipped_reason
        row["changes"] = [asdict(c) for c in self.changes]
        if self.choice_labels is not None:
            row["choice_labels"] = self.choice_labels
        if self.option_style is not None:
            row["option_style"] = self.option_style
        if self.prompt_format is not None:
            row["prompt_format"] = self.prompt_format
        return row


class Kind(ABC):
    """One perturbation kind. Subclasses set `name` and implement `perturb_document` (one turn) or, when
    turns must share a decision, `perturb_item`. A kind with only so many distinct variants per item sets
    `max_variants` (`template` has one): asking for more would repeat the same prompt."""

    name: str = ""
    max_variants: int | None = None  # None: no limit

    def variant_count(self, requested: int) -> int:
        """How many variants per item to make when `requested` are asked for (every caller's loop uses this)."""
        return requested if self.max_variants is None else min(requested, self.max_variants)

    def settings(self) -> dict[str, Any]:
        """What, besides (item, variant, seed, severity), determines the output: recorded with the variants."""
        return {"kind": self.name}

    def perturb_item(self, item: Item, rng: random.Random, severity: float) -> tuple[list[Document], list[Change]]:
        """Every turn from one random stream (turn 1 first), so a multi-turn item is perturbed consistently.
        A turn with nothing safe to change is kept as it is; the item is skipped only if no turn changed."""
        docs, changes, reasons = [], [], []
        for t, doc in enumerate(item.turns):
            try:
                new, turn_changes = self.perturb_document(doc, rng, severity, t)
            except Skip as why:
                new, turn_changes = doc, []
                reasons.append(str(why))
            docs.append(new)
            changes.extend(turn_changes)
        if not changes:
            raise Skip(reasons[0] if reasons else "nothing changed")
        return docs, changes

    @abstractmethod
    def perturb_document(self, doc: Document, rng: random.Random, severity: float, turn: int) -> tuple[Document, list[Change]]:
        ...
