"""`rephrase`: the same request in other words.

Two ways, one kind:
- with a `paraphraser` (an LLM through an OpenAI-compatible endpoint, or any callable; see
  `perturbations.llm`): a fixed paraphrase prompt, sampled with a seed from the variant's stream, cached,
  and checked: outputs that answer the question, drop protected text or change numbers or quoted text are
  rejected and the next seed tried; if every attempt is rejected the item is skipped with the reasons;
- without one: offline rewording (`perturbations.rewording`): severity = the fraction of rule sites
  rewritten (at least one); items with no site are skipped.
"""

from __future__ import annotations

import random
from typing import Any

from perturbations.base import Change, Kind, Skip, sample_sites
from perturbations.document import Document
from perturbations.registry import register
from perturbations.rewording import RULES, expand
from perturbations.spans import overlaps, protected_spans


def rule_sites(text: str, protected: list[tuple[int, int]]) -> list[tuple[int, int, Any, Any]]:
    """Non-overlapping (start, end, rule, match) sites, earliest first, clear of protected spans."""
    sites = []
    for rule in RULES:
        for m in rule.pattern.finditer(text):
            if (m.end() > m.start() or rule.name == "framing:question") and not overlaps(m.span(), protected):
                sites.append((m.start(), m.end(), rule, m))
    sites.sort(key=lambda s: (s[0], -(s[1] - s[0]), s[2].name))
    chosen: list[tuple[int, int, Any, Any]] = []
    for site in sites:
        if not chosen or site[0] >= chosen[-1][1]:
            chosen.append(site)
    return chosen


@register
class Rephrase(Kind):
    name = "rephrase"

    def __init__(self, paraphraser: Any = None) -> None:
        self.paraphraser = paraphraser

    def settings(self) -> dict[str, Any]:
        return {"kind": self.name, "method": self.paraphraser.identity() if self.paraphraser else "offline-rewording"}

    def perturb_document(self, doc: Document, rng: random.Random, severity: float, turn: int) -> tuple[Document, list[Change]]:
        if self.paraphraser is not None:
            return self._paraphrase(doc, rng, turn)
        sites = [(i, s) for i, f in enumerate(doc.fields) if f.editable
                 for s in rule_sites(f.text, protected_spans(f.text, f.protected))]
        edits: dict[int, list[tuple[int, int, str]]] = {}
        changes = []
        for i, (start, end, rule, match) in sample_sites(sites, severity, rng, "no rewording rule applies outside protected spans"):
            new = expand(rule, match, rng.choice(rule.replacements))
            edits.setdefault(i, []).append((start, end, new))
            changes.append(Change(turn, doc.fields[i].name, f"rule:{rule.name}", match.group(0), new, start))
        return doc.with_edits(edits), changes

    def _paraphrase(self, doc: Document, rng: random.Random, turn: int) -> tuple[Document, list[Change]]:
        editable = [i for i, f in enumerate(doc.fields) if f.editable and f.text.strip()]
        if not editable:
            raise Skip("no editable text")
        texts = [f.text for f in doc.fields]
        changes = []
        for i in editable:
            f = doc.fields[i]
            new = self.paraphraser.paraphrase(f.text, f.protected, rng)  # raises Skip with the reasons
            texts[i] = new
            changes.append(Change(turn, f.name, f"paraphrase:{self.paraphraser.name}", f.text, new, 0))
        return doc.with_texts(texts), changes
