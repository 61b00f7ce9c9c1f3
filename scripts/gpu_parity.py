"""hf against vLLM on SmolLM2-135M-Instruct in bf16 on a GPU (scripts/gpu_check.sh, step 1): the same greedy chat
answers and log-likelihoods? Prints how many generations agree token for token, where the others first differ
and how close that decision was under the fp32 model (a near tie, or a real difference), and the largest
log-likelihood difference."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = ["What is the capital of France?", "List three primary colors.", "Write one sentence about cats.",
           "What is 15 plus 27?", "Name a famous physicist and say why they are known.", "Give a synonym for 'happy'.",
           "How many days are in a week?", "Explain what photosynthesis is in one sentence.",
           "Write a haiku about autumn.", "What is the boiling point of water in Fahrenheit?"]
PAIRS = [("The capital of France is", " Paris"), ("The capital of France is", " London"),
         ("Question: What is 2 + 2?\nAnswer:", " 4"), ("Question: What is 2 + 2?\nAnswer:", " 5"),
         ("Water boils at ", "100 degrees Celsius at sea level.")]


def main() -> None:
    from evalsuite.backends import GenerationRequest, HFConfig, LoglikelihoodRequest, VLLMConfig, load_backend
    from evalsuite.models.prepare import resolve_model

    model = str(resolve_model("smollm2-135m-instruct"))
    gens = [GenerationRequest(messages=[{"role": "user", "content": p}], max_new_tokens=64) for p in PROMPTS]
    lls = [LoglikelihoodRequest(c, x) for c, x in PAIRS]
    with load_backend(HFConfig(model=model, dtype="bfloat16", device="cuda")) as hf:
        h_gen, h_ll = hf.generate(gens), hf.loglikelihood(lls)
    with load_backend(VLLMConfig(model=model, dtype="bfloat16", max_length=2048, gpu_memory_utilization=0.3)) as vllm:
        v_gen, v_ll = vllm.generate(gens), vllm.loglikelihood(lls)
    with load_backend(HFConfig(model=model, dtype="float32", device="cuda")) as ref:
        same = 0
        for prompt, h, v in zip(PROMPTS, h_gen, v_gen):
            if h.token_ids == v.token_ids:
                same += 1
                continue
            k = next(i for i, (a, b) in enumerate(zip(h.token_ids + [-1], v.token_ids + [-1])) if a != b)
            prefix = ref.prompt_ids(GenerationRequest(messages=[{"role": "user", "content": prompt}])) + h.token_ids[:k]
            eos = ref.tokenizer.eos_token_id
            a, b = (h.token_ids + [eos])[k], (v.token_ids + [eos])[k]
            gap = abs(ref.score_ids([(prefix, [a])])[0].total - ref.score_ids([(prefix, [b])])[0].total)
            print(f"  differs at token {k} of {prompt!r}: fp32 gap between the two choices {gap:.3f} nats")
    print(f"greedy bf16 generations identical hf vs vLLM: {same}/{len(PROMPTS)}")
    print(f"largest bf16 log-likelihood difference: {max(abs(a.logprob - b.logprob) for a, b in zip(h_ll, v_ll)):.3f} nats")


if __name__ == "__main__":
    main()
