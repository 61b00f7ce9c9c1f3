"""Preference data in the SFT cell's format, and TRL DPO on it (issue 4, work in progress)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evalsuite.errors import ConfigError
from tests.conftest import write_jsonl
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
