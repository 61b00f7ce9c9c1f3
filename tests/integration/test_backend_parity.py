"""hf and vLLM agree on SmolLM2: greedy text, log-likelihoods and per-token scores."""

from __future__ import annotations

import warnings

import pytest
import torch

from evalsuite.backends import GenerationRequest, HFConfig, LoglikelihoodRequest, ScoreRequest, VLLMConfig, load_backend

from .conftest import CHAT_PROMPTS, LL_PAIRS

pytestmark = [pytest.mark.integration, pytest.mark.vllm]
pytest.importorskip("vllm")

MAX_NEW = 48


def run_all(backend, prompts_for_score=None):
    gens = backend.generate([GenerationRequest(messages=[{"role": "user", "content": p}], max_new_tokens=MAX_NEW) for p in CHAT_PROMPTS])
    lls = backend.loglikelihood([LoglikelihoodRequest(c, x) for c, x in LL_PAIRS])
    return gens, lls


def score_requests(backend, gens):
    return [
        ScoreRequest(backend.prompt_text(GenerationRequest(messages=[{"role": "user", "content": p}])), tuple(g.token_ids))
        for p, g in zip(CHAT_PROMPTS, gens)
    ]


def test_fp32_greedy_loglikelihood_and_scores_agree(smollm2_dir, hf_fp32):
    hf_gens, hf_ll = run_all(hf_fp32)
    reqs = score_requests(hf_fp32, hf_gens)
    hf_scores = hf_fp32.score(reqs)
    with load_backend(VLLMConfig(model=str(smollm2_dir), dtype="float32", max_length=2048)) as vllm:
        v_gens, v_ll = run_all(vllm)
        v_scores = vllm.score(reqs)
    for h, v in zip(hf_gens, v_gens):
        assert v.token_ids == h.token_ids and v.text == h.text and v.finish_reason == h.finish_reason
    for h, v in zip(hf_ll, v_ll):
        assert v.logprob == pytest.approx(h.logprob, abs=2e-3) and v.is_greedy == h.is_greedy and v.num_tokens == h.num_tokens
    for h, v in zip(hf_scores, v_scores):
        assert v.logprobs == pytest.approx(h.logprobs, abs=2e-3)


def test_bf16_divergences_are_only_near_ties(smollm2_dir, hf_fp32):
    hf = load_backend(HFConfig(model=str(smollm2_dir), dtype="bfloat16", batch_size=8))
    hf_gens, hf_ll = run_all(hf)
    hf.close()
    with load_backend(VLLMConfig(model=str(smollm2_dir), dtype="bfloat16", max_length=2048)) as vllm:
        v_gens, v_ll = run_all(vllm)
    diverged = []
    for prompt, h, v in zip(CHAT_PROMPTS, hf_gens, v_gens):
        if h.token_ids == v.token_ids:
            continue
        k = next(i for i, (a, b) in enumerate(zip(h.token_ids + [-1], v.token_ids + [-1])) if a != b)
        prefix = hf_fp32.prompt_ids(GenerationRequest(messages=[{"role": "user", "content": prompt}])) + h.token_ids[:k]
        # How far apart are the two chosen tokens under the fp32 model? A near tie is a small gap.
        a, b = (h.token_ids + [hf_fp32.tokenizer.eos_token_id])[k], (v.token_ids + [hf_fp32.tokenizer.eos_token_id])[k]
        gap = abs(hf_fp32.score_ids([(prefix, [a])])[0].total - hf_fp32.score_ids([(prefix, [b])])[0].total)
        diverged.append((prompt, k, round(gap, 4)))
        assert gap < 0.5, f"bf16 divergence at a clear (non-tie) decision: {prompt!r} token {k}, gap {gap:.3f} nats"
    if diverged:
        warnings.warn(f"bf16 hf vs vllm: {len(diverged)}/{len(CHAT_PROMPTS)} greedy generations diverge, all at near ties: {diverged}")
    # bf16 logits near 20 are quantised in steps of 0.125, so both bf16 backends drift from the fp32
    # reference by a few tenths of a nat (measured here: hf up to 0.41, vLLM up to 0.31 on these pairs).
    fp32_ll = hf_fp32.loglikelihood([LoglikelihoodRequest(c, x) for c, x in LL_PAIRS])
    for name, run in (("hf", hf_ll), ("vllm", v_ll)):
        drift = [abs(r.logprob - f.logprob) for r, f in zip(run, fp32_ll)]
        assert max(drift) < 0.6 and sum(drift) / len(drift) < 0.25, (name, drift)
    # ...and still order the answer options as the fp32 model does on these clear-cut pairs.
    for i in range(0, 6, 2):
        fp32_order = fp32_ll[i].logprob > fp32_ll[i + 1].logprob
        assert (v_ll[i].logprob > v_ll[i + 1].logprob) == fp32_order == (hf_ll[i].logprob > hf_ll[i + 1].logprob)


def test_lora_adapter_gives_the_same_model_in_hf_and_vllm(smollm2_dir, hf_fp32, tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32),
        LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    del peft_model
    reqs = [LoglikelihoodRequest(c, x) for c, x in LL_PAIRS]
    base = hf_fp32.loglikelihood(reqs)
    hf = load_backend(HFConfig(model=str(smollm2_dir), dtype="float32", adapter=str(tmp_path / "adapter")))
    hf_lora = hf.loglikelihood(reqs)
    hf.close()
    with load_backend(VLLMConfig(model=str(smollm2_dir), dtype="float32", max_length=2048, adapter=str(tmp_path / "adapter"))) as vllm:
        v_lora = vllm.loglikelihood(reqs)
        if not torch.cuda.is_available():
            assert vllm.weights.parent == tmp_path / "cache" / "models" / "merged"
    assert max(abs(a.logprob - b.logprob) for a, b in zip(base, hf_lora)) > 0.05  # the adapter matters
    for h, v in zip(hf_lora, v_lora):
        assert v.logprob == pytest.approx(h.logprob, abs=2e-3)
