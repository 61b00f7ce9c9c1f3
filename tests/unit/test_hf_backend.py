"""The transformers backend against independent, unbatched, unpadded computations on a tiny model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from evalsuite.backends import GenerationRequest, HFConfig, LoglikelihoodRequest, ScoreRequest, load_backend
from evalsuite.backends import hf_backend
from evalsuite.backends.tokenization import encode_pair, encode_text

PAIRS = [
    ("Question: what is two plus two? Answer:", " four"),
    ("The quick brown fox", " jumps over the lazy dog."),
    ("Paris is the capital of", " France"),
    ("A", " B C D answer the following"),
    ("Write a short poem about the sea, the sky, and", " the wind."),
]
PROMPTS = ["The quick brown", "Question: what is", "Paris is the capital of France; Berlin", "A B"]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()


def direct_token_logprobs(model, ctx, cont):
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
    positions = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
    lps = [logprobs[p, t].item() for p, t in zip(positions, cont)]
    greedy = all(logprobs[p].argmax().item() == t for p, t in zip(positions, cont))
    return lps, greedy


def direct_greedy(model, prompt_ids, n, eos):
    ids = list(prompt_ids)
    out = []
    for _ in range(n):
        with torch.no_grad():
            nxt = model(torch.tensor([ids])).logits[0, -1].argmax().item()
        if nxt == eos:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


def test_loglikelihood_equals_unbatched_forward(tiny_hf, reference):
    results = tiny_hf.loglikelihood([LoglikelihoodRequest(c, x) for c, x in PAIRS])
    for (ctx, cont), res in zip(PAIRS, results):
        c_ids, x_ids = encode_pair(tiny_hf.tokenizer, ctx, cont)
        lps, greedy = direct_token_logprobs(reference, c_ids, x_ids)
        assert res.logprob == pytest.approx(sum(lps), abs=1e-4)
        assert res.num_tokens == len(x_ids)
        assert res.is_greedy == greedy


def test_score_gives_per_token_logprobs(tiny_hf, reference):
    tok = tiny_hf.tokenizer
    requests = [ScoreRequest(c, tuple(encode_text(tok, x))) for c, x in PAIRS]
    for req, scored in zip(requests, tiny_hf.score(requests)):
        lps, _ = direct_token_logprobs(reference, encode_text(tok, req.prompt), list(req.response_token_ids))
        assert scored.logprobs == pytest.approx(lps, abs=1e-4)
        assert scored.total == pytest.approx(sum(lps), abs=1e-4)


def test_is_greedy_true_exactly_for_the_greedy_continuation(tiny_hf, reference):
    tok = tiny_hf.tokenizer
    ctx = encode_text(tok, "The quick brown fox")
    greedy_ids = direct_greedy(reference, ctx, 4, eos=-1)
    other = list(greedy_ids)
    other[-1] = (other[-1] + 1) % len(tok)
    s_greedy, s_other = tiny_hf.score_ids([(ctx, greedy_ids), (ctx, other)])
    assert s_greedy.is_greedy and not s_other.is_greedy


def test_scoring_is_independent_of_batch_size_and_logit_budget(tiny_model_dir, tiny_hf, monkeypatch):
    requests = [LoglikelihoodRequest(c, x) for c, x in PAIRS]
    expected = [r.logprob for r in tiny_hf.loglikelihood(requests)]
    single = load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32", batch_size=1))
    assert [r.logprob for r in single.loglikelihood(requests)] == pytest.approx(expected, abs=1e-5)
    monkeypatch.setattr(hf_backend, "SCORE_LOGITS_BUDGET", 1)  # forces one row per batch
    assert [r.logprob for r in tiny_hf.loglikelihood(requests)] == pytest.approx(expected, abs=1e-5)


def test_greedy_generation_matches_a_manual_loop_and_ignores_batching(tiny_hf, reference, tiny_model_dir):
    tok = tiny_hf.tokenizer
    requests = [GenerationRequest(prompt=p, max_new_tokens=8) for p in PROMPTS]
    batched = tiny_hf.generate(requests)
    single = load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32", batch_size=1)).generate(requests)
    for prompt, b, s in zip(PROMPTS, batched, single):
        manual = direct_greedy(reference, encode_text(tok, prompt), 8, tok.eos_token_id)
        assert b.token_ids == s.token_ids == manual
        assert b.text == tok.decode(manual, skip_special_tokens=True)
        assert b.finish_reason == ("length" if len(manual) == 8 else "stop")


def test_chat_messages_are_rendered_with_the_template(tiny_hf, reference):
    tok = tiny_hf.tokenizer
    msgs = [{"role": "user", "content": "what is two plus two?"}]
    gen = tiny_hf.generate([GenerationRequest(messages=msgs, max_new_tokens=5)])[0]
    ids = encode_text(tok, tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    assert gen.token_ids == direct_greedy(reference, ids, 5, tok.eos_token_id)


def test_stop_strings_cut_the_text_and_finish_with_stop(tiny_hf):
    full = tiny_hf.generate([GenerationRequest(prompt="The quick brown", max_new_tokens=12)])[0]
    assert len(full.text) > 3
    stop = full.text[2:4]
    cut = tiny_hf.generate([GenerationRequest(prompt="The quick brown", max_new_tokens=12, stop=(stop,))])[0]
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    # the ids are the answer's, without the stop string's tokens (POSIX scores exactly these ids): the longest
    # run of generated tokens inside the answer; the next one already holds (part of) the stop string
    decode = lambda ids: tiny_hf.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    k = len(cut.token_ids)
    assert cut.token_ids == full.token_ids[:k] and k < len(full.token_ids)
    assert cut.text.startswith(decode(cut.token_ids)) and not cut.text.startswith(decode(full.token_ids[: k + 1]))
    boundary = decode(full.token_ids[:3])  # a stop string that starts exactly at a token boundary: all ids kept
    at = tiny_hf.generate([GenerationRequest(prompt="The quick brown", max_new_tokens=12,
                                             stop=(full.text[len(boundary):len(boundary) + 2],))])[0]
    assert full.text.find(full.text[len(boundary):len(boundary) + 2]) == len(boundary)  # (its first occurrence)
    assert at.text == boundary and at.token_ids == full.token_ids[:3]


def test_over_long_prompts_keep_their_end_and_are_counted(tiny_hf):
    """The tiny model has 128 positions: a longer prompt is cut from the left (lm-eval's rule) and every answer
    says by how many tokens, for generation, log-likelihood and scoring alike."""
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 40
    short, long = tiny_hf.generate([GenerationRequest(prompt=p, max_new_tokens=4) for p in ("Hi there", long_prompt)])
    assert short.truncated_tokens == 0 and long.truncated_tokens > 0
    n_prompt = len(tiny_hf.tokenizer(long_prompt, add_special_tokens=False)["input_ids"])
    assert long.truncated_tokens == n_prompt - (tiny_hf.max_length - 4)
    ll = tiny_hf.loglikelihood([LoglikelihoodRequest(long_prompt, " fox"), LoglikelihoodRequest("The", " fox")])
    assert ll[0].truncated_tokens > 0 and ll[1].truncated_tokens == 0
    assert tiny_hf.score([ScoreRequest(long_prompt, (5, 6))])[0].truncated_tokens > 0


def test_ignore_eos_generates_exactly_max_new_tokens(tiny_hf):
    gens = tiny_hf.generate([GenerationRequest(prompt=p, max_new_tokens=10, ignore_eos=True) for p in PROMPTS])
    assert all(len(g.token_ids) == 10 and g.finish_reason == "length" for g in gens)


def test_seeded_sampling_is_reproducible_whatever_the_batch(tiny_hf):
    def sample(seed, prompt="The quick brown", mates=()):
        reqs = [GenerationRequest(prompt=prompt, max_new_tokens=10, temperature=1.0, seed=seed)]
        reqs += [GenerationRequest(prompt=m, max_new_tokens=10, temperature=1.0, seed=99) for m in mates]
        return tiny_hf.generate(reqs)[0].token_ids

    alone = sample(7)
    assert sample(7, mates=PROMPTS) == alone
    assert sample(7, mates=PROMPTS[::-1]) == alone
    assert len({tuple(sample(s)) for s in range(6)}) > 1  # different seeds actually sample differently


def test_top_p_keeps_only_the_nucleus():
    from evalsuite.backends.sampling import _top_p_filter

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert torch.equal(_top_p_filter(probs, 0.7) > 0, torch.tensor([[True, True, False, False]]))
    assert torch.equal(_top_p_filter(probs, 0.5) > 0, torch.tensor([[True, False, False, False]]))
    assert torch.equal(_top_p_filter(probs, 1.0), probs)


def test_request_validation():
    with pytest.raises(ValueError):
        GenerationRequest()
    with pytest.raises(ValueError):
        GenerationRequest(prompt="x", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ValueError):
        GenerationRequest(prompt="x", max_new_tokens=0)


def test_lora_adapter_is_applied(tiny_model_dir, reference, tmp_path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    ).eval()
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    backend = load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32", adapter=str(tmp_path / "adapter")))
    tok = backend.tokenizer
    ctx, cont = encode_text(tok, "The quick brown fox"), encode_text(tok, " jumps over")
    expected, _ = direct_token_logprobs(peft_model, ctx, cont)
    base, _ = direct_token_logprobs(reference, ctx, cont)
    got = backend.score_ids([(ctx, cont)])[0].logprobs
    assert got == pytest.approx(expected, abs=1e-4)
    assert got != pytest.approx(base, abs=1e-3)  # the adapter really changed the model


def test_empty_prompt_is_rejected(tiny_hf):
    from evalsuite.errors import EvalsuiteError

    with pytest.raises(EvalsuiteError, match="empty prompt"):
        tiny_hf.generate([GenerationRequest(prompt="")])
