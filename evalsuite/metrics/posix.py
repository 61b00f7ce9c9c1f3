"""POSIX (Chatterjee et al., EMNLP Findings 2024), the prompt-sensitivity index the WIT paper reports, as
the paper defines it (DESIGN §3; the released library swaps indices and divides by max_new_tokens).

For one set of N intent-equivalent prompts x_1..x_N (an item's clean prompt and its variants) with greedy
responses y_1..y_N:

    ψ = 1/(N(N−1)) · Σ_i Σ_j (1/L_{y_j}) · | log P(y_j | x_i) − log P(y_j | x_j) |

where log P(y | x) is the sum of the token log-probs of y's own token ids after x (teacher-forced) and L_y
is y's length in tokens. The i = j terms are zero. POSIX is the mean ψ over prompt sets; lower is more
robust. `logp[i][j]` is log P(y_j | x_i): row = prompt, column = response.
"""

from __future__ import annotations

from typing import Iterable, Sequence


def posix_psi(logp: Sequence[Sequence[float]], lengths: Sequence[int]) -> float:
    n = len(lengths)
    if n < 2:
        raise ValueError("POSIX needs at least two prompts per set")
    if len(logp) != n or any(len(row) != n for row in logp):
        raise ValueError(f"logp must be {n}×{n} (prompts × responses)")
    if any(length < 1 for length in lengths):
        raise ValueError("every response needs at least one token (score the end-of-sequence token of an empty one)")
    total = sum(abs(logp[i][j] - logp[j][j]) / lengths[j] for i in range(n) for j in range(n) if i != j)
    return total / (n * (n - 1))


def posix(prompt_sets: Iterable[tuple[Sequence[Sequence[float]], Sequence[int]]]) -> float:
    """Mean ψ over prompt sets, each given as (logp matrix, response lengths)."""
    values = [posix_psi(logp, lengths) for logp, lengths in prompt_sets]
    if not values:
        raise ValueError("POSIX needs at least one prompt set")
    return sum(values) / len(values)
