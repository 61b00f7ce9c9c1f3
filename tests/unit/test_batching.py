import torch

from evalsuite.backends.batching import group_by, left_pad, length_sorted_batches


def test_batches_are_longest_first_and_bounded():
    lengths = [3, 9, 1, 7, 5]
    batches = length_sorted_batches(range(5), lengths, batch_size=2)
    assert batches == [[1, 3], [4, 0], [2]]


def test_budget_closes_batches_early_but_never_drops_items():
    lengths = [10, 10, 10]
    batches = length_sorted_batches(range(3), lengths, batch_size=8, cost=lambda b: 10 * len(b), budget=20)
    assert batches == [[0, 1], [2]]
    assert length_sorted_batches(range(2), [5, 5], 8, cost=lambda b: 100, budget=1) == [[0], [1]]


def test_left_pad_aligns_rows_at_the_end():
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids.dtype == torch.long


def test_group_by_keeps_first_seen_order():
    assert group_by(["b", "a", "b"]) == {"b": [0, 2], "a": [1]}
