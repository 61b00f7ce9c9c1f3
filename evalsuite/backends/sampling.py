"""Per-request seeded sampling for the transformers backend.

`model.generate(do_sample=True)` draws every row from one global RNG, so a request's sample depends on
which other requests share its batch. This processor draws each row from its own generator seeded by
the request, then leaves a single finite logit so greedy search picks the drawn token: the same seed
gives the same sample whatever the batching, as vLLM's per-request seeds do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Drop a token once the mass before it already reaches top_p (the first token always stays).
    drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


class SeededSampler(LogitsProcessor):
    def __init__(self, seeds: Sequence[int | None], temperature: float, top_p: float) -> None:
        self.temperature = temperature
        self.top_p = top_p
        # Unseeded requests draw their seed from torch's global RNG (so torch.manual_seed still governs
        # them) without reseeding it.
        self.seeds = [int(s) if s is not None else int(torch.randint(0, 2**62, (1,)).item()) for s in seeds]
        self.generators: list[torch.Generator] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.generators:  # created on the logits' device, so sampling never leaves the GPU
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        probs = _top_p_filter(probs, self.top_p)
        chosen = torch.stack(
            [torch.multinomial(probs[row], 1, generator=gen)[0] for row, gen in enumerate(self.generators)]
        )
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen[:, None], 0.0)
        return out
