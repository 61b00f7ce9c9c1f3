"""`perturb`: one variant of one item, a pure function of (item, kind settings, variant, seed, severity)."""

from __future__ import annotations

from typing import Iterable, Iterator

from perturbations.base import Kind, Skip, Variant
from perturbations.document import Item
from perturbations.seeding import variant_rng


def edit_distance(a: str, b: str) -> int:
    """Character-level Levenshtein distance."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(a, b))


def _texts(item: Item) -> list[str]:
    return [d.render() for d in item.turns]


def perturb(item: Item, kind: Kind, variant: int, seed: int, severity: float) -> Variant:
    rng = variant_rng(item.id, kind.name, variant, seed, severity)
    clean = _texts(item)
    out = Variant(id=item.id, kind=kind.name, variant=variant, severity=severity, multi_turn=item.multi_turn)
    try:
        docs, changes = kind.perturb_item(item, rng, severity)
    except Skip as why:
        docs, changes, out.skipped_reason = list(item.turns), [], str(why)
    texts = [d.render() for d in docs]
    if item.multi_turn:
        out.turns = texts if out.skipped_reason is None else None
    else:
        out.text = texts[0] if out.skipped_reason is None else None
    out.edit_distance = sum(edit_distance(a, b) for a, b in zip(clean, texts))
    out.changes = changes
    out.choice_labels = docs[0].choice_labels()
    out.option_style = docs[0].layout.option_style if docs[0].options is not None else None
    out.prompt_format = docs[0].layout.prompt_format
    return out


def perturb_items(items: Iterable[Item], kind: Kind, variants: int, seed: int, severity: float) -> Iterator[Variant]:
    """Variants 0..n-1 of every item, item by item, n = `variants` capped at the kind's `max_variants`."""
    for item in items:
        for v in range(kind.variant_count(variants)):
            yield perturb(item, kind, v, seed, severity)
