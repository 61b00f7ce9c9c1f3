"""Exactness of the WIT loss: against the model's own loss, TRL's completion-only loss, and by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from evalsuite.training import wit_loss
from evalsuite.training.loss import target_weights


def _batch(seed: int = 0, batch: int = 4, length: int = 9, vocab: int = 13):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=g, dtype=torch.float64)
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    lengths = [9, 7, 5, 8][:batch]
    prompt_lens = [3, 4, 2, 5][:batch]
    prompt_mask = torch.zeros(batch, length, dtype=torch.bool)
    for b, (n, p) in enumerate(zip(lengths, prompt_lens)):
        labels[b, n:] = -100  # right padding
        prompt_mask[b, :p] = True
    return logits, labels, prompt_mask


def _hand(logits, labels, prompt_mask, lp, lr):
    """Explicit double loop over every (sequence, position), in float64."""
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(1, labels.shape[1]):
            if labels[b, t] == -100:
                continue
            w = lp if prompt_mask[b, t] else lr
            if w == 0:
                continue
            logp = torch.log_softmax(logits[b, t - 1].double(), -1)[labels[b, t]].item()
            total += -w * logp
            count += 1
    return total / count, count


def test_one_one_equals_plain_causal_lm_loss(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.randint(3, model.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(1))
    attn = torch.ones_like(ids)
    attn[1, 8:] = 0
    labels = ids.masked_fill(attn == 0, -100)
    out = model(input_ids=ids, attention_mask=attn, labels=labels)
    prompt_mask = torch.zeros_like(ids, dtype=torch.bool)
    prompt_mask[:, :4] = True
    ours = wit_loss(out.logits, labels, prompt_mask, 1.0, 1.0)
    torch.testing.assert_close(ours, out.loss, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lp,lr", [(0.4, 1.0), (1.0, 0.2), (0.6, 0.8), (0.0, 1.0), (1.0, 0.0)])
def test_matches_hand_computation(lp, lr):
    logits, labels, prompt_mask = _batch()
    expected, _ = _hand(logits, labels, prompt_mask, lp, lr)
    got = wit_loss(logits, labels, prompt_mask, lp, lr)
    assert math.isclose(got.item(), expected, rel_tol=1e-9)


def test_denominator_counts_non_zero_weight_targets_not_weight_sum():
    logits, labels, prompt_mask = _batch()
    n_prompt = int((prompt_mask[:, 1:] & (labels[:, 1:] != -100)).sum())
    n_resp = int((~prompt_mask[:, 1:] & (labels[:, 1:] != -100)).sum())
    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    valid = labels[:, 1:] != -100
    resp_sum = nll[valid & ~prompt_mask[:, 1:]].sum().item()
    prompt_sum = nll[valid & prompt_mask[:, 1:]].sum().item()
    # λp = 0: prompt tokens are in neither the sum nor the count.
    assert math.isclose(wit_loss(logits, labels, prompt_mask, 0.0, 1.0).item(), resp_sum / n_resp, rel_tol=1e-9)
    # λp = 0.2: every prompt token joins the count at full weight 1 (the paper's normaliser), not 0.2.
    expected = (0.2 * prompt_sum + resp_sum) / (n_prompt + n_resp)
    assert math.isclose(wit_loss(logits, labels, prompt_mask, 0.2, 1.0).item(), expected, rel_tol=1e-9)
    assert not math.isclose(expected, (0.2 * prompt_sum + resp_sum) / (0.2 * n_prompt + n_resp), rel_tol=1e-3)


def test_zero_prompt_weight_ignores_prompt_logits():
    logits, labels, prompt_mask = _batch()
    base = wit_loss(logits, labels, prompt_mask, 0.0, 1.0)
    noisy = logits.clone()
    # Scramble the logits that predict prompt tokens (positions t-1 for prompt targets t).
    predicts_prompt = torch.zeros_like(prompt_mask)
    predicts_prompt[:, :-1] = prompt_mask[:, 1:]
    noisy[predicts_prompt] += 50 * torch.randn_like(noisy[predicts_prompt])
    assert torch.equal(wit_loss(noisy, labels, prompt_mask, 0.0, 1.0), base)


def test_num_items_in_batch_overrides_local_count():
    logits, labels, prompt_mask = _batch()
    local, count = _hand(logits, labels, prompt_mask, 0.4, 1.0)
    got = wit_loss(logits, labels, prompt_mask, 0.4, 1.0, num_items_in_batch=3 * count)
    assert math.isclose(got.item(), local / 3, rel_tol=1e-9)


def test_gradient_matches_dense_computation_across_chunks(monkeypatch):
    import evalsuite.training.loss as loss_mod

    monkeypatch.setattr(loss_mod, "LOSS_CHUNK_POSITIONS", 5)  # force several checkpointed chunks
    logits, labels, prompt_mask = _batch(seed=3)
    a = logits.clone().requires_grad_(True)
    wit_loss(a, labels, prompt_mask, 0.4, 0.8).backward()
    b = logits.clone().requires_grad_(True)
    w = target_weights(labels, prompt_mask, 0.4, 0.8).double()
    nll = F.cross_entropy(b[:, :-1].reshape(-1, b.shape[-1]), labels[:, 1:].reshape(-1), reduction="none", ignore_index=-100)
    ((nll * w.reshape(-1)).sum() / (w != 0).sum()).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_bf16_logits_are_scored_in_float32():
    logits, labels, prompt_mask = _batch()
    got = wit_loss(logits.bfloat16(), labels, prompt_mask, 0.4, 1.0)
    expected, _ = _hand(logits.bfloat16().double(), labels, prompt_mask, 0.4, 1.0)
    assert got.dtype == torch.float32
    assert math.isclose(got.item(), expected, rel_tol=1e-5)


def test_batch_without_trainable_target_is_zero_and_differentiable():
    logits, labels, prompt_mask = _batch()
    labels[:] = -100
    x = logits.clone().requires_grad_(True)
    loss = wit_loss(x, labels, prompt_mask, 0.4, 1.0)
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None and not x.grad.any()


@pytest.mark.parametrize("lp,lr,msg", [(1.2, 1.0, "lambda_p"), (0.5, -0.1, "lambda_r"), (0.0, 0.0, "both 0")])
def test_rejects_bad_lambdas(lp, lr, msg):
    logits, labels, prompt_mask = _batch()
    with pytest.raises(ValueError, match=msg):
        wit_loss(logits, labels, prompt_mask, lp, lr)


def test_shape_mismatch_is_an_error():
    logits, labels, prompt_mask = _batch()
    with pytest.raises(ValueError, match="differ in shape"):
        wit_loss(logits, labels, prompt_mask[:, :-1], 0.4, 1.0)
