"""`template`: the item asked under the other prompt format than the run's (plain text vs the model's chat
template), the words and layout exactly as they are.

The package does not know which format a checkpoint uses, so the variant's `prompt_format` is the sentinel
`OTHER_PROMPT_FORMAT` ("other") and the runner resolves it against the checkpoint's own format. With two
formats there is exactly one such variant per item (`max_variants = 1`). Severity does not apply: any
severity above 0 gives the same variant; severity 0 skips, as for the other kinds.
"""

from __future__ import annotations

import random
from dataclasses import replace

from perturbations.base import Change, Kind, Skip
from perturbations.document import OTHER_PROMPT_FORMAT, Document, Item
from perturbations.registry import register

__all__ = ["OTHER_PROMPT_FORMAT", "Template"]


@register
class Template(Kind):
    name = "template"
    max_variants = 1

    def perturb_item(self, item: Item, rng: random.Random, severity: float) -> tuple[list[Document], list[Change]]:
        if severity <= 0:
            raise Skip("severity 0")
        current = item.turns[0].layout.prompt_format
        change = Change(0, "layout", "prompt_format", repr(current or "run"), repr(OTHER_PROMPT_FORMAT))
        docs = [replace(doc, layout=replace(doc.layout, prompt_format=OTHER_PROMPT_FORMAT)) for doc in item.turns]
        return docs, [change]

    def perturb_document(self, doc: Document, rng: random.Random, severity: float, turn: int) -> tuple[Document, list[Change]]:
        docs, changes = self.perturb_item(Item("", (doc,)), rng, severity)
        return docs[0], changes
