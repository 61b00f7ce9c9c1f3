"""Batch planning shared by the local backends."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch

K = TypeVar("K", bound=Hashable)


def group_by(keys: Sequence[K]) -> dict[K, list[int]]:
    """Indices grouped by key, groups in first-seen order."""
    groups: dict[K, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    return dict(groups)


def length_sorted_batches(
    indices: Sequence[int],
    lengths: Sequence[int],
    batch_size: int,
    cost: Callable[[list[int]], int] | None = None,
    budget: int | None = None,
) -> list[list[int]]:
    """Split `indices` into batches of similar length, longest first (an out-of-memory error then shows
    up on the first batch, not after an hour). A batch closes at `batch_size` items or when `cost` of the
    batch would exceed `budget`; a single item always forms a batch."""
    order = sorted(indices, key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        candidate = [*current, i]
        too_big = budget is not None and cost is not None and len(current) > 0 and cost(candidate) > budget
        if len(current) == batch_size or too_big:
            batches.append(current)
            candidate = [i]
        current = candidate
    if current:
        batches.append(current)
    return batches


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input ids and attention mask: every row ends at the last column."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask
