"""Check WIT training under `accelerate launch` (DDP and FSDP) against a single-process run, on GPUs.

    python scripts/check_multigpu.py [--gpus N] [--out DIR] [--model smollm2-135m-instruct]

Trains the same cell (λp = 0.4, λr = 1) three times with the same global batch: one process, DDP over N
processes, FSDP (full shard) over N processes. The loss logged at the first steps depends only on the
examples in each global batch and the global token count, so the three runs must log the same losses
(tolerance for reduction order); the final checkpoints must all load. Exits non-zero on a mismatch.
Needs CUDA; with one GPU it still checks FSDP's code path with one process.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

COMMON = ["lambda_p=0.4", "lambda_r=1", "dataset.limit=96", "global_batch_size=16", "training.per_device_train_batch_size=4",
          "training.max_steps=4", "training.warmup_steps=0", "training.save_steps=1000", "max_length=256",
          "precision=fp32"]


def step_losses(cell: Path) -> list[float]:
    with (cell / "train_log.csv").open() as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh) if r.get("loss")]


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=torch.cuda.device_count())
    ap.add_argument("--out", type=Path, default=Path("/tmp/evalsuite-multigpu"))
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check needs GPUs")
    common = COMMON + [f"model={args.model}", "--force"]
    runs = {
        "single": [sys.executable, "-m", "evalsuite", "train", "sft", "--out", str(args.out / "single"), *common],
        "ddp": ["accelerate", "launch", "--num_processes", str(args.gpus), *(["--multi_gpu"] if args.gpus > 1 else []),
                "-m", "evalsuite", "train", "sft", "--out", str(args.out / "ddp"), *common],
        "fsdp": ["accelerate", "launch", "--num_processes", str(args.gpus), "--use_fsdp",
                 "--fsdp_sharding_strategy", "FULL_SHARD", "--fsdp_state_dict_type", "FULL_STATE_DICT",
                 "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_version", "2",
                 "-m", "evalsuite", "train", "sft", "--out", str(args.out / "fsdp"), *common],
    }
    losses = {}
    for name, cmd in runs.items():
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True)
        cell = args.out / name / "sft" / "lp0.4_lr1"
        losses[name] = step_losses(cell)
        print(f"   losses per step: {losses[name]}")
    ok = True
    for name in ("ddp", "fsdp"):
        diffs = [abs(a - b) for a, b in zip(losses[name], losses["single"])]
        good = len(losses[name]) == len(losses["single"]) and max(diffs) < 2e-3
        ok &= good
        print(f"{name} vs single: max |loss diff| {max(diffs):.2e} -> {'OK' if good else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
