"""SFT runs: config validation, cell layout and manifest, skip/resume, and a real SIGKILL mid-grid."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evalsuite.errors import ConfigError
from evalsuite.manifest import read_manifest
from evalsuite.training.config import load_sft_config, paper_grid, parse_cells
from tests.conftest import EVALSUITE, ROOT, run_and_kill_at



def _data(tmp_path: Path, n: int = 24) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [{"instruction": f"Repeat the word fox {i % 4 + 1} times", "input": "", "output": " ".join(["fox"] * (i % 4 + 1))}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _overrides(model: Path, data: Path, out: Path, steps: int = 2, save_steps: int = 1) -> list[str]:
    return [f"model={model}", f"dataset.path={data}", f"output_dir={out}", "global_batch_size=4",
            "training.per_device_train_batch_size=2", f"training.max_steps={steps}",
            f"training.save_steps={save_steps}", "max_length=64", "precision=fp32"]


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("override,msg", [
    ("lambda_p=1.5", "lambda_p must be in"),
    ("lambda_r=-0.2", "lambda_r must be in"),
    ("training.learning_rat=1e-5", "did you mean learning_rate"),
    ("training.seed=3", "set by evalsuite: use seed"),
    ("precision=fp16", "precision"),
    ("lora.rank=8", "lora.rank"),
])
def test_config_errors_are_clear(override, msg):
    with pytest.raises(ConfigError, match=msg):
        load_sft_config(None, [override])


def test_both_lambdas_zero_is_rejected():
    with pytest.raises(ConfigError, match="both 0"):
        load_sft_config(None, ["lambda_p=0", "lambda_r=0"])


def test_config_file_values_and_overrides(tmp_path):
    path = tmp_path / "wit.yaml"
    # `1e-5` (no dot) is a string to PyYAML's YAML 1.1 rules; learning rates are written that way.
    path.write_text("lambda_p: 0.2\ntraining:\n  learning_rate: 1e-5\ndataset:\n  path: data.jsonl\n  limit: 10\n")
    cfg = load_sft_config(path, ["training.num_train_epochs=3", "dataset.limit=5", "training.adam_epsilon=1e-6"])
    assert cfg.lambda_p == 0.2 and cfg.dataset.path == "data.jsonl" and cfg.dataset.limit == 5
    assert cfg.training_args()["learning_rate"] == 1e-5 and cfg.training_args()["num_train_epochs"] == 3
    assert cfg.training_args()["adam_epsilon"] == 1e-6
    assert cfg.training_args()["weight_decay"] == 0.1  # the paper's default stays underneath


def test_paper_grid_and_cell_parsing():
    grid = paper_grid()
    assert len(grid) == 35 and (0.0, 0.0) not in grid and (0.0, 1.0) in grid and (1.0, 0.2) in grid
    assert parse_cells("0:1, 0.2:1,lp1_lr1,0:1") == [(0.0, 1.0), (0.2, 1.0), (1.0, 1.0)]
    with pytest.raises(ConfigError, match="trains no token"):
        parse_cells("0:0")
    with pytest.raises(ConfigError, match="bad cell"):
        parse_cells("0.2-1")


def test_global_batch_must_divide(tiny_model_dir, tmp_path):
    from evalsuite.training.sft import gradient_accumulation

    cfg = load_sft_config(None, ["global_batch_size=6", "training.per_device_train_batch_size=4"])
    with pytest.raises(ConfigError, match="not a multiple"):
        gradient_accumulation(cfg)
    assert gradient_accumulation(load_sft_config(None, ["global_batch_size=64", "training.per_device_train_batch_size=8"])) == 8


# ------------------------------------------------------------------------------------------------ cells


def test_cell_layout_manifest_and_skip(tiny_model_dir, tmp_path):
    from evalsuite.training.sft import train_cell

    data = _data(tmp_path)
    cfg = load_sft_config(None, _overrides(tiny_model_dir, data, tmp_path / "out") + ["lambda_p=0.4"])
    first = train_cell(cfg)
    cell = tmp_path / "out" / "sft" / "lp0.4_lr1"
    assert first.path == cell and not first.skipped
    m = read_manifest(cell)
    assert m.stage == "sft" and m.prompt_format == "chat_template" and m.parent == str(Path(tiny_model_dir).resolve())
    assert m.hyperparameters["lambda_p"] == 0.4 and m.hyperparameters["lambda_r"] == 1.0
    assert m.hyperparameters["trainer"]["learning_rate"] == 2e-5 and m.hyperparameters["seed"] == 23
    assert m.metrics["steps"] == 2 and m.metrics["tokens_seen"] > 0 and m.metrics["final_loss"] > 0
    assert len(m.source["dataset_fingerprint"]) == 64 and m.versions["trl"]
    assert (cell / "model.safetensors").is_file() and (cell / "train_log.csv").is_file()
    assert not (tmp_path / "out" / "sft" / ".work" / "lp0.4_lr1").exists()
    # The checkpoint loads as a plain HF model.
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(cell)
    again = train_cell(cfg)
    assert again.skipped
    changed = load_sft_config(None, _overrides(tiny_model_dir, data, tmp_path / "out") + ["lambda_p=0.4", "seed=5"])
    with pytest.raises(ConfigError, match="different settings"):
        train_cell(changed)


def test_lora_cell_saves_merged_weights_and_adapter(tiny_model_dir, tmp_path):
    from evalsuite.training.sft import train_cell

    cfg = load_sft_config(None, _overrides(tiny_model_dir, _data(tmp_path), tmp_path / "out", steps=2)
                          + ["lora.r=4", "training.learning_rate=0.01"])
    cell = train_cell(cfg).path
    assert (cell / "adapter" / "adapter_config.json").is_file()
    merged, base = load_file(cell / "model.safetensors"), load_file(Path(tiny_model_dir) / "model.safetensors")
    assert merged.keys() == base.keys()
    assert any(not torch.equal(merged[k], base[k]) for k in base)


def test_bf16_autocast_precision_trains(tiny_model_dir, tmp_path):
    from evalsuite.training.sft import train_cell

    over = [o for o in _overrides(tiny_model_dir, _data(tmp_path), tmp_path / "out", steps=1) if not o.startswith("precision")]
    m = train_cell(load_sft_config(None, over + ["precision=bf16-autocast"])).manifest
    assert m.dtype == "float32" and m.hyperparameters["trainer"]["bf16"] is True and m.metrics["final_loss"] > 0
    m = train_cell(load_sft_config(None, over + ["precision=bf16", "lambda_p=1"])).manifest
    assert m.dtype == "bfloat16"


def test_interrupted_grid_resumes_without_retraining_finished_cells(tiny_model_dir, tmp_path):
    """A real `evalsuite train grid` subprocess is SIGKILLed while cell 2 trains; the re-run skips cell 1,
    resumes cell 2 from its last checkpoint and ends with the same weights as an uninterrupted run."""
    data = _data(tmp_path, n=48)
    out = tmp_path / "grid"
    args = EVALSUITE + ["train", "grid", "--cells", "0:1,0.4:1,1:1"] + _overrides(tiny_model_dir, data, out, steps=10, save_steps=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    marker = out / "sft" / ".work" / "lp0.4_lr1" / "checkpoint-4" / "trainer_state.json"
    run_and_kill_at(args, marker, env)
    assert not (out / "sft" / "lp0.4_lr1").exists()
    cell1 = out / "sft" / "lp0_lr1"
    cell1_manifest = (cell1 / "evalsuite.json").read_text()

    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "lp0_lr1: already trained, skipping" in rerun.stdout
    assert "resuming from checkpoint-" in rerun.stdout
    assert (cell1 / "evalsuite.json").read_text() == cell1_manifest  # not retrained
    for cell in ("lp0_lr1", "lp0.4_lr1", "lp1_lr1"):
        assert read_manifest(out / "sft" / cell).metrics["steps"] == 10

    # The resumed cell equals the same cell trained without interruption.
    clean = tmp_path / "clean"
    ok = subprocess.run(EVALSUITE + ["train", "sft", "--lambda-p", "0.4"] + _overrides(tiny_model_dir, data, clean, steps=10, save_steps=2),
                        cwd=ROOT, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    resumed, straight = load_file(out / "sft" / "lp0.4_lr1" / "model.safetensors"), load_file(clean / "sft" / "lp0.4_lr1" / "model.safetensors")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-5, atol=1e-6)


def test_cli_reports_config_errors_in_one_line(tmp_path):
    proc = subprocess.run(EVALSUITE + ["train", "sft", "lambda_p=2"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("evalsuite: error: invalid config") and "lambda_p must be in [0, 1]" in proc.stderr


def test_interrupted_run_with_other_settings_is_not_resumed(tiny_model_dir, tmp_path):
    from evalsuite.training.cells import RUN_KEY_FILE
    from evalsuite.training.sft import train_cell

    cfg = load_sft_config(None, _overrides(tiny_model_dir, _data(tmp_path), tmp_path / "out", steps=1))
    work = tmp_path / "out" / "sft" / ".work" / "lp0_lr1"
    (work / "checkpoint-1").mkdir(parents=True)
    (work / RUN_KEY_FILE).write_text(json.dumps({"run_key": "another-run"}))
    with pytest.raises(ConfigError, match="interrupted run with different settings"):
        train_cell(cfg)
    assert (work / "checkpoint-1").is_dir()  # nothing discarded without asking
    assert not train_cell(cfg, retrain_changed=True).skipped


def test_nested_override_keeps_the_default_dataset():
    from evalsuite.training.data import DEMO_INSTRUCTIONS

    cfg = load_sft_config(None, ["dataset.limit=32"])
    assert cfg.dataset.path == str(DEMO_INSTRUCTIONS) and cfg.dataset.limit == 32
