"""Scoring work planning (one row per distinct model input, shared prefixes encoded once) and the hf
backend's prefix reuse, checked against unbatched full forwards on a tiny model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from evalsuite.backends import HFConfig, load_backend
from evalsuite.backends.prefix import Row, common_prefix_len, plan_rows, prefix_groups
from evalsuite.backends.tokenization import encode_text


def test_pairs_with_the_same_model_input_share_a_row():
    ctx = [5, 6, 7]
    pairs = [(ctx, [1]), (ctx, [2]), (ctx, [3, 4]), (ctx, [3, 9]), ([8], [1]), (ctx, [])]
    rows = plan_rows(pairs)
    assert [(r.tokens, r.keep, r.pairs) for r in rows] == [
        ((5, 6, 7), 1, (0, 1)),  # one-token continuations read the context's last logits
        ((5, 6, 7, 3), 2, (2, 3)),  # same input ctx+[3]: both read its last two positions
        ((8,), 1, (4,)),
    ]  # the empty continuation needs no row


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2
    assert common_prefix_len([], [1]) == 0


def rows_of(*token_lists, keep=1):
    return [Row(tuple(t), keep, (i,)) for i, t in enumerate(token_lists)]


def test_rows_sharing_a_long_prefix_form_a_group_and_the_rest_run_alone():
    shots = list(range(100, 140))  # 40 shared tokens, like k-shot exemplars
    rows = rows_of(shots + [1, 2, 3], shots + [1, 5], shots + [7, 8, 9, 10], [1, 2, 3], [9] * 50)
    groups = prefix_groups(rows, min_prefix=32)
    assert len(groups) == 2
    assert sorted(groups[0].rows) == [0, 1, 2] and groups[0].prefix_len == 40
    assert sorted(groups[1].rows) == [3, 4] and groups[1].prefix_len == 0


def test_a_prefix_never_covers_a_scored_position():
    rows = [Row(tuple(range(50)), 5, (0,)), Row(tuple(range(60)), 30, (1,))]
    (group,) = prefix_groups(rows, min_prefix=10)
    assert group.prefix_len == 30 == min(r.first_scored for r in rows)


def test_short_prefixes_and_halving_joins_are_refused():
    assert prefix_groups(rows_of([1] * 20 + [2], [1] * 20 + [3]), min_prefix=32)[0].prefix_len == 0
    long = list(range(100))
    rows = rows_of(long + [1], long + [2], long[:40] + [500])  # sorts last; would cut 100 shared to 40
    groups = prefix_groups(rows, min_prefix=32)
    assert [(sorted(g.rows), g.prefix_len) for g in groups] == [([0, 1], 100), ([2], 0)]


def test_sharing_off_keeps_every_row_in_one_unshared_group():
    rows = rows_of(list(range(100)) + [1], list(range(100)) + [2])
    assert [(g.rows, g.prefix_len) for g in prefix_groups(rows, 0)] == [([0, 1], 0)]
    assert prefix_groups([], 32) == []


# ---- the hf backend ---------------------------------------------------------------------------
SHOTS = "".join(f"Question: what is {a} plus {a}? Answer: {2 * a}\n\n" for a in range(2, 9))
QUESTIONS = ["Question: what is nine plus nine? Answer:", "Question: name a colour. Answer:",
             "Question: what is the capital of France? Answer:"]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()


def full_forward_logprobs(model, ctx, cont):
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
    return [logprobs[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont)]


def test_shared_prefix_scores_equal_full_unbatched_forwards(tiny_model_dir, reference, monkeypatch):
    backend = load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32", batch_size=2, prefix_min_tokens=16))
    assert backend._shares_prefixes
    tok = backend.tokenizer
    pairs = [(encode_text(tok, SHOTS + q), encode_text(tok, c)) for q in QUESTIONS for c in (" 18", " red", " Paris is")]
    encoded = []
    original = backend._encode_prefix
    monkeypatch.setattr(backend, "_encode_prefix", lambda prefix: encoded.append(len(prefix)) or original(prefix))
    got = backend.score_ids(pairs)
    assert len(encoded) == 1 and encoded[0] >= len(encode_text(tok, SHOTS))  # the exemplars ran once
    for (ctx, cont), scored in zip(pairs, got):
        assert scored.logprobs == pytest.approx(full_forward_logprobs(reference, ctx, cont), abs=1e-4)
    unshared = load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32", batch_size=2, prefix_min_tokens=0))
    again = unshared.score_ids(pairs)
    assert [s.is_greedy for s in got] == [s.is_greedy for s in again]
    assert [s.total for s in got] == pytest.approx([s.total for s in again], abs=1e-4)
