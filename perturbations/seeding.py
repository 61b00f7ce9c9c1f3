"""Per-item seeding (HELM's rule): a variant's randomness depends only on (item id, kind, variant index,
global seed, severity), never on run order, other items or the process, so every checkpoint sees the same
perturbed text and reruns are byte-identical."""

from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from typing import Iterator


def variant_seed(item_id: str, kind: str, variant: int, seed: int, severity: float) -> int:
    key = f"{item_id}\x1f{kind}\x1f{variant}\x1f{seed}\x1f{severity!r}"
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def variant_rng(item_id: str, kind: str, variant: int, seed: int, severity: float) -> random.Random:
    return random.Random(variant_seed(item_id, kind, variant, seed, severity))


def seed_globals(rng: random.Random) -> None:
    """nlpaug draws from the global `random` and NumPy generators: seed both from `rng` before each call."""
    import numpy as np

    value = rng.getrandbits(32)
    random.seed(value)
    np.random.seed(value)


@contextmanager
def preserved_global_rngs() -> Iterator[None]:
    """Put the global `random` and NumPy states back afterwards, so the caller's own streams are untouched
    (saved once per document: NumPy's get/set_state costs ~100 µs, seeding ~2 µs)."""
    import numpy as np

    state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(state)
        np.random.set_state(np_state)
