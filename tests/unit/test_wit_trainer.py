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


DDP_SCRIPT = r"""
import json, os, sys, torch
sys.path.insert(0, {root!r})
from tests.unit.test_wit_trainer import _one_step_update
from pathlib import Path
upd = _one_step_update(Path({model!r}), Path({tmp!r}), 0.4, batch=2, accum=2)
if int(os.environ["RANK"]) == 0:
    torch.save(upd, {out!r})
"""


@pytest.mark.timeout(600)
def test_two_process_ddp_matches_single_process(tiny_model_dir, tmp_path):
    single = _one_step_update(tiny_model_dir, tmp_path / "single", 0.4, batch=8, accum=1)
    script = tmp_path / "ddp.py"
    out = tmp_path / "ddp.pt"
    script.write_text(DDP_SCRIPT.format(root=str(ROOT), model=str(tiny_model_dir), tmp=str(tmp_path / "ddp"), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", str(script)], env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out)
    for name, grad in single.items():
        torch.testing.assert_close(ddp[name], grad, rtol=1e-4, atol=1e-6, msg=name)
