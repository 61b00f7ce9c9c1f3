"""Preference data in the SFT cell's format, TRL DPO on it, and DPO cells with lineage."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from evalsuite.errors import ConfigError
from tests.conftest import EVALSUITE, ROOT, run_and_kill_at, write_jsonl
from evalsuite.training.data import DatasetSpec
from evalsuite.training.preference import prepare_preferences


@pytest.fixture(scope="module")
def tok(tiny_tok):
    return tiny_tok


def test_layouts_encode_to_the_sft_prompt_tokens(tok, tmp_path):
    from evalsuite.training.data import Pair, encode_pair

    plain = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Pick", "chosen": "A", "rejected": "B"}])
    trl = write_jsonl(tmp_path / "b.jsonl", [{"prompt": [{"role": "user", "content": "Pick"}],
                                         "chosen": [{"role": "assistant", "content": "A"}],
                                         "rejected": [{"role": "assistant", "content": "B"}]}])
    uf = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "Pick",
                                        "chosen": [{"role": "user", "content": "Pick"}, {"role": "assistant", "content": "A"}],
                                        "rejected": [{"role": "user", "content": "Pick"}, {"role": "assistant", "content": "B"}]}])
    for fmt in ("chat_template", "plain"):
        sft = encode_pair(Pair([{"role": "user", "content": "Pick"}], "A"), tok, fmt)
        sft_prompt = [i for i, m in zip(sft.input_ids, sft.prompt_mask) if m]
        encoded = [prepare_preferences(DatasetSpec(path=str(p)), tok, fmt, 64).examples[0] for p in (plain, trl, uf)]
        assert all(e == encoded[0] for e in encoded)
        assert encoded[0].prompt_ids == sft_prompt
        assert encoded[0].prompt_ids + encoded[0].chosen_ids == sft.input_ids


def test_bad_preference_rows(tok, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "chosen": "same", "rejected": "same"}])
    with pytest.raises(ConfigError, match="identical"):
        prepare_preferences(DatasetSpec(path=str(path)), tok, "plain", 64)
    path = write_jsonl(tmp_path / "e.jsonl", [{"prompt": "q", "answer": "x"}])
    with pytest.raises(ConfigError, match="needs columns prompt, chosen, rejected"):
        prepare_preferences(DatasetSpec(path=str(path)), tok, "plain", 64)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ConfigError, match="empty|no rows"):
        prepare_preferences(DatasetSpec(path=str(tmp_path / "empty.jsonl")), tok, "plain", 64)
    path = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "q " * 80, "chosen": "a", "rejected": "b"}])
    with pytest.raises(ConfigError, match="no training examples left"):
        prepare_preferences(DatasetSpec(path=str(path)), tok, "plain", 64)


def test_bad_preference_rows_are_named_by_their_line(tok, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(['{"prompt": "q", "chosen": "a", "rejected": "b"}', "",
                               '{"prompt": "q", "chosen": "a", "rejected": "a"}']) + "\n")
    with pytest.raises(ConfigError, match="line 3: chosen and rejected are identical"):
        prepare_preferences(DatasetSpec(path=str(path)), tok, "plain", 64)


def test_dpo_on_pretokenised_pairs_raises_margin_and_keeps_reference(tiny_model_dir, tok, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig

    from evalsuite.training.dpo_trainer import EvalsuiteDPOTrainer

    rows = [{"prompt": f"Is {i} even?", "chosen": "yes" if i % 2 == 0 else "no",
             "rejected": "no" if i % 2 == 0 else "yes"} for i in range(16)]
    data = prepare_preferences(DatasetSpec(path=str(write_jsonl(tmp_path / "p.jsonl", rows))), tok, "chat_template", 128)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ref_before = {k: v.clone() for k, v in ref.state_dict().items()}
    args = DPOConfig(output_dir=str(tmp_path / "out"), report_to="none", max_steps=8, per_device_train_batch_size=8,
                     learning_rate=1e-3, logging_steps=1, save_strategy="no", bf16=False, use_cpu=True,
                     gradient_checkpointing=False, dataloader_pin_memory=False, seed=0)
    trainer = EvalsuiteDPOTrainer(model, ref_model=ref, args=args, train_dataset=data.to_dataset(), processing_class=tok)
    trainer.train()
    margins = [h["rewards/margins"] for h in trainer.state.log_history if "rewards/margins" in h]
    assert max(margins[-4:]) > margins[0] + 0.05
    assert all(torch.equal(ref_before[k], v) for k, v in ref.state_dict().items())


def test_dpo_cell_lineage_and_bad_parents(tiny_model_dir, tmp_path):
    from evalsuite.manifest import read_manifest
    from evalsuite.training.config import load_sft_config
    from evalsuite.training.dpo import DPORunConfig, train_dpo_cell
    from evalsuite.training.sft import train_cell

    sft_rows = [{"prompt": f"Is {i} even?", "response": "yes" if i % 2 == 0 else "no"} for i in range(8)]
    sft = train_cell(load_sft_config(None, [
        f"model={tiny_model_dir}", f"dataset.path={write_jsonl(tmp_path / 's.jsonl', sft_rows)}", f"output_dir={tmp_path}",
        "global_batch_size=4", "training.per_device_train_batch_size=4", "training.max_steps=1", "precision=fp32"]))
    prefs = [{"prompt": f"Is {i} even?", "chosen": "yes" if i % 2 == 0 else "no",
              "rejected": "no" if i % 2 == 0 else "yes"} for i in range(8)]
    config = DPORunConfig(dataset=DatasetSpec(path=str(write_jsonl(tmp_path / "p.jsonl", prefs))), output_dir=tmp_path,
                          global_batch_size=4, precision="fp32",
                          training={"per_device_train_batch_size": 4, "max_steps": 2, "learning_rate": 1e-4})
    dpo = train_dpo_cell(config, sft.path)
    m = read_manifest(dpo.path)
    assert dpo.path == tmp_path / "dpo" / "lp0_lr1"
    assert m.stage == "dpo" and m.parent == str(sft.path.resolve()) and m.prompt_format == sft.manifest.prompt_format
    assert read_manifest(sft.path).parent == str(Path(tiny_model_dir).resolve())  # base → SFT → DPO
    assert m.hyperparameters["beta"] == 0.1 and m.metrics["steps"] == 2 and m.metrics["reward_margin"] is not None
    assert (dpo.path / "train_log.csv").read_text().count("\n") >= 3
    assert train_dpo_cell(config, sft.path).skipped
    with pytest.raises(ConfigError, match="no evalsuite.json"):
        train_dpo_cell(config, Path(tiny_model_dir))
    with pytest.raises(ConfigError, match="is a dpo checkpoint"):
        train_dpo_cell(config, dpo.path)


# ------------------------------------------------------------------------------------------------ DPO cells


def _even_odd(n: int) -> list[dict]:
    return [{"prompt": f"Is {i} even?", "chosen": "yes" if i % 2 == 0 else "no",
             "rejected": "no" if i % 2 == 0 else "yes"} for i in range(n)]


@pytest.fixture(scope="module")
def sft_cell(tiny_model_dir, tmp_path_factory) -> Path:
    from evalsuite.training.config import load_sft_config
    from evalsuite.training.sft import train_cell

    root = tmp_path_factory.mktemp("sft")
    rows = [{"prompt": p["prompt"], "response": p["chosen"]} for p in _even_odd(8)]
    return train_cell(load_sft_config(None, [
        f"model={tiny_model_dir}", f"dataset.path={write_jsonl(root / 's.jsonl', rows)}", f"output_dir={root}",
        "global_batch_size=4", "training.per_device_train_batch_size=4", "training.max_steps=1", "precision=fp32"])).path


def _dpo_config(tmp_path: Path, out: Path, **kw):
    from evalsuite.training.dpo import DPORunConfig

    training = {"per_device_train_batch_size": 4, "max_steps": 3, "learning_rate": 1e-3, **kw.pop("training", {})}
    kw = {"global_batch_size": 4, "precision": "fp32", **kw}
    return DPORunConfig(dataset=DatasetSpec(path=str(write_jsonl(tmp_path / "p.jsonl", _even_odd(12)))), output_dir=out,
                        training=training, **kw)


def test_precomputed_reference_log_probs_train_the_same(sft_cell, tmp_path):
    """TRL scores the data with the untrained policy up front instead of keeping a reference copy: the
    reference log-probs, hence the losses and the weights, equal those of a run with a live reference."""
    from safetensors.torch import load_file

    from evalsuite.training.dpo import train_dpo_cell

    live = train_dpo_cell(_dpo_config(tmp_path, tmp_path / "live"), sft_cell)
    pre = train_dpo_cell(_dpo_config(tmp_path, tmp_path / "pre", precompute_ref_log_probs=True), sft_cell)
    assert pre.manifest.hyperparameters["precompute_ref_log_probs"] is True
    live_log, pre_log = (pd.read_csv(r.path / "train_log.csv").dropna(subset=["loss"]) for r in (live, pre))
    assert len(live_log) == len(pre_log) == 3
    np.testing.assert_allclose(pre_log["loss"], live_log["loss"], rtol=1e-5)
    np.testing.assert_allclose(pre_log["rewards/margins"], live_log["rewards/margins"], rtol=1e-4, atol=1e-6)
    assert pre.manifest.metrics["train_loss"] == pytest.approx(live.manifest.metrics["train_loss"], rel=1e-5)
    a, b = load_file(live.path / "model.safetensors"), load_file(pre.path / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_dpo_manifest_final_loss_is_the_last_step_loss(sft_cell, tmp_path):
    """As for SFT: `final_loss` is the last logged step loss, `train_loss` the mean over the steps; the CLI
    summary shows the final loss, and "-" (not the mean) for a manifest that did not record it."""
    from evalsuite.cli.train import _summary, console
    from evalsuite.training.cells import CellResult
    from evalsuite.training.dpo import train_dpo_cell

    cell = train_dpo_cell(_dpo_config(tmp_path, tmp_path / "out"), sft_cell)
    losses = pd.read_csv(cell.path / "train_log.csv").dropna(subset=["loss"])["loss"]
    metrics = cell.manifest.metrics
    assert len(losses) == 3 and losses.iloc[-1] != pytest.approx(losses.mean())
    assert metrics["final_loss"] == pytest.approx(losses.iloc[-1]) and metrics["train_loss"] == pytest.approx(losses.mean())
    assert metrics["world_size"] == 1
    old = cell.manifest.model_copy(update={"metrics": {k: v for k, v in metrics.items() if k != "final_loss"}})
    with console.capture() as shown:
        _summary([cell, CellResult(cell.path, True, old)])
    rows = [line for line in shown.get().splitlines() if "│ dpo " in line]  # a row's first line: its stage column
    assert len(rows) == 2
    assert f"{metrics['final_loss']:.4f}" in rows[0] and f"{metrics['train_loss']:.4f}" not in rows[1]


def test_dpo_in_bf16(sft_cell, tmp_path):
    from safetensors.torch import load_file

    from evalsuite.training.dpo import train_dpo_cell

    cell = train_dpo_cell(_dpo_config(tmp_path, tmp_path / "out", precision="bf16", training={"max_steps": 1}), sft_cell)
    assert cell.manifest.dtype == "bfloat16"
    assert {t.dtype for t in load_file(cell.path / "model.safetensors").values()} == {torch.bfloat16}


def test_lora_dpo_reference_is_the_adapter_disabled(sft_cell, tmp_path):
    """With LoRA the reference is the policy with its adapter off: that is exactly the SFT cell, and the
    adapter on reproduces the merged checkpoint the cell publishes."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from evalsuite.training.config import LoraSpec
    from evalsuite.training.dpo import train_dpo_cell

    cell = train_dpo_cell(_dpo_config(tmp_path, tmp_path / "out", lora=LoraSpec(r=4), training={"learning_rate": 1e-2}),
                          sft_cell)
    assert cell.manifest.hyperparameters["lora"]["r"] == 4 and (cell.path / "adapter" / "adapter_config.json").is_file()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    sft = AutoModelForCausalLM.from_pretrained(sft_cell).eval()
    with torch.no_grad():
        sft_logits = sft(ids).logits
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sft_cell), cell.path / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(cell.path).eval()
    with torch.no_grad():
        with peft.disable_adapter():
            torch.testing.assert_close(peft(ids).logits, sft_logits, rtol=0, atol=0)
        torch.testing.assert_close(peft(ids).logits, merged(ids).logits, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(merged(ids).logits, sft_logits, atol=1e-4)  # the adapter did train


def test_sft_then_dpo_grid_killed_mid_dpo_cell_resumes(tiny_model_dir, tmp_path):
    """`evalsuite train grid --dpo` is SIGKILLed while the second DPO cell trains; the re-run skips both SFT
    cells and the first DPO cell, resumes the second from its checkpoint and ends with the weights of an
    uninterrupted `evalsuite train dpo` of that cell."""
    from safetensors.torch import load_file

    from evalsuite.manifest import read_manifest

    sft = write_jsonl(tmp_path / "s.jsonl", [{"prompt": p["prompt"], "response": p["chosen"]} for p in _even_odd(8)])
    prefs = write_jsonl(tmp_path / "p.jsonl", _even_odd(40))
    out = tmp_path / "grid"
    dpo_over = [f"dataset.path={prefs}", "global_batch_size=4", "training.per_device_train_batch_size=2",
                "training.max_steps=10", "training.save_steps=2", "training.learning_rate=1e-3", "max_length=64",
                "precision=fp32"]
    args = EVALSUITE + ["train", "grid", "--cells", "0:1,1:1", "--dpo", f"model={tiny_model_dir}", f"dataset.path={sft}",
                        f"output_dir={out}", "global_batch_size=4", "training.per_device_train_batch_size=4",
                        "training.max_steps=1", "precision=fp32"] + [f"dpo.{o}" for o in dpo_over]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    marker = out / "dpo" / ".work" / "lp1_lr1" / "checkpoint-4" / "trainer_state.json"
    run_and_kill_at(args, marker, env)
    assert (out / "dpo" / "lp0_lr1" / "evalsuite.json").is_file() and not (out / "dpo" / "lp1_lr1").exists()
    first = (out / "dpo" / "lp0_lr1" / "evalsuite.json").read_text()

    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    for cell in ("sft/lp0_lr1", "sft/lp1_lr1", "dpo/lp0_lr1"):
        assert f"{cell}: already trained, skipping" in rerun.stdout
    assert "dpo/lp1_lr1: DPO on 40 pairs, resuming from checkpoint-" in rerun.stdout.replace("\n", " ")
    assert (out / "dpo" / "lp0_lr1" / "evalsuite.json").read_text() == first
    resumed = read_manifest(out / "dpo" / "lp1_lr1")
    assert resumed.metrics["steps"] == 10 and resumed.parent == str((out / "sft" / "lp1_lr1").resolve())

    clean = tmp_path / "clean"
    ok = subprocess.run(EVALSUITE + ["train", "dpo", "--from", str(out / "sft"), "--cells", "1:1", "--out", str(clean)]
                        + dpo_over, cwd=ROOT, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    a, b = load_file(out / "dpo" / "lp1_lr1" / "model.safetensors"), load_file(clean / "dpo" / "lp1_lr1" / "model.safetensors")
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_grid_rejects_dpo_overrides_without_dpo(tmp_path):
    proc = subprocess.run(EVALSUITE + ["train", "grid", "--cells", "0:1", "dpo.beta=0.2"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "need --dpo" in proc.stderr
    proc = subprocess.run(EVALSUITE + ["train", "grid", "--cells", "0:1", "--dpo", "dpo.beta=-1",
                                       f"output_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "beta" in proc.stderr and not (tmp_path / "sft").exists()  # checked before SFT


def test_dpo_config_defaults_and_overrides():
    from evalsuite.training.config import load_run_config
    from evalsuite.training.dpo import DEMO_PREFERENCES, DPORunConfig

    cfg = load_run_config(DPORunConfig, None, ["dataset.limit=8", "training.learning_rate=1e-6"])
    assert cfg.dataset.path == str(DEMO_PREFERENCES) and cfg.dataset.limit == 8
    args = cfg.training_args()
    assert args["learning_rate"] == 1e-6 and args["warmup_steps"] == 0.1 and args["num_train_epochs"] == 2
    assert args["weight_decay"] == 0 and cfg.beta == 0.1 and cfg.global_batch_size == 32
    for bad, msg in [("training.beta=0.2", "use beta"), ("beta=0", "beta"), ("training.lr=1", "lr")]:
        with pytest.raises(ConfigError, match=msg):
            load_run_config(DPORunConfig, None, [bad])


def test_adapter_only_cells_dpo_reference_is_the_sft_adapter(tiny_model_dir, tmp_path):
    """LoRA cells kept as adapters (`lora.merged: false`): the SFT cell is its adapter alone (found by discovery with
    its base), and DPO trains that adapter further against a frozen copy of it. The reference is therefore the SFT
    cell, not the base model: at the first step, before any update, policy and reference agree, so TRL's logged
    rewards are exactly 0; were the reference the base (adapter disabled) they would not be."""
    from safetensors.torch import load_file

    from evalsuite.run.discovery import discover
    from evalsuite.training.config import LoraSpec, load_sft_config
    from evalsuite.training.dpo import train_dpo_cell
    from evalsuite.training.sft import load_model, train_cell

    rows = [{"prompt": p["prompt"], "response": p["chosen"]} for p in _even_odd(8)]
    sft = train_cell(load_sft_config(None, [
        f"model={tiny_model_dir}", f"dataset.path={write_jsonl(tmp_path / 's.jsonl', rows)}", f"output_dir={tmp_path}",
        "global_batch_size=4", "training.per_device_train_batch_size=4", "training.max_steps=2", "precision=fp32",
        "training.learning_rate=0.05", "lora.r=4", "lora.merged=false"])).path
    assert (sft / "adapter_config.json").is_file() and not (sft / "config.json").exists()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    base = load_model(tiny_model_dir, torch.float32, False).eval()
    with torch.no_grad():
        assert not torch.allclose(load_model(sft, torch.float32, False).eval()(ids).logits, base(ids).logits, atol=1e-3)
    dpo = train_dpo_cell(_dpo_config(tmp_path, tmp_path / "dpo", lora=LoraSpec(r=4, merged=False),
                                     training={"logging_steps": 1}), sft)
    assert dpo.manifest.hyperparameters["lora_continues_sft_adapter"] is True
    assert (dpo.path / "adapter_config.json").is_file() and not (dpo.path / "ref").exists()
    log = pd.read_csv(dpo.path / "train_log.csv").dropna(subset=["loss"])
    assert log["rewards/chosen"].iloc[0] == pytest.approx(0, abs=1e-6)
    assert log["rewards/rejected"].iloc[0] == pytest.approx(0, abs=1e-6)
    assert log["rewards/margins"].iloc[-1] != pytest.approx(0, abs=1e-6)  # and the adapter did train
    a, b = load_file(sft / "adapter_model.safetensors"), load_file(dpo.path / "adapter_model.safetensors")
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    found = {c.name: c for c in discover(tmp_path)}
    assert {found[n].adapter_of for n in ("sft/lp0_lr1", "dpo/dpo/lp0_lr1")} == {tiny_model_dir.resolve()}
    assert found["dpo/dpo/lp0_lr1"].problem is None and found["dpo/dpo/lp0_lr1"].stage == "dpo"
