"""Protected spans: the parts of a text that no perturbation may alter, and the words that are fair game.

Always protected, whatever the benchmark: numbers and number words (an evaluator may count to them), quoted
text, bracketed placeholders (`[address]`, `<<title>>`), inline code, URLs, and capitalised words
mid-sentence (names: a typo in "Larry Page" asks about someone else). A field adds its own literal strings
(IFEval keywords, end phrases, option words, ...), matched case-insensitively.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

Span = tuple[int, int]

ALWAYS = re.compile(
    r"\d[\d,.:/]*\d|\d"                      # numbers, times, dates
    r'|"[^"\n]*"|“[^”\n]*”|‘[^’\n]*’'       # double/curly quotes
    r"|(?<![A-Za-z])'[^'\n]+'(?![A-Za-z])"   # single quotes, not apostrophes
    r"|\[[^\]\n]*\]|<<[^>\n]*>>|<[^>\n]*>"   # placeholders and tags
    r"|`[^`\n]*`|https?://\S+|\S+@\S+\.\w+"  # code, URLs, e-mails
    r"|(?i:\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
    r"|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred"
    r"|thousand|million|once|twice|thrice|first|second|third|fourth|fifth|half|double|single|dozen)\b)"  # number words
    r"|(?<=[a-z0-9,;:)] )[A-Z][\w'’-]*(?: [A-Z][\w'’-]*)*"  # names mid-sentence ("Larry Page", "Hawaii")
)
WORD = re.compile(r"[A-Za-z]+")


def literal_spans(text: str, literals: Iterable[str]) -> list[Span]:
    spans = []
    lower = text.lower()
    for lit in literals:
        needle = lit.lower()
        if not needle:
            continue
        start = lower.find(needle)
        while start != -1:
            spans.append((start, start + len(needle)))
            start = lower.find(needle, start + 1)
    return spans


def protected_spans(text: str, literals: Iterable[str] = ()) -> list[Span]:
    """Sorted, merged character spans of `text` that must stay as they are."""
    spans = [m.span() for m in ALWAYS.finditer(text)] + literal_spans(text, literals)
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def overlaps(span: Span, spans: Sequence[Span]) -> bool:
    return any(span[0] < b and a < span[1] for a, b in spans)


def free_words(text: str, protected: Sequence[Span], min_len: int = 3) -> list[Span]:
    """Spans of the words a word-level perturbation may touch: alphabetic, `min_len`+ letters, clear of
    every protected span."""
    return [m.span() for m in WORD.finditer(text) if m.end() - m.start() >= min_len and not overlaps(m.span(), protected)]


def apply_edits(text: str, edits: Sequence[tuple[int, int, str]]) -> str:
    """`text` with non-overlapping (start, end, replacement) edits applied."""
    out, pos = [], 0
    for start, end, new in sorted(edits):
        out.append(text[pos:start])
        out.append(new)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def survives(original: str, variant: str, literals: Iterable[str]) -> list[str]:
    """The protected pieces of `original` (always-protected matches and `literals`) missing from `variant`,
    counted with multiplicity: what a perturbation must never lose."""
    lower_variant = variant.lower()
    missing = []
    pieces = [original[a:b] for a, b in (m.span() for m in ALWAYS.finditer(original))]
    pieces += [lit for lit in literals if lit and lit.lower() in original.lower()]
    for piece in set(pieces):
        need = original.lower().count(piece.lower())
        if lower_variant.count(piece.lower()) < need:
            missing.append(piece)
    return sorted(missing)
