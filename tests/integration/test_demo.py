import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_every_stage_and_says_where_outputs_are(tmp_path, smollm2_dir):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "evalsuite", "demo", "--backend", "hf", "--out", str(out), "--max-new-tokens", "24",
         "--sft-steps", "2", "--dpo-steps", "1"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Demo outputs:" in proc.stdout and str(out) in proc.stdout.replace("\n", "")
    rows = [json.loads(l) for l in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["response"].strip() for r in rows)
    paris = next(r for r in rows if "France" in r["prompt"])
    assert "Paris" in paris["response"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"]["kind"] == "hf" and summary["mcq_accuracy"] >= 0.5
    # The WIT stage: three grid cells, each a complete checkpoint with its manifest, scored like the base.
    cells = summary["sft_cells"]
    assert [c["cell"] for c in cells] == ["lp0_lr1", "lp0.4_lr1", "lp1_lr1"]
    for c in cells:
        manifest = json.loads((out / "runs" / "sft" / c["cell"] / "evalsuite.json").read_text())
        assert manifest["stage"] == "sft" and manifest["metrics"]["steps"] == 2
        assert 0 <= c["mcq_accuracy"] <= 1 and c["final_loss"] > 0
    # The DPO stage: one DPO cell per SFT cell, its parent that cell, scored the same way.
    dpo = summary["dpo_cells"]
    assert [c["cell"] for c in dpo] == ["lp0_lr1", "lp0.4_lr1", "lp1_lr1"]
    for c in dpo:
        manifest = json.loads((out / "runs" / "dpo" / c["cell"] / "evalsuite.json").read_text())
        assert manifest["stage"] == "dpo" and manifest["metrics"]["steps"] == 1
        assert manifest["parent"] == str((out / "runs" / "sft" / c["cell"]).resolve())
        assert c["reward_accuracy"] is not None and 0 <= c["mcq_accuracy"] <= 1
