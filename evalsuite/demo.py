"""`evalsuite demo`: every stage that exists, end to end, on the embedded model.

Stages so far: prepare the embedded model -> train a small WIT grid (3 cells, a few steps each) on the
project's demo instruction set -> DPO on each cell with the project's demo preference set -> answer a
handful of chat prompts with the base model through the chosen backend -> score a small multiple-choice
set by log-likelihood with the base model and every SFT and DPO cell -> write everything under the output
dir. A re-run skips the cells already trained.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from evalsuite.backends import GenerationRequest, LoglikelihoodRequest, load_backend, parse_backend_config
from evalsuite.manifest import library_versions
from evalsuite.models import DEFAULT_MODEL, prepare_model
from evalsuite.paths import atomic_write
from evalsuite.training.cells import CellResult
from evalsuite.training.config import SFTRunConfig, load_run_config, load_sft_config
from evalsuite.training.dpo import DPORunConfig, train_dpo_grid
from evalsuite.training.sft import train_grid

DEMO_PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for staying focused while studying.",
    "Write a haiku about the ocean.",
    "Explain in one sentence what a neural network is.",
    "What is 12 multiplied by 7?",
    "Translate 'good morning' into Spanish.",
]

# The demo's grid: completion-only (the convention), a prompt-weighted cell, and plain causal-LM loss.
DEMO_CELLS = [(0.0, 1.0), (0.4, 1.0), (1.0, 1.0)]

# (question, options, index of the correct option): scored by log-likelihood of " option".
DEMO_MCQ = [
    ("The capital of France is", ["Paris", "London", "Berlin", "Madrid"], 0),
    ("Water freezes at a temperature of", ["0 degrees Celsius", "50 degrees Celsius", "100 degrees Celsius"], 0),
    ("The largest planet in our solar system is", ["Jupiter", "Mars", "Mercury", "Venus"], 0),
    ("The chemical symbol for gold is", ["Au", "Ag", "Fe", "Pb"], 0),
]


@dataclass
class DemoResult:
    out_dir: Path
    checkpoint: Path
    backend: str
    generations: list[dict[str, Any]] = field(default_factory=list)
    mcq: list[dict[str, Any]] = field(default_factory=list)
    sft_cells: list[dict[str, Any]] = field(default_factory=list)
    dpo_cells: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def run_demo(
    out_dir: Path,
    backend: str = "hf",
    model: str = DEFAULT_MODEL,
    dtype: str = "auto",
    max_new_tokens: int = 64,
    sft_steps: int = 3,
    dpo_steps: int = 2,
    log: Callable[[str], None] = print,
) -> DemoResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    log(f"[1/5] preparing model {model}")
    prepared = prepare_model(model) if not Path(model).is_dir() else None
    checkpoint = prepared.path if prepared else Path(model)
    timings["prepare_model"] = time.perf_counter() - t
    log(f"      checkpoint: {checkpoint} ({'cached' if prepared and prepared.cached else 'ready'})")

    result = DemoResult(out_dir=out_dir, checkpoint=checkpoint, backend=backend)
    t = time.perf_counter()
    log(f"[2/5] WIT fine-tuning {len(DEMO_CELLS)} grid cells ({sft_steps} steps each) -> {out_dir / 'runs' / 'sft'}")
    cells = train_grid(demo_sft_config(model, out_dir / "runs", sft_steps), DEMO_CELLS,
                       retrain_changed=True, log=lambda msg: log(f"      {msg}"))
    timings["sft_grid"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"[3/5] DPO on each cell ({dpo_steps} steps each) -> {out_dir / 'runs' / 'dpo'}")
    dpo_cells = train_dpo_grid(demo_dpo_config(out_dir / "runs", dpo_steps), out_dir / "runs", DEMO_CELLS,
                               retrain_changed=True, log=lambda msg: log(f"      {msg}"))
    timings["dpo"] = time.perf_counter() - t

    config = parse_backend_config({"kind": backend, "model": str(checkpoint), "dtype": dtype})
    t = time.perf_counter()
    log(f"[4/5] answering {len(DEMO_PROMPTS)} prompts with the {backend} backend ({dtype})")
    with load_backend(config) as engine:
        timings["load_backend"] = time.perf_counter() - t
        t = time.perf_counter()
        requests = [
            GenerationRequest(messages=[{"role": "user", "content": p}], max_new_tokens=max_new_tokens)
            for p in DEMO_PROMPTS
        ]
        for prompt, gen in zip(DEMO_PROMPTS, engine.generate(requests, progress=True)):
            result.generations.append(
                {"prompt": prompt, "response": gen.text, "finish_reason": gen.finish_reason,
                 "num_tokens": len(gen.token_ids) if gen.token_ids is not None else None}
            )
        timings["generate"] = time.perf_counter() - t

        t = time.perf_counter()
        log(f"[5/5] scoring {len(DEMO_MCQ)} multiple-choice questions by log-likelihood: base model, SFT and DPO cells")
        result.mcq = score_mcq(engine)
    result.sft_cells = [score_cell(c, dtype) for c in cells]
    result.dpo_cells = [score_cell(c, dtype) for c in dpo_cells]
    timings["loglikelihood"] = time.perf_counter() - t
    result.timings_s = {k: round(v, 2) for k, v in timings.items()}
    _write(result, config.model_dump(mode="json"))
    return result


def demo_sft_config(model: str, out: Path, steps: int) -> SFTRunConfig:
    """The demo's SFT settings: the embedded instruction set, a few small steps, fp32 (this CPU class has
    no native bf16), the paper's learning rate schedule otherwise."""
    return load_sft_config(None, [
        f"model={model}", f"output_dir={out}", "global_batch_size=4", "max_length=256", "precision=fp32",
        "training.per_device_train_batch_size=4", f"training.max_steps={steps}", "training.warmup_steps=0",
    ])


