"""`format`: FormatSpread-style changes of the layout around the content (Sclar et al., 2024), never of
the content itself: the separator after field labels, the spacing between fields, the casing and wording of
field labels (`Question:` / `Q:`), the option label style (`A.` / `(A)` / `a)` ...) and enumeration (options
on lines or inline). Layout only: the prompt format (plain vs chat template) stays the run's, since
switching it is a far larger shift than any layout change; asking in the other format is its own kind,
`template`.

Severity = the fraction of the dimensions that apply to the item that are changed (at least one, and the
result must change the text). A changed option label style changes how answers name options: the variant's
`choice_labels` say how (what scorers must expect). A multi-turn item gets one layout for all its turns.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from perturbations.base import Change, Kind, Skip
from perturbations.document import OPTION_STYLES, Document, Item, Layout
from perturbations.registry import register

LABEL_SEPS = (": ", " : ", ":\n", " - ", ":: ")
FIELD_SEPS = ("\n", "\n\n", " ", "\n\n\n")
LABEL_CASES = ("as_is", "upper", "lower", "title")
OPTION_SEPS = ("\n", " ", "; ", "\n\n")
# Wordings a field's label may take (None = no label), by field name.
LABEL_WORDS: dict[str, tuple[str | None, ...]] = {
    "question": ("Question", "Q", "Query", "Problem", None),
    "answer": ("Answer", "A", "Response", "Solution"),
    "prompt": (None, "Instruction", "Request", "Task", "Prompt"),
    "options": ("Options", "Choices", "Answer choices", None),
}


def _has_labels(doc: Document) -> bool:
    return any(doc.layout.label_for(f) for f in doc.fields) or (doc.options is not None and doc.options.heading is not None)


def dimensions(doc: Document) -> list[str]:
    """The layout dimensions that can change this document's text."""
    dims = []
    if any(f.name in LABEL_WORDS for f in doc.fields) or (doc.options is not None and "options" in LABEL_WORDS):
        dims.append("label_words")
    if _has_labels(doc) or dims:  # a label-less field can get one (then its separator and casing matter)
        dims += ["label_sep", "label_case"]
    if len(doc.fields) + (doc.options is not None) > 1:
        dims.append("field_sep")
    if doc.options is not None:
        dims += ["option_style", "option_sep"]
    return dims


def _other(rng: random.Random, choices: tuple[Any, ...], current: Any) -> Any:
    return rng.choice([c for c in choices if c != current])


def choose_layout(doc: Document, rng: random.Random, severity: float) -> tuple[Layout, list[Change]]:
    dims = dimensions(doc)
    if not dims:
        raise Skip("no layout dimension applies")
    if severity <= 0:
        raise Skip("severity 0")
    chosen = set(rng.sample(dims, min(len(dims), max(1, round(severity * len(dims))))))
    if not _has_labels(doc) and chosen & {"label_sep", "label_case"}:
        chosen.add("label_words")  # separator and casing only show once there is a label
    lay, changes = doc.layout, []
    if "label_words" in chosen:  # first: whether labels exist decides what the other dimensions do
        relabel = dict(lay.labels)
        names = [f.name for f in doc.fields if f.name in LABEL_WORDS] + (["options"] if doc.options is not None else [])
        rng.shuffle(names)
        for j, name in enumerate(names):  # the first always changes, each other one with probability 1/2
            if j and rng.random() < 0.5:
                continue
            current = relabel[name] if name in relabel else (
                doc.options.heading if name == "options" and doc.options is not None
                else next(f.label for f in doc.fields if f.name == name))
            new = _other(rng, LABEL_WORDS[name], current)
            relabel[name] = new
            changes.append(Change(0, "layout", f"label:{name}", repr(current), repr(new)))
        lay = replace(lay, labels=tuple(sorted(relabel.items(), key=lambda kv: kv[0])))
    for dim, choices in (("label_sep", LABEL_SEPS), ("label_case", LABEL_CASES), ("field_sep", FIELD_SEPS),
                         ("option_style", OPTION_STYLES), ("option_sep", OPTION_SEPS)):
        if dim in chosen:
            new = _other(rng, choices, getattr(lay, dim))
            changes.append(Change(0, "layout", dim, repr(getattr(lay, dim)), repr(new)))
            lay = replace(lay, **{dim: new})
    return lay, changes


@register
class Format(Kind):
    name = "format"

    def perturb_item(self, item: Item, rng: random.Random, severity: float) -> tuple[list[Document], list[Change]]:
        for _ in range(8):  # a draw can render the same text (upper-casing the label "A"): draw again
            layout, changes = choose_layout(item.turns[0], rng, severity)
            docs = [replace(doc, layout=layout) for doc in item.turns]
            if any(d.render() != o.render() for d, o in zip(docs, item.turns)):
                return docs, changes
        raise Skip("no layout drawn changes the text")

    def perturb_document(self, doc: Document, rng: random.Random, severity: float, turn: int) -> tuple[Document, list[Change]]:
        docs, changes = self.perturb_item(Item("", (doc,)), rng, severity)
        return docs[0], changes
