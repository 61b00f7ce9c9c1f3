"""What a perturbation works on: an item's text as structured fields, so that a change can touch the words
of a field (typo, rephrase) or only the layout around them (format) and never what is protected.

A `Document` is one prompt body (one user turn): fields in order, each with an optional label
(`Question`, `Q`, `Answer`), an editable text and literal substrings that must survive unchanged, plus at
most one block of answer options. `render()` with the default `Layout` reproduces the benchmark's own text
exactly (the adapters in `perturbations.benchmarks` are tested for that), so a variant differs from the
clean prompt only by what its kind changed. An `Item` is one or more documents (MT-Bench has two turns).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

OPTION_STYLES = ("A.", "(A)", "A)", "a)", "a.", "(a)", "1.", "(1)", "[A]")
# A variant's prompt format meaning "whichever of plain / chat template the run does not use" (kind
# `template`): the package cannot know the checkpoint's format, the runner resolves it.
OTHER_PROMPT_FORMAT = "other"


@dataclass(frozen=True)
class Field:
    name: str  # what the field holds: question, input, prompt, answer, ...
    text: str
    label: str | None = None  # rendered as "<label><label_sep><text>"
    editable: bool = True  # False: typo and rephrase leave the whole text alone
    protected: tuple[str, ...] = ()  # literal substrings never altered (where they occur in `text`)


@dataclass(frozen=True)
class Options:
    """Answer options, rendered one per line as "<label> <text>" under an optional heading ("Options:")."""

    texts: tuple[str, ...]
    heading: str | None = None
    after: str = ""  # name of the field the block follows


@dataclass(frozen=True)
class Layout:
    label_sep: str = ": "  # between a label and its text
    field_sep: str = "\n"  # between fields (and around the options block)
    label_case: str = "as_is"  # as_is | upper | lower | title
    labels: tuple[tuple[str, str | None], ...] = ()  # (field name, replacement label); None removes it
    option_style: str = "A."
    option_sep: str = "\n"
    prompt_format: str | None = None  # None: whatever the run uses; OTHER_PROMPT_FORMAT: the other one

    def label_for(self, f: Field) -> str | None:
        relabel = dict(self.labels)
        label = relabel[f.name] if f.name in relabel else f.label
        if label is None:
            return None
        return {"upper": label.upper(), "lower": label.lower(), "title": label.title()}.get(self.label_case, label)


def option_label(style: str, index: int) -> str:
    """The label of option `index` in `style`: "A." → "C.", "(1)" → "(3)"."""
    if "A" in style:
        return style.replace("A", chr(ord("A") + index))
    if "a" in style:
        return style.replace("a", chr(ord("a") + index))
    return style.replace("1", str(index + 1))


def answer_label(style: str, index: int) -> str:
    """What names option `index` in an answer under `style`: the label without its punctuation for
    `A.`-like styles ("C"), the full label for bracketed ones ("(C)"), as BBH and MMLU targets are written."""
    label = option_label(style, index)
    return label.rstrip(".)") if not label.startswith(("(", "[")) else label


def relabel(text: str, style: str, target_style: str, count: int) -> str:
    """`text` (a model's answer) with option labels written in `style` rewritten in `target_style`, so an
    answer to a relabelled variant ("(b)", "2.") can be scored by the benchmark's own extraction ("(B)").
    A label counts only where no letter or digit touches it; a bare answer ("b", "2") is mapped as well."""
    import re

    if style == target_style or count < 1:
        return text
    labels = [option_label(style, i) for i in range(count)]
    targets = [option_label(target_style, i) for i in range(count)]
    bare = {answer_label(style, i).strip("()[]"): i for i in range(count)}
    stripped = text.strip().rstrip(".").strip("()[]")
    if stripped in bare:
        return targets[bare[stripped]]
    pattern = re.compile("|".join(rf"(?<![A-Za-z0-9]){re.escape(lab)}(?![A-Za-z0-9])" for lab in labels))
    return pattern.sub(lambda m: targets[labels.index(m.group(0))], text)


@dataclass(frozen=True)
class Document:
    fields: tuple[Field, ...]
    options: Options | None = None
    layout: Layout = field(default_factory=Layout)
    suffix: str = ""  # rendered verbatim after the last field (lm-eval's CoT prompt ends in a newline)

    def render(self) -> str:
        lay = self.layout
        parts: list[str] = []
        for f in self.fields:
            label = lay.label_for(f)
            if label is None:
                parts.append(f.text)
            elif f.text:
                parts.append(f"{label}{lay.label_sep}{f.text}")
            else:  # an empty field is a cue ("Answer:"): the separator without its trailing whitespace
                parts.append(f"{label}{lay.label_sep.rstrip()}")
            if self.options is not None and self.options.after == f.name:
                parts.append(self.render_options())
        return lay.field_sep.join(parts) + self.suffix

    def render_options(self) -> str:
        assert self.options is not None
        lay = self.layout
        lines = lay.option_sep.join(f"{option_label(lay.option_style, i)} {t}" for i, t in enumerate(self.options.texts))
        relabel = dict(lay.labels)
        heading = relabel.get("options", self.options.heading) if "options" in relabel else self.options.heading
        if heading is None:
            return lines
        heading = {"upper": heading.upper(), "lower": heading.lower(), "title": heading.title()}.get(lay.label_case, heading)
        return f"{heading}{lay.label_sep.rstrip()}{lay.option_sep}{lines}"

    def choice_labels(self) -> list[str] | None:
        """How each option is named in an answer under this layout (None: no options)."""
        if self.options is None:
            return None
        return [answer_label(self.layout.option_style, i) for i in range(len(self.options.texts))]

    def with_edits(self, edits: dict[int, list[tuple[int, int, str]]]) -> "Document":
        """The same document with (start, end, replacement) edits applied to the fields they index."""
        from perturbations.spans import apply_edits

        return self.with_texts([apply_edits(f.text, edits[i]) if i in edits else f.text for i, f in enumerate(self.fields)])

    def with_texts(self, texts: Sequence[str]) -> "Document":
        """The same document with new field texts (in field order)."""
        return replace(self, fields=tuple(replace(f, text=t) for f, t in zip(self.fields, texts)))


@dataclass(frozen=True)
class Item:
    id: str
    turns: tuple[Document, ...]
    benchmark: str = ""

    @property
    def multi_turn(self) -> bool:
        return len(self.turns) > 1
