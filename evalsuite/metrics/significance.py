"""Paired significance of one grid cell against another (the WIT paper's reference is the (0, 1) cell) on the
same items: McNemar's test for accuracy, a paired bootstrap for any score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalsuite.metrics.resampling import resampled_means


@dataclass(frozen=True)
class McNemar:
    only_a: int  # items a got right and b wrong
    only_b: int  # items b got right and a wrong
    statistic: float  # exact test: min(only_a, only_b); else the continuity-corrected chi-square
    p_value: float
    exact: bool


def mcnemar(a: Sequence[bool], b: Sequence[bool], exact_below: int = 25) -> McNemar:
    """Two-sided McNemar test on paired correctness: the exact binomial test when the discordant pairs are
    fewer than `exact_below` (the usual rule), else chi-square with continuity correction (1 d.f.)."""
    from scipy.stats import binomtest, chi2

    if len(a) != len(b):
        raise ValueError("mcnemar: a and b must be paired (same length)")
    only_a = sum(bool(x) and not y for x, y in zip(a, b))
    only_b = sum(bool(y) and not x for x, y in zip(a, b))
    discordant = only_a + only_b
    if discordant == 0:
        return McNemar(0, 0, 0.0, 1.0, True)
    if discordant < exact_below:
        return McNemar(only_a, only_b, float(min(only_a, only_b)),
                       float(binomtest(min(only_a, only_b), discordant, 0.5).pvalue), True)
    stat = (abs(only_a - only_b) - 1) ** 2 / discordant
    return McNemar(only_a, only_b, float(stat), float(chi2.sf(stat, 1)), False)


@dataclass(frozen=True)
class PairedBootstrap:
    difference: float  # mean(b) − mean(a)
    low: float
    high: float
    p_value: float  # two-sided: how often the resampled difference falls on the other side of 0
    n: int


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0) -> PairedBootstrap:
    """Resample items (keeping each item's pair together) to get the spread of mean(b) − mean(a)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("paired_bootstrap: a and b must be paired, non-empty sequences")
    d = y - x
    observed = float(d.mean())
    means = resampled_means(d, resamples, seed)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    if np.all(d == 0):
        p = 1.0
    else:
        p = min(1.0, 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return PairedBootstrap(observed, float(low), float(high), p, int(d.size))
