"""The weighted instruction-tuning (WIT) loss, Chatterjee et al. 2025 (arXiv 2507.07817) eq. 2.

Token t carries weight λp if it belongs to the prompt, λr if it belongs to the response. The loss is
Σ w_t · NLL_t divided by the number of targets whose weight is non-zero (not by the sum of weights),
pooled over the whole optimizer step. Targets with weight 0 or label −100 are in neither the sum nor
the count, so (0, 1) is exactly completion-only loss and (1, 1) exactly the plain causal-LM loss.

The two halves are separate functions because the trainer gets per-token log-probs from TRL's fused LM
head (it never builds the [B, T, V] logits) while `wit_loss` takes logits: both use `target_weights`
and `reduce_weighted_nll`, so the weighting and the normaliser live in one place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
# Positions per chunk of the float32 log-softmax in `wit_loss`: 2048 × 49k vocab × 4 B ≈ 400 MB at most.
LOSS_CHUNK_POSITIONS = 2048


def check_lambdas(lambda_p: float, lambda_r: float) -> None:
    for name, value in (("lambda_p", lambda_p), ("lambda_r", lambda_r)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if lambda_p == 0 and lambda_r == 0:
        raise ValueError("lambda_p and lambda_r are both 0: no token would be trained")


def target_weights(labels: torch.Tensor, prompt_mask: torch.Tensor, lambda_p: float, lambda_r: float) -> torch.Tensor:
    """Weight of each next-token target, shape [B, T-1]: target t+1 gets λp if token t+1 is a prompt
    token, else λr; 0 where the label is −100."""
    if labels.shape != prompt_mask.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and prompt_mask {tuple(prompt_mask.shape)} differ in shape")
    shifted_labels, shifted_prompt = labels[:, 1:], prompt_mask[:, 1:].bool()
    # float64 so that λ = 0.4 is 0.4 for float64 callers; cast to the NLL dtype when reduced.
    as64 = dict(dtype=torch.float64, device=labels.device)
    weights = torch.where(shifted_prompt, torch.tensor(lambda_p, **as64), torch.tensor(lambda_r, **as64))
    return weights.masked_fill(shifted_labels == IGNORE_INDEX, 0.0)


def reduce_weighted_nll(
    token_nll: torch.Tensor, weights: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Σ w·NLL / count, where count is `num_items_in_batch` (the non-zero-weight targets of the whole
    optimizer step) or, when not given, this batch's non-zero-weight targets. A batch with no trainable
    target gives a differentiable 0, not NaN."""
    token_nll = _at_least_fp32(token_nll)
    total = (token_nll * weights.to(token_nll.dtype)).sum()
    if num_items_in_batch is None:
        num_items_in_batch = (weights != 0).sum()
    count = torch.as_tensor(num_items_in_batch, device=total.device).clamp(min=1)
    return total / count


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _chunk_nll(flat_logits: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(_at_least_fp32(flat_logits.index_select(0, rows)), targets, reduction="none")


def wit_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    prompt_mask: torch.Tensor,
    lambda_p: float,
    lambda_r: float,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """WIT loss for causal-LM `logits` [B, T, V] and `labels` [B, T] aligned with `input_ids` (the
    shift happens here); `prompt_mask` [B, T] is True on prompt tokens.

    Memory: only the positions with a non-zero weight are scored, a chunk at a time, each chunk's
    float32 log-softmax recomputed in backward (activation checkpointing) instead of kept, so the
    extra memory is one chunk's log-softmax whatever B·T is.
    """
    check_lambdas(lambda_p, lambda_r)
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    weights = target_weights(labels, prompt_mask, lambda_p, lambda_r)
    batch, length, vocab = logits.shape
    # Target (b, t+1) is predicted by logits row b*T + t of the flattened (not copied) logits.
    b_idx, t_idx = (weights != 0).nonzero(as_tuple=True)
    rows = b_idx * length + t_idx
    targets = labels[b_idx, t_idx + 1]
    flat = logits.reshape(batch * length, vocab)
    pieces = []
    for start in range(0, rows.numel(), LOSS_CHUNK_POSITIONS):
        sl = slice(start, start + LOSS_CHUNK_POSITIONS)
        if flat.requires_grad:
            pieces.append(checkpoint(_chunk_nll, flat, rows[sl], targets[sl], use_reentrant=False))
        else:
            pieces.append(_chunk_nll(flat, rows[sl], targets[sl]))
    nll = torch.cat(pieces) if pieces else flat.sum() * 0.0  # keeps an empty batch connected to the graph
    token_weights = weights[b_idx, t_idx]
    if not pieces:
        return reduce_weighted_nll(nll.reshape(1), token_weights.new_zeros(1), num_items_in_batch)
    return reduce_weighted_nll(nll, token_weights, num_items_in_batch)
