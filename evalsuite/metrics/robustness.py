"""How answers hold up under one perturbation kind, from clean and perturbed results of the same items.

Inputs are keyed by item id (HELM's pairing: a perturbed copy keeps its item's id):
- `clean[id] = (answer, score)`: the extracted answer (any comparable value; None where there is none, e.g.
  free text) and the item's score in [0, 1] (1 = correct) or any scale for rated tasks;
- `perturbed[id] = [(answer, score), ...]`: one pair per variant.
Items missing on either side (skipped variants, failed judgements) are left out and counted.

Definitions, over (item, variant) pairs unless said otherwise:
- agreement: the perturbed answer equals the clean answer (pairs where both answers exist);
- correct→wrong / wrong→correct: the share of all pairs whose correctness flips that way (scores 0/1 only);
  their difference is the accuracy drop;
- perturbed score: the mean score over pairs; performance drop rate (PromptBench): 1 − perturbed / clean,
  with clean the mean clean score of the same items (None when that is 0);
- worst case, two readings, each per item and then averaged over items:
  `worst_case_perturbed` = the lowest score over its perturbed variants only;
  `worst_case_with_clean` = the lowest score over the clean answer and its variants, HELM's robustness
  worst case (a variant that does better than the clean prompt cannot lift it above the clean score).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

Answer = tuple[Any, float]


@dataclass(frozen=True)
class Robustness:
    """The metrics of the module docstring; of the two worst cases, `worst_case_with_clean` is HELM's."""

    items: int  # items with a clean result and at least one variant
    pairs: int  # (item, variant) pairs
    missing: int  # items with a clean result but no variant, or the reverse
    clean_score: float
    perturbed_score: float
    performance_drop_rate: float | None
    worst_case_perturbed: float  # mean over items of min(variant scores); not HELM's
    worst_case_with_clean: float  # mean over items of min(clean score, variant scores): HELM's worst case
    agreement: float | None  # None: no pair had answers on both sides
    correct_to_wrong: float | None  # None: scores are not all 0/1
    wrong_to_correct: float | None


def robustness(clean: Mapping[str, Answer], perturbed: Mapping[str, Sequence[Answer]]) -> Robustness:
    ids = [i for i in clean if perturbed.get(i)]
    missing = len(set(clean) ^ set(perturbed)) + sum(1 for i in clean if i in perturbed and not perturbed[i])
    if not ids:
        raise ValueError("no item has both a clean result and a perturbed one")
    pairs = [(clean[i], p) for i in ids for p in perturbed[i]]
    clean_score = sum(clean[i][1] for i in ids) / len(ids)
    perturbed_score = sum(p[1] for _, p in pairs) / len(pairs)
    answered = [(c[0], p[0]) for c, p in pairs if c[0] is not None and p[0] is not None]
    binary = all(s in (0, 1, 0.0, 1.0, True, False) for c, p in pairs for s in (c[1], p[1]))
    return Robustness(
        items=len(ids), pairs=len(pairs), missing=missing, clean_score=clean_score, perturbed_score=perturbed_score,
        performance_drop_rate=None if clean_score == 0 else 1 - perturbed_score / clean_score,
        worst_case_perturbed=sum(min(p[1] for p in perturbed[i]) for i in ids) / len(ids),
        worst_case_with_clean=sum(min(clean[i][1], *(p[1] for p in perturbed[i])) for i in ids) / len(ids),
        agreement=sum(a == b for a, b in answered) / len(answered) if answered else None,
        correct_to_wrong=sum(bool(c[1]) and not p[1] for c, p in pairs) / len(pairs) if binary else None,
        wrong_to_correct=sum(not c[1] and bool(p[1]) for c, p in pairs) / len(pairs) if binary else None,
    )
