"""`typo`: keyboard slips, one-character insertions, deletions, swaps and substitutions, and common
misspellings, from nlpaug's offline augmenters, applied one word at a time so that protected spans and
non-editable fields are never touched.

Severity = the fraction of eligible words (alphabetic, 3+ letters, outside protected spans, in editable
fields) that get one typo each (at least one word when severity > 0). The words and the method for each
come from the variant's own random stream; nlpaug's global-RNG draws are seeded from it per call.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from perturbations.base import Change, Kind, Skip, sample_sites
from perturbations.document import Document
from perturbations.registry import register
from perturbations.seeding import preserved_global_rngs, seed_globals
from perturbations.spans import free_words, protected_spans

METHODS = ("keyboard", "insert", "delete", "swap", "substitute", "misspelling")


@lru_cache(maxsize=None)
def augmenter(method: str) -> Any:
    import nlpaug.augmenter.char as nac
    import nlpaug.augmenter.word as naw

    one_char = {"aug_word_p": 1.0, "aug_char_min": 1, "aug_char_max": 1, "min_char": 2}
    if method == "keyboard":
        return nac.KeyboardAug(include_special_char=False, include_numeric=False, include_upper_case=False, **one_char)
    if method == "misspelling":
        aug = naw.SpellingAug(aug_p=1.0, aug_min=1, aug_max=1)
        # nlpaug dedupes each entry through a set, so its order (and the pick) would follow PYTHONHASHSEED
        aug.model.dict = {k: sorted(v) for k, v in aug.model.dict.items()}
        return aug
    return nac.RandomCharAug(action=method, include_numeric=False, include_upper_case=False, spec_char="", **one_char)


def match_case(new: str, old: str) -> str:
    if old.islower():
        return new.lower()
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper() and old[1:].islower():
        return new[:1].upper() + new[1:].lower()
    return new


def misspell(word: str, method: str, rng: random.Random) -> str:
    """One typo in `word` by `method`; the word itself when the method has nothing to offer (a misspelling
    missing from nlpaug's dictionary). Call inside `preserved_global_rngs()`."""
    seed_globals(rng)
    out = augmenter(method).augment(word)
    new = (out[0] if isinstance(out, list) else out or "").strip()
    # nlpaug's dictionary has entries like "[[befor" and "è": keep plain-letter typos only
    return match_case(new, word) if new.isascii() and new.isalpha() else word


@register
class Typo(Kind):
    name = "typo"

    def __init__(self, methods: tuple[str, ...] = METHODS) -> None:
        unknown = set(methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown typo method(s) {sorted(unknown)} (known: {', '.join(METHODS)})")
        self.methods = tuple(methods)

    def settings(self) -> dict[str, Any]:
        return {"kind": self.name, "methods": list(self.methods)}

    def perturb_document(self, doc: Document, rng: random.Random, severity: float, turn: int) -> tuple[Document, list[Change]]:
        candidates = [(i, span) for i, f in enumerate(doc.fields) if f.editable
                      for span in free_words(f.text, protected_spans(f.text, f.protected))]
        chosen = sample_sites(candidates, severity, rng, "no editable word outside protected spans")
        edits: dict[int, list[tuple[int, int, str]]] = {}
        changes: list[Change] = []
        with preserved_global_rngs():
            self._typos(doc, chosen, rng, turn, edits, changes)
        if not changes:
            raise Skip("no typo changed any eligible word")
        return doc.with_edits(edits), changes

    def _typos(self, doc: Document, chosen: list[tuple[int, tuple[int, int]]], rng: random.Random, turn: int,
               edits: dict[int, list[tuple[int, int, str]]], changes: list[Change]) -> None:
        for i, (start, end) in chosen:
            word = doc.fields[i].text[start:end]
            methods = list(self.methods)
            rng.shuffle(methods)
            for method in methods:  # first method (in a seeded order) that changes the word
                new = misspell(word, method, rng)
                if new != word:
                    edits.setdefault(i, []).append((start, end, new))
                    changes.append(Change(turn, doc.fields[i].name, method, word, new, start))
                    break
