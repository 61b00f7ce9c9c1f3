"""Work planning for teacher-forced scoring: answer each distinct model input once, and run a prefix that
many inputs share once, reusing its KV cache.

Two savings, both exact up to floating-point summation order:
- **Rows.** A (context, continuation) pair needs the model on `context + continuation[:-1]`. Pairs with the
  same such input (MMLU's four one-token answers " A".." D" after one prompt) share one row and read their
  log-probs from the same logits, as lm-eval's `logits_cache` does.
- **Shared prefixes.** Rows that begin with the same long token run (k-shot exemplars and a task
  description, a chat template's system header) form a group: the run is encoded once and its keys and
  values are reused by every row of the group, which then only pays for its own suffix. Rows are grouped
  greedily in sorted token order; a group's prefix is the longest common prefix of its rows, kept short of
  every row's first scored position, and a row joins only while the shared part stays at least
  `min_prefix` tokens long and at least half of what the group already shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

TokenPair = tuple[list[int], list[int]]


@dataclass(frozen=True)
class Row:
    """One model input (`context + continuation[:-1]`) and the pairs read from its last `keep` logits."""

    tokens: tuple[int, ...]
    keep: int
    pairs: tuple[int, ...]

    @property
    def first_scored(self) -> int:
        """Number of leading tokens whose logits no pair reads: the most a shared prefix may cover."""
        return len(self.tokens) - self.keep


@dataclass
class PrefixGroup:
    """Rows that share their first `prefix_len` tokens (0: nothing shared, each row runs on its own)."""

    prefix_len: int
    rows: list[int] = field(default_factory=list)


def plan_rows(pairs: Sequence[TokenPair]) -> list[Row]:
    """Distinct model inputs, in first-seen order. Pairs with an empty continuation need no row."""
    members: dict[tuple[int, ...], list[int]] = {}
    for i, (context, continuation) in enumerate(pairs):
        if continuation:
            members.setdefault(tuple(context + continuation[:-1]), []).append(i)
    return [Row(tokens, max(len(pairs[i][1]) for i in idx), tuple(idx)) for tokens, idx in members.items()]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prefix_groups(rows: Sequence[Row], min_prefix: int) -> list[PrefixGroup]:
    """Rows grouped by a shared leading token run (see the module docstring); `min_prefix` 0 turns
    sharing off. Rows that share with no other row come last, in one group with `prefix_len` 0."""
    if min_prefix <= 0:
        return [PrefixGroup(0, list(range(len(rows))))] if rows else []
    groups: list[PrefixGroup] = []
    for r in sorted(range(len(rows)), key=lambda i: rows[i].tokens):
        row = rows[r]
        if groups:
            group = groups[-1]
            shared = min(common_prefix_len(rows[group.rows[0]].tokens, row.tokens), group.prefix_len, row.first_scored)
            # The first join may cut the founder's full context down to what is common; later joins must
            # not halve what the group already shares (that row belongs to a group of its own).
            if shared >= min_prefix and (len(group.rows) == 1 or 2 * shared >= group.prefix_len):
                group.rows.append(r)
                group.prefix_len = shared
                continue
        groups.append(PrefixGroup(row.first_scored, [r]))
    shared = [g for g in groups if len(g.rows) > 1]
    alone = [g.rows[0] for g in groups if len(g.rows) == 1]
    return shared + ([PrefixGroup(0, alone)] if alone else [])
