"""Step time and peak memory: evalsuite's WITTrainer at (λp, λr) = (0, 1) vs TRL's SFTTrainer with
completion-only loss, on the same model, data, batch and precision, in the same run.

    .venv/bin/python perf/train_step.py [--model smollm2-135m-instruct] [--steps 5] [--batch 4]

Each trainer runs in its own subprocess (so each peak-memory figure is its own: peak RSS on CPU,
`torch.cuda.max_memory_allocated` on GPU), on identical token sequences (the paper's plain format,
`prompt + " " + response + eos`, which TRL's prompt-completion path builds the same way). The order is
TRL, ours, ours, TRL, and each figure is the mean of its two runs, so drift on a shared machine cancels.
Target: both ratios (ours / TRL) ≤ 1.05.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pairs(n: int) -> list[tuple[str, str]]:
    from evalsuite.training.data import DEMO_INSTRUCTIONS, DatasetSpec, load_pairs

    pairs, _ = load_pairs(DatasetSpec(path=str(DEMO_INSTRUCTIONS)))
    return [(p.prompt[0]["content"], p.response) for p in pairs[:n]]


def worker(kind: str, model_path: str, steps: int, warmup: int, batch: int, precision: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from evalsuite.training.data import Pair, encode_pair
    from evalsuite.training.sft import device_defaults, torch_dtype_and_autocast

    dtype, autocast = torch_dtype_and_autocast(precision)
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    pairs = _pairs(batch * (steps + warmup))
    common = dict(output_dir=str(ROOT / ".bench-train-step" / kind), report_to="none", seed=0, max_steps=steps + warmup,
                  per_device_train_batch_size=batch, learning_rate=1e-5, save_strategy="no", logging_steps=1000,
                  bf16=autocast, shuffle_dataset=False, **device_defaults())
    if kind == "trl":
        from trl import SFTConfig, SFTTrainer

        data = Dataset.from_dict({"prompt": [p for p, _ in pairs], "completion": [" " + r for _, r in pairs]})
        trainer = SFTTrainer(model, args=SFTConfig(completion_only_loss=True, max_length=None, **common),
                             train_dataset=data, processing_class=tok)
        tokens = sum(len(r["input_ids"]) for r in trainer.train_dataset)
    else:
        from evalsuite.training import WITConfig, WITTrainer

        encoded = [encode_pair(Pair([{"role": "user", "content": p}], r), tok, "plain") for p, r in pairs]
        data = Dataset.from_dict({"input_ids": [e.input_ids for e in encoded], "prompt_mask": [e.prompt_mask for e in encoded]})
        trainer = WITTrainer(model, args=WITConfig(lambda_p=0.0, lambda_r=1.0, max_length=None, **common),
                             processing_class=tok, train_dataset=data)
        tokens = sum(len(e.input_ids) for e in encoded)

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    trainer.add_callback(Timer())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"kind": kind, "step_s": statistics.median(times[warmup:]), "peak_bytes": peak, "tokens": tokens,
            "device": "cuda" if torch.cuda.is_available() else "cpu"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "bf16-autocast"])
    ap.add_argument("--worker", choices=["trl", "wit"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.steps, args.warmup, args.batch, args.precision)))
        return

    from evalsuite.models import resolve_model

    model_path = str(resolve_model(args.model))
    runs: dict[str, list[dict]] = {"trl": [], "wit": []}
    for kind in ("trl", "wit", "wit", "trl"):
        cmd = [sys.executable, __file__, "--worker", kind, "--model", model_path, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch", str(args.batch), "--precision", args.precision]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            sys.exit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        runs[kind].append(result)
        print(f"  {kind}: {result['step_s']:.3f} s/step, peak {result['peak_bytes'] / 2**20:.0f} MiB", flush=True)

    trl, wit = runs["trl"], runs["wit"]
    if trl[0]["tokens"] != wit[0]["tokens"]:
        sys.exit(f"token counts differ (trl {trl[0]['tokens']}, wit {wit[0]['tokens']}): not the same data")

    def mean(rs: list[dict], key: str) -> float:
        return sum(r[key] for r in rs) / len(rs)

    t_ratio = mean(wit, "step_s") / mean(trl, "step_s")
    m_ratio = mean(wit, "peak_bytes") / mean(trl, "peak_bytes")
    print(f"model {args.model}, batch {args.batch}, {args.steps} timed steps, {trl[0]['tokens']} tokens, "
          f"precision {args.precision}, device {trl[0]['device']}")
    print(f"TRL SFTTrainer (completion-only): {mean(trl, 'step_s'):.3f} s/step, peak {mean(trl, 'peak_bytes') / 2**20:.0f} MiB")
    print(f"evalsuite WITTrainer (0, 1):      {mean(wit, 'step_s'):.3f} s/step, peak {mean(wit, 'peak_bytes') / 2**20:.0f} MiB")
    print(f"ratio step time {t_ratio:.3f}  peak memory {m_ratio:.3f}  (target <= 1.05 each)")


if __name__ == "__main__":
    main()
