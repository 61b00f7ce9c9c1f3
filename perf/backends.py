"""Generation throughput of the backends on the same prompts and token budget, in one run.

    python perf/backends.py [--prompts 16] [--max-new-tokens 64] [--skip-vllm] [--json out.json]

Every request generates exactly --max-new-tokens tokens (ignore_eos) so all configurations do the same
work. Prints tokens/s per configuration and ratios against the hf fp32 batch-1 baseline and against vLLM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = [
    "Explain how a refrigerator keeps food cold.",
    "Write a short story about a lighthouse keeper.",
    "What are the main causes of inflation?",
    "Describe the water cycle for a ten-year-old.",
    "Give five tips for writing clear emails.",
    "Why is the sky blue?",
    "Summarise the plot of Romeo and Juliet.",
    "How do vaccines train the immune system?",
    "Compare cats and dogs as pets.",
    "What is the difference between weather and climate?",
    "Write a limerick about a programmer.",
    "How does a bill become a law in the United States?",
    "List the planets of the solar system with one fact each.",
    "What makes a good team leader?",
    "Explain recursion with an example.",
    "Describe how bread rises.",
]


@dataclass
class Row:
    config: str
    requests: int
    tokens: int
    seconds: float

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds


def measure(backend, label: str, prompts: list[str], max_new: int) -> Row:
    from evalsuite.backends import GenerationRequest

    reqs = [GenerationRequest(messages=[{"role": "user", "content": p}], max_new_tokens=max_new, ignore_eos=True) for p in prompts]
    backend.generate(reqs[:1])  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    gens = backend.generate(reqs)
    seconds = time.perf_counter() - start
    tokens = sum(len(g.token_ids) for g in gens)
    print(f"  {label:<18} {tokens:>6} tokens in {seconds:7.2f}s = {tokens / seconds:7.1f} tok/s", flush=True)
    return Row(label, len(reqs), tokens, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from evalsuite.backends import HFConfig, VLLMConfig, load_backend
    from evalsuite.models import resolve_model

    checkpoint = str(resolve_model(args.model))
    prompts = (PROMPTS * ((args.prompts + len(PROMPTS) - 1) // len(PROMPTS)))[: args.prompts]
    print(f"model {args.model} | {len(prompts)} prompts x {args.max_new_tokens} new tokens | "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    rows: list[Row] = []
    for dtype in ("float32", "bfloat16"):
        for batch in (1, 16):
            backend = load_backend(HFConfig(model=checkpoint, dtype=dtype, batch_size=batch))
            rows.append(measure(backend, f"hf {dtype[:4]} b{batch}", prompts, args.max_new_tokens))
            backend.close()
    if not args.skip_vllm:
        for dtype in ("bfloat16", "float32"):
            with load_backend(VLLMConfig(model=checkpoint, dtype=dtype, max_length=2048)) as backend:
                rows.append(measure(backend, f"vllm {dtype[:4]}", prompts, args.max_new_tokens))

    base = rows[0].tok_s
    vllm = next((r.tok_s for r in rows if r.config.startswith("vllm bflo")), None)
    print(f"\n{'config':<18}{'tok/s':>9}{'x hf fp32 b1':>14}{'x vllm bf16':>13}")
    for r in rows:
        vs_vllm = f"{r.tok_s / vllm:13.2f}" if vllm else f"{'-':>13}"
        print(f"{r.config:<18}{r.tok_s:9.1f}{r.tok_s / base:14.2f}{vs_vllm}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"tok_s": r.tok_s} for r in rows], indent=2))


if __name__ == "__main__":
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
