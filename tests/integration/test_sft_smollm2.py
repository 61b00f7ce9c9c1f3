"""WIT SFT then DPO on the real SmolLM2: a 3-cell grid of a few steps gives three loadable SFT checkpoints,
and `evalsuite train dpo` over them three DPO checkpoints, each with complete lineage."""

from __future__ import annotations

import json
import math
import subprocess

import pandas as pd
import pytest

from evalsuite.manifest import read_manifest
from tests.conftest import EVALSUITE, ROOT

pytestmark = pytest.mark.integration

CELLS = [(0.0, 1.0), (0.4, 1.0), (1.0, 1.0)]


@pytest.fixture(scope="module")
def sft_grid(smollm2_dir, tmp_path_factory):
    from evalsuite.training.config import load_sft_config
    from evalsuite.training.sft import train_grid

    config = load_sft_config(None, [
        f"model={smollm2_dir}", f"output_dir={tmp_path_factory.mktemp('wit')}", "dataset.limit=16",
        "global_batch_size=2", "training.per_device_train_batch_size=2", "training.max_steps=2",
        "training.save_steps=100", "max_length=128", "precision=fp32",
    ])
    return config, train_grid(config, CELLS)


def test_three_cell_grid_on_smollm2(smollm2_dir, sft_grid):
    from evalsuite.backends import HFConfig, LoglikelihoodRequest, load_backend
    from evalsuite.training.sft import train_grid

    config, cells = sft_grid
    assert [c.path.name for c in cells] == ["lp0_lr1", "lp0.4_lr1", "lp1_lr1"]
    losses = []
    for cell in cells:
        m = read_manifest(cell.path)
        assert m.stage == "sft" and m.parent == str(smollm2_dir.resolve()) and m.prompt_format == "chat_template"
        stats = m.source["data_stats"]
        assert m.metrics["steps"] == 2 and stats["rows"] == 16 and stats["examples"] + stats["too_long"] == 16
        losses.append(m.metrics["train_loss"])
        with load_backend(HFConfig(model=str(cell.path), dtype="float32")) as engine:
            (ll,) = engine.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])
        assert math.isfinite(ll.logprob) and ll.logprob < 0
    # Same data and seed: adding prompt tokens (easy to predict after the template) changes the loss.
    assert len({round(x, 4) for x in losses}) == 3
    # A second run finds every cell done.
    assert all(c.skipped for c in train_grid(config, CELLS))


def test_train_dpo_over_the_grid_on_smollm2(smollm2_dir, sft_grid):
    """`evalsuite train dpo` over the 3 SFT cells, on a toy set of 2 pairs seen at every step (lr raised from
    the paper's 5e-7 and no warm-up, so 2 updates show): the reference is the untouched SFT cell and the margin rises."""
    from evalsuite.models.checkpoint import CHECKPOINT_FILE_SUFFIXES
    from evalsuite.paths import fingerprint_dir

    config, cells = sft_grid
    out = config.output_dir
    before = {c.path.name: fingerprint_dir(c.path, CHECKPOINT_FILE_SUFFIXES) for c in cells}
    proc = subprocess.run(
        EVALSUITE + ["train", "dpo", "--from", str(out / "sft"), "dataset.limit=2", "global_batch_size=2",
                     "training.per_device_train_batch_size=2", "training.max_steps=3", "training.learning_rate=5e-6",
                     "training.warmup_steps=0", "max_length=256", "precision=fp32"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    settings = set()
    for sft in cells:
        cell = out / "dpo" / sft.path.name
        m = read_manifest(cell)
        # base → SFT cell → DPO cell, in the SFT cell's prompt format.
        assert m.stage == "dpo" and m.parent == str(sft.path.resolve()) and m.prompt_format == "chat_template"
        assert read_manifest(sft.path).parent == str(smollm2_dir.resolve()) and m.base_model == sft.manifest.base_model
        assert m.cell == sft.manifest.cell and m.metrics["steps"] == 3 and m.source["data_stats"]["rows"] == 2
        trainer = m.hyperparameters["trainer"]  # the paper's settings underneath the override
        assert m.hyperparameters["beta"] == 0.1 and trainer["num_train_epochs"] == 2 and trainer["weight_decay"] == 0
        # The reference = the SFT cell, untouched: step 1 is scored before any update, so the implicit rewards
        # are 0 and the loss is log 2; then the margin on the same two pairs rises.
        assert m.source["parent_fingerprint"] == before[sft.path.name] == fingerprint_dir(sft.path, CHECKPOINT_FILE_SUFFIXES)
        curve = pd.read_csv(cell / "train_log.csv").dropna(subset=["loss"])
        margins = curve["rewards/margins"].tolist()
        assert abs(curve["rewards/chosen"].iloc[0]) < 1e-4 and curve["loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-4)
        assert margins[0] < margins[1] < margins[2] and m.metrics["reward_margin"] == pytest.approx(margins[2])
        assert (cell / "model.safetensors").is_file() and (cell / "tokenizer.json").is_file()
        settings.add(json.dumps([trainer, m.source["dataset_fingerprint"]], sort_keys=True))
    assert len(settings) == 1  # identical data, hyper-parameters and seed for every cell
