"""POSIX (Chatterjee et al., EMNLP Findings 2024), the prompt-sensitivity index the WIT paper reports, as
the paper defines it (DESIGN §3), with the released library's normaliser as an option.

For one set of N intent-equivalent prompts x_1..x_N (an item's clean prompt and its variants) with greedy
responses y_1..y_N:

    ψ = 1/(N(N−1)) · Σ_i Σ_j (1/L_{y_j}) · | log P(y_j | x_i) − log P(y_j | x_j) |

where log P(y | x) is the sum of the token log-probs of y's own token ids after x (teacher-forced) and L_y
is y's length in tokens. The i = j terms are zero. POSIX is the mean ψ over prompt sets; lower is more
robust. `logp[i][j]` is log P(y_j | x_i): row = prompt, column = response.

`normalization` picks the divisor of each term:
- "response_length" (default, the paper's): L_{y_j}, the length of the response being scored;
- "max_new_tokens" (the released POSIX library's): the generation budget `max_new_tokens`, the same for
  every term. Only the divisor changes: the index order stays the paper's (the library also swaps i and j).
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

Normalization = Literal["response_length", "max_new_tokens"]


def normalisers(lengths: Sequence[int], normalization: Normalization, max_new_tokens: int | None) -> list[int]:
    """What each response's terms are divided by, after checking the arguments for `normalization`."""
    if normalization == "response_length":
        if any(length < 1 for length in lengths):
            raise ValueError("every response needs at least one token "
                             "(score the end-of-sequence token of an empty one)")
        return list(lengths)
    if normalization == "max_new_tokens":
        if max_new_tokens is None or max_new_tokens < 1:
            raise ValueError(f"normalization='max_new_tokens' needs max_new_tokens >= 1, not {max_new_tokens!r}")
        return [max_new_tokens] * len(lengths)
    raise ValueError(f"normalization must be 'response_length' or 'max_new_tokens', not {normalization!r}")


def posix_psi(logp: Sequence[Sequence[float]], lengths: Sequence[int], *,
              normalization: Normalization = "response_length", max_new_tokens: int | None = None) -> float:
    """ψ of one prompt set; `normalization` and `max_new_tokens` as in the module docstring."""
    n = len(lengths)
    if n < 2:
        raise ValueError("POSIX needs at least two prompts per set")
    if len(logp) != n or any(len(row) != n for row in logp):
        raise ValueError(f"logp must be {n}×{n} (prompts × responses)")
    divisor = normalisers(lengths, normalization, max_new_tokens)
    total = sum(abs(logp[i][j] - logp[j][j]) / divisor[j] for i in range(n) for j in range(n) if i != j)
    return total / (n * (n - 1))


def posix(prompt_sets: Iterable[tuple[Sequence[Sequence[float]], Sequence[int]]], *,
          normalization: Normalization = "response_length", max_new_tokens: int | None = None) -> float:
    """Mean ψ over prompt sets, each given as (logp matrix, response lengths), all normalised alike."""
    values = [posix_psi(logp, lengths, normalization=normalization, max_new_tokens=max_new_tokens)
              for logp, lengths in prompt_sets]
    if not values:
        raise ValueError("POSIX needs at least one prompt set")
    return sum(values) / len(values)
