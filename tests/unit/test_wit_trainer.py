"""WITTrainer: equal to TRL's completion-only loss at (0, 1), invariant to gradient accumulation and to
data parallelism (the count is global), and its loss equals `wit_loss` on the model's logits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evalsuite.training import wit_loss

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [
    ("Say hello to the fox", "hello fox"),
    ("What is two plus two?", "four, the answer is four."),
    ("Name a capital", "Paris is the capital of France; Berlin is the capital of Germany."),
    ("Write a short poem about the sea", "the sea, the sky, and the wind"),
    ("Pick one: A B C D", "C"),
    ("Question: quick or lazy?", "The quick brown fox jumps over the lazy dog."),
    ("history or science?", "science and history"),
    ("Answer", "two plus two is four"),
]


def _config(tmp_path: Path, **kw):
    from evalsuite.training import WITConfig

    base = dict(output_dir=str(tmp_path / "out"), report_to="none", seed=0, max_steps=1, learning_rate=1.0,
                optim="sgd", weight_decay=0.0, max_grad_norm=0.0, lr_scheduler_type="constant",
                save_strategy="no", logging_steps=1, dataloader_pin_memory=False, bf16=False, use_cpu=True)
    base.update(kw)
    return WITConfig(**base)


def _encoded(tokenizer, prompt_format="plain"):
    from evalsuite.training.data import Pair, encode_pair

    return [encode_pair(Pair([{"role": "user", "content": p}], r), tokenizer, prompt_format) for p, r in PAIRS]


def _dataset(examples):
    from datasets import Dataset

    rows = [e if isinstance(e, dict) else {"input_ids": e.input_ids, "prompt_mask": e.prompt_mask} for e in examples]
    return Dataset.from_list(rows)


def _one_step_update(model_dir: Path, tmp_path: Path, lp: float, batch: int, accum: int) -> dict[str, torch.Tensor]:
    """Parameter change after one SGD(lr=1) step on all 8 pairs: minus the gradient."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.training import WITTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    args = _config(tmp_path / f"b{batch}a{accum}", lambda_p=lp, per_device_train_batch_size=batch,
                   gradient_accumulation_steps=accum)
    trainer = WITTrainer(model, args=args, processing_class=tok, train_dataset=_dataset(_encoded(tok)))
    trainer.train()
    return {k: before[k] - v.detach() for k, v in model.named_parameters()}


def test_zero_one_equals_trl_completion_only_loss(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from evalsuite.training import WITTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    # TRL's own prompt-completion pipeline: its tokenisation, its completion mask, its collator, its loss.
    data = Dataset.from_dict({"prompt": [p for p, _ in PAIRS], "completion": [" " + r for _, r in PAIRS]})
    trl_trainer = SFTTrainer(model, args=SFTConfig(output_dir=str(tmp_path / "trl"), report_to="none",
                                                   completion_only_loss=True, dataloader_pin_memory=False, bf16=False),
                             train_dataset=data, processing_class=tok)
    rows = [trl_trainer.train_dataset[i] for i in range(len(PAIRS))]
    batch = trl_trainer.data_collator(rows)
    model.eval()
    with torch.no_grad():
        trl_loss = trl_trainer.compute_loss(model, dict(batch))
        real = batch["attention_mask"].bool()
        prompt_mask = (batch["labels"] == -100) & real  # TRL masks exactly the prompt tokens
        labels = batch["input_ids"].masked_fill(~real, -100)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ours = wit_loss(logits, labels, prompt_mask, 0.0, 1.0)
        # The trainer path (fused LM head) on the same examples gives the same number.
        wit_trainer = WITTrainer(model, args=_config(tmp_path, lambda_p=0.0), processing_class=tok,
                                 train_dataset=_dataset([{"input_ids": r["input_ids"], "prompt_mask": m}
                                                         for r, m in zip(rows, _masks(rows))]))
        wit_batch = wit_trainer.data_collator([wit_trainer.train_dataset[i] for i in range(len(PAIRS))])
        trainer_loss = wit_trainer.compute_loss(model, dict(wit_batch))
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trainer_loss, trl_loss, rtol=1e-5, atol=1e-6)


def _masks(rows):
    return [[lab == -100 for lab in r["labels"]] for r in rows]


