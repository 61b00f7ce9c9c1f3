"""A benchmark score (the mean of per-item scores) with a percentile-bootstrap confidence interval.

The item is the resampling unit: pass one value per item (MT-Bench: the mean of its two turn ratings), so
correlated parts of one item are never split. Seeded, so a report is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalsuite.metrics.resampling import resampled_means


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Estimate:
    """Mean of `values` and the percentile bootstrap interval at `confidence`."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci: values must be finite (drop failed items first)")
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(mean, mean, mean, 1, confidence)
    means = resampled_means(x, resamples, seed)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Estimate(mean, float(low), float(high), int(x.size), confidence)
