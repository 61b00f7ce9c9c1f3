"""WIT SFT on the real SmolLM2: a 3-cell grid of a few steps gives three loadable checkpoints with lineage."""

from __future__ import annotations

import math

import pytest

from evalsuite.manifest import read_manifest

pytestmark = pytest.mark.integration


def test_three_cell_grid_on_smollm2(smollm2_dir, tmp_path):
    from evalsuite.backends import HFConfig, LoglikelihoodRequest, load_backend
    from evalsuite.training.config import load_sft_config
    from evalsuite.training.sft import train_grid

    config = load_sft_config(None, [
        f"model={smollm2_dir}", f"output_dir={tmp_path}", "dataset.limit=16", "global_batch_size=2",
        "training.per_device_train_batch_size=2", "training.max_steps=2", "training.save_steps=100",
        "max_length=128", "precision=fp32",
    ])
    cells = train_grid(config, [(0.0, 1.0), (0.4, 1.0), (1.0, 1.0)])
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
    assert all(c.skipped for c in train_grid(config, [(0.0, 1.0), (0.4, 1.0), (1.0, 1.0)]))