def test_trainer_loss_equals_wit_loss_on_logits(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.training import WITTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    trainer = WITTrainer(model, args=_config(tmp_path, lambda_p=0.4, lambda_r=0.8), processing_class=tok,
                         train_dataset=_dataset(_encoded(tok)))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        got = trainer.compute_loss(model, dict(batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        expected = wit_loss(logits, labels, batch["prompt_mask"], 0.4, 0.8)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_invariance(tiny_model_dir, tmp_path):
    one_batch = _one_step_update(tiny_model_dir, tmp_path, 0.4, batch=8, accum=1)
    accumulated = _one_step_update(tiny_model_dir, tmp_path, 0.4, batch=2, accum=4)
    for name, grad in one_batch.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert any(g.abs().max() > 1e-3 for g in one_batch.values())  # a real step happened


def test_per_micro_batch_normalisation_would_differ(tiny_model_dir):
    """Negative control for the test above: averaging per-micro-batch means (the bug `num_items_in_batch`
    exists to prevent) gives a different loss on these unequal-length sequences."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.training.trainer import WITCollator

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    collate = WITCollator(tok.pad_token_id, 0.4, 1.0)
    rows = [{"input_ids": e.input_ids, "prompt_mask": e.prompt_mask} for e in _encoded(tok)]

    def loss(batch, n=None):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return wit_loss(logits, batch["labels"], batch["prompt_mask"], 0.4, 1.0, num_items_in_batch=n)

    with torch.no_grad():
        full = loss(collate(rows))
        micro = [collate(rows[i:i + 2]) for i in range(0, 8, 2)]
        total = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
        pooled = sum(loss(b, total) for b in micro)
        naive = sum(loss(b) for b in micro) / 4
    torch.testing.assert_close(pooled, full, rtol=1e-5, atol=1e-6)
    assert abs(naive - full) > 1e-3


def _dpo_cell(sft_cell: Path, out: Path, prefs: Path, force: bool = False):
    """One SGD(lr=10) DPO step over pairs 0-7 of `prefs` (sequential order): global batch 8, 2 per device."""
    from evalsuite.training.data import DatasetSpec
    from evalsuite.training.dpo import DPORunConfig, train_dpo_cell

    config = DPORunConfig(dataset=DatasetSpec(path=str(prefs)), output_dir=out, global_batch_size=8, precision="fp32",
                          training={"per_device_train_batch_size": 2, "max_steps": 1, "learning_rate": 10.0,
                                    "optim": "sgd", "weight_decay": 0.0, "max_grad_norm": 0.0, "warmup_steps": 0,
                                    "lr_scheduler_type": "constant", "save_strategy": "no",
                                    "train_sampling_strategy": "sequential"})
    return train_dpo_cell(config, sft_cell, force=force)


DDP_SCRIPT = r"""
import json, os, sys, torch
sys.path.insert(0, {root!r})
from tests.unit.test_wit_trainer import _dpo_cell, _one_step_update
from pathlib import Path
upd = _one_step_update(Path({model!r}), Path({tmp!r}), 0.4, batch=2, accum=2)
if int(os.environ["RANK"]) == 0:
    torch.save(upd, {out!r})
_dpo_cell(Path({sft_cell!r}), Path({dpo_out!r}), Path({prefs!r}), force=True)
"""


@pytest.mark.timeout(600)
def test_two_process_ddp_matches_single_process(tiny_model_dir, tmp_path):
    """SFT and DPO: a 2-process gloo step equals the single-process step with the same global batch. For DPO
    this runs the whole cell (main-process-only work dir, even over a stale one under --force) with the
    accumulation worked out from global_batch_size and the number of processes: 2 x 2 x 2 = 8 pairs, where
    ignoring the processes would make it 16 pairs (pairs 8-15 differ, so the update would differ)."""
    from safetensors.torch import load_file

    from evalsuite.training.config import load_sft_config
    from evalsuite.training.sft import train_cell
    from tests.conftest import write_jsonl

    single = _one_step_update(tiny_model_dir, tmp_path / "single", 0.4, batch=8, accum=1)
    sft_rows = [{"prompt": p, "response": r} for p, r in PAIRS]
    sft_cell = train_cell(load_sft_config(None, [
        f"model={tiny_model_dir}", f"dataset.path={write_jsonl(tmp_path / 's.jsonl', sft_rows)}", f"output_dir={tmp_path / 'sft'}",
        "global_batch_size=8", "training.per_device_train_batch_size=8", "training.max_steps=1", "precision=fp32"])).path
    prefs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": p, "chosen": r, "rejected": PAIRS[(i + 3) % 8][1] + f" ({i})"}
                                               for i, (p, r) in enumerate(PAIRS * 2)])
    dpo_single = _dpo_cell(sft_cell, tmp_path / "dpo-single", prefs)
    stale = tmp_path / "dpo-ddp" / "dpo" / ".work" / sft_cell.name / "checkpoint-3"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")

    script = tmp_path / "ddp.py"
    out = tmp_path / "ddp.pt"
    script.write_text(DDP_SCRIPT.format(root=str(ROOT), model=str(tiny_model_dir), tmp=str(tmp_path / "ddp"), out=str(out),
                                        sft_cell=str(sft_cell), dpo_out=str(tmp_path / "dpo-ddp"), prefs=str(prefs)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", str(script)], env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out)
    for name, grad in single.items():
        torch.testing.assert_close(ddp[name], grad, rtol=1e-4, atol=1e-6, msg=name)

    from evalsuite.manifest import read_manifest

    dpo_ddp = read_manifest(tmp_path / "dpo-ddp" / "dpo" / sft_cell.name)
    assert dpo_ddp.metrics["world_size"] == 2 and dpo_ddp.hyperparameters["trainer"]["gradient_accumulation_steps"] == 2
    assert dpo_single.manifest.metrics["world_size"] == 1
    assert dpo_single.manifest.hyperparameters["trainer"]["gradient_accumulation_steps"] == 4
    before = load_file(sft_cell / "model.safetensors")
    after_single = load_file(dpo_single.path / "model.safetensors")
    after_ddp = load_file(tmp_path / "dpo-ddp" / "dpo" / sft_cell.name / "model.safetensors")
    for name, weight in before.items():
        torch.testing.assert_close(after_ddp[name] - weight, after_single[name] - weight, rtol=1e-4, atol=1e-6, msg=name)
    assert any((after_single[k] - before[k]).abs().max() > 1e-3 for k in before)  # a real step happened