def demo_dpo_config(out: Path, steps: int) -> DPORunConfig:
    """The demo's DPO settings: the embedded preference set, a few small steps, fp32, the paper's learning
    rate (so the demo shows the pipeline; a few steps at 5e-7 barely move the model)."""
    return load_run_config(DPORunConfig, None, [
        f"output_dir={out}", "global_batch_size=4", "max_length=256", "precision=fp32",
        "training.per_device_train_batch_size=4", f"training.max_steps={steps}", "training.warmup_steps=0",
    ])


def score_cell(cell: CellResult, dtype: str) -> dict[str, Any]:
    """A trained cell's MCQ scores and training metrics. The hf backend: a vLLM engine per checkpoint would
    cost ~50 s each on CPU."""
    with load_backend(parse_backend_config({"kind": "hf", "model": str(cell.path), "dtype": dtype})) as engine:
        rows = score_mcq(engine)
    metrics = cell.manifest.metrics
    return {
        "cell": cell.path.name, "stage": cell.manifest.stage, "path": str(cell.path),
        "final_loss": metrics.get("final_loss"),  # the last step's loss (None in manifests that predate it)
        "reward_accuracy": metrics.get("reward_accuracy"), "reward_margin": metrics.get("reward_margin"),
        "mcq_accuracy": sum(r["correct"] for r in rows) / len(rows),
        "mean_gold_logprob": sum(r["logprobs"][g] for r, (_, _, g) in zip(rows, DEMO_MCQ)) / len(rows),
    }


def score_mcq(engine: Any) -> list[dict[str, Any]]:
    ll_requests = [LoglikelihoodRequest(q, f" {opt}") for q, opts, _ in DEMO_MCQ for opt in opts]
    scores = iter(engine.loglikelihood(ll_requests))
    rows = []
    for question, options, gold in DEMO_MCQ:
        logprobs = [next(scores).logprob for _ in options]
        pred = max(range(len(options)), key=logprobs.__getitem__)
        rows.append({"question": question, "options": options, "logprobs": logprobs,
                     "prediction": options[pred], "correct": pred == gold})
    return rows


def _write(result: DemoResult, backend_config: dict[str, Any]) -> None:
    with (result.out_dir / "generations.jsonl").open("w") as fh:
        for row in result.generations:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (result.out_dir / "mcq_loglikelihood.jsonl").open("w") as fh:
        for row in result.mcq:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = {
        "checkpoint": str(result.checkpoint),
        "backend": backend_config,
        "mcq_accuracy": sum(r["correct"] for r in result.mcq) / max(len(result.mcq), 1),
        "sft_cells": result.sft_cells,
        "dpo_cells": result.dpo_cells,
        "timings_s": result.timings_s,
        "versions": library_versions(),
    }
    atomic_write(result.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
