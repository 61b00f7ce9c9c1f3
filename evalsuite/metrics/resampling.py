"""Bootstrap resampling of items in bounded memory, shared by `scores.bootstrap_ci` and
`significance.paired_bootstrap`.

Drawing all resamples × n indices at once costs 8·resamples·n bytes twice (indices, then the gathered
values): ~2 GB for MMLU (n = 14,042) at 10,000 resamples. The same draws are taken here a chunk of rows at a
time, so a chunk holds at most `CHUNK_BYTES` of indices (and as much of gathered values) whatever n is.
"""

from __future__ import annotations

import numpy as np

CHUNK_BYTES = 16 * 2**20  # int64 indices per chunk; the gathered float64 values take as much again


def chunk_rows(n: int, budget: int = CHUNK_BYTES) -> int:
    """Resamples per chunk for n items: as many as fit `budget` bytes of int64 indices, at least 2, and even.
    Even, so that every chunk draws an even number of values: `Generator.integers` serves an int64 range
    that fits 32 bits from 64-bit draws split in two, and a NumPy that kept the unused half only within one
    call would otherwise shift every later chunk (NumPy 2.3 keeps it in the bit generator's state; the tests
    compare against the one-matrix draw)."""
    rows = max(2, budget // (8 * n))
    return rows - rows % 2


def resampled_means(x: np.ndarray, resamples: int, seed: int, budget: int = CHUNK_BYTES) -> np.ndarray:
    """The mean of each of `resamples` bootstrap resamples of `x` (items drawn with replacement): exactly
    `x[default_rng(seed).integers(0, n, size=(resamples, n))].mean(axis=1)`, drawn in chunks of rows."""
    rng = np.random.default_rng(seed)
    rows = chunk_rows(x.size, budget)
    means = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    return means
