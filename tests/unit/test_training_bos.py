"""The manifest records whether training put the tokenizer's BOS before each prompt (`add_bos_token`), so that
evaluation can do the same. The shared tiny tokenizer (and SmolLM2's) never prepends BOS; the one built here
does, as Llama's and Mistral's do."""

from __future__ import annotations

from tests.conftest import bos_model_dir, write_jsonl


def test_manifests_record_whether_training_prompts_start_with_bos(tmp_path):
    from evalsuite.manifest import read_manifest
    from evalsuite.training.config import load_sft_config
    from evalsuite.training.dpo import DPORunConfig, train_dpo_cell
    from evalsuite.training.data import DatasetSpec
    from evalsuite.training.sft import config_data, load_tokenizer, train_cell

    model = bos_model_dir(tmp_path / "bos-llama")
    rows = [{"prompt": f"Is {i} even?", "response": "yes" if i % 2 == 0 else "no"} for i in range(4)]
    common = [f"model={model}", f"dataset.path={write_jsonl(tmp_path / 's.jsonl', rows)}", f"output_dir={tmp_path / 'out'}",
              "global_batch_size=4", "training.per_device_train_batch_size=4", "training.max_steps=1", "precision=fp32"]
    plain_config = load_sft_config(None, common + ["prompt_format=plain"])
    plain = train_cell(plain_config)
    assert plain.manifest.add_bos_token is True
    tok = load_tokenizer(model)
    example = config_data(plain_config, tok).examples[0]  # what the cell trained on
    assert example.input_ids[0] == tok.bos_token_id and example.prompt_mask[0]
    # The chat template writes its own special tokens: no BOS is added, whatever the tokenizer does.
    chat = train_cell(load_sft_config(None, common + ["prompt_format=chat_template", "lambda_p=1"]))
    assert chat.manifest.add_bos_token is False
    # DPO encodes its pairs as the SFT parent's prompts, so it records the same.
    prefs = [{"prompt": r["prompt"], "chosen": r["response"], "rejected": "maybe"} for r in rows]
    dpo = train_dpo_cell(DPORunConfig(dataset=DatasetSpec(path=str(write_jsonl(tmp_path / "p.jsonl", prefs))),
                                      output_dir=tmp_path / "out", global_batch_size=4, precision="fp32",
                                      training={"per_device_train_batch_size": 4, "max_steps": 1}), plain.path)
    assert dpo.manifest.prompt_format == "plain" and dpo.manifest.add_bos_token is True
    assert read_manifest(dpo.path).add_bos_token is True  # written to evalsuite.json, not only returned
