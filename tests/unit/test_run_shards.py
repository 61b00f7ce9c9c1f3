"""A run split by checkpoint (`evalsuite run --checkpoints` / `--shard i/n`), each shard with its own request store,
then `evalsuite merge`: the merged folder has the table, items and paired tests against (0, 1) an unsharded run of
the same checkpoints has, and every request once."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from evalsuite.errors import ConfigError
from evalsuite.run.discovery import Selection
from tests.conftest import EVALSUITE, ROOT, build_tiny_model, write_jsonl

QUESTIONS = [{"question": f"Which colour is item {i} about {s}?", "subject": s,
              "choices": ["red", "green", "blue", "black"], "answer": (i + k) % 4}
             for k, s in enumerate(("anatomy", "virology")) for i in range(3)]
KEYS = ["checkpoint", "task", "condition", "metric"]


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEYS, kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, Path]:
    """base/ + SFT cells (0, 1), (1, 1) + DPO on each (`evalsuite train grid --dpo`, tiny model), and MMLU items."""
    root = tmp_path_factory.mktemp("shards")
    models = root / "models"
    build_tiny_model(models / "base", seed=0, max_positions=512)
    sft = write_jsonl(root / "sft.jsonl", [{"prompt": q["question"], "response": q["choices"][q["answer"]]}
                                           for q in QUESTIONS])
    prefs = write_jsonl(root / "prefs.jsonl", [{"prompt": q["question"], "chosen": q["choices"][q["answer"]],
                                                "rejected": q["choices"][q["answer"] - 1]} for q in QUESTIONS])
    train = subprocess.run(
        EVALSUITE + ["train", "grid", "--cells", "0:1,1:1", "--dpo", f"model={models / 'base'}", f"dataset.path={sft}",
                     f"output_dir={models}", "global_batch_size=2", "training.per_device_train_batch_size=2",
                     "training.max_steps=2", "training.learning_rate=1e-2", "max_length=128", "precision=fp32",
                     f"dpo.dataset.path={prefs}", "dpo.global_batch_size=2", "dpo.training.per_device_train_batch_size=2",
                     "dpo.training.max_steps=2", "dpo.max_length=128", "dpo.precision=fp32"],
        cwd=ROOT, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    data = root / "mmlu"
    data.mkdir()
    write_jsonl(data / "test.jsonl", QUESTIONS)
    return models, data


def run(models: Path, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(EVALSUITE + ["run", "--models", str(models), "--benchmarks", "mmlu", "--perturb", "typo",
                                       "--variants", "2", "--data", str(data), "--dtype", "float32", "--out", str(out),
                                       "--no-report", *extra], cwd=ROOT, capture_output=True, text=True)


def test_two_shards_merged_equal_one_unsharded_run(grid, tmp_path):
    models, data = grid
    whole = run(models, data, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    shards = []
    for i in (1, 2):
        proc = run(models, data, tmp_path / f"shard{i}", "--shard", f"{i}/2")
        assert proc.returncode == 0, proc.stderr[-3000:]
        shards.append(tmp_path / f"shard{i}")
    held = [set(pd.read_parquet(s / "checkpoints.parquet").checkpoint) for s in shards]
    assert held[0] and held[1] and not held[0] & held[1]
    assert held[0] | held[1] == {"base", "sft/lp0_lr1", "sft/lp1_lr1", "dpo/lp0_lr1", "dpo/lp1_lr1"}
    # the shard without the (0, 1) SFT cell cannot test (1, 1) against it: the merge does
    merged = subprocess.run(EVALSUITE + ["merge", *map(str, shards), "--out", str(tmp_path / "merged"), "--no-report"],
                            cwd=ROOT, capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr[-3000:]
    a, b = (pd.read_parquet(tmp_path / d / "results.parquet") for d in ("whole", "merged"))
    assert (a.metric == "mcnemar_p_vs_0_1").sum() == 2  # (1, 1) against (0, 1), SFT and DPO
    pd.testing.assert_frame_equal(canonical(a), canonical(b))
    items = [pd.read_parquet(tmp_path / d / "items.parquet") for d in ("whole", "merged")]
    pd.testing.assert_frame_equal(*(i.sort_values(["checkpoint", "condition", "item_id", "variant"]).reset_index(drop=True)
                                    for i in items))
    for name in ("checkpoints.parquet", "prompts.parquet"):
        pd.testing.assert_frame_equal(*(pd.read_parquet(tmp_path / d / name) for d in ("whole", "merged")))
    # every request once: the merged store holds exactly the unsharded run's keys
    keys = [{k for (k,) in sqlite3.connect(tmp_path / d / "requests.sqlite").execute("SELECT key FROM requests")}
            for d in ("whole", "merged")]
    assert keys[0] == keys[1] and len(keys[0]) > 0
    record = __import__("json").loads((tmp_path / "merged" / "run.json").read_text())
    assert record["state"] == "finished" and len(record["merged_from"]) == 2
    # a shard whose base model was evaluated before any cell named it (a study evaluates the base while the cells
    # train) has no base_model for it: the merge attaches it as discovery does
    for shard in shards:
        for name in ("results.parquet", "checkpoints.parquet"):
            frame = pd.read_parquet(shard / name)
            frame.loc[frame.checkpoint == "base", "base_model"] = None
            frame.to_parquet(shard / name, index=False)
    # merging again (e.g. a re-run of the study's report unit) gives the same table
    again = subprocess.run(EVALSUITE + ["merge", *map(str, shards), "--out", str(tmp_path / "merged"), "--no-report"],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0
    pd.testing.assert_frame_equal(b, pd.read_parquet(tmp_path / "merged" / "results.parquet"))
    # a shard left out, a checkpoint in two shards, or shards of other settings: refused before anything is written
    lost = subprocess.run(EVALSUITE + ["merge", str(shards[0]), "--out", str(tmp_path / "bad")], cwd=ROOT,
                          capture_output=True, text=True)
    assert lost.returncode == 2 and "shard(s) 2/2 missing" in lost.stderr and not (tmp_path / "bad").exists()
    one = run(models, data, tmp_path / "one", "--checkpoints", "sft/lp0_lr1")
    assert one.returncode == 0, one.stderr[-2000:]
    dup = subprocess.run(EVALSUITE + ["merge", str(tmp_path / "whole"), str(tmp_path / "one"), "--out",
                                      str(tmp_path / "bad")], cwd=ROOT, capture_output=True, text=True)
    assert dup.returncode == 2 and "is in two shards" in dup.stderr and not (tmp_path / "bad").exists()
    other = run(models, data, tmp_path / "other", "--checkpoints", "sft/lp1_lr1", "--variants", "1")
    assert other.returncode == 0, other.stderr[-2000:]
    mixed = subprocess.run(EVALSUITE + ["merge", str(tmp_path / "one"), str(tmp_path / "other"), "--out",
                                        str(tmp_path / "bad")], cwd=ROOT, capture_output=True, text=True)
    assert mixed.returncode == 2 and "other settings" in mixed.stderr and "variants" in mixed.stderr


def test_checkpoints_flag_names_unknown_checkpoints(grid, tmp_path):
    models, data = grid
    proc = run(models, data, tmp_path / "one", "--checkpoints", "sft/lp0_lr", "--perturb", "")
    assert proc.returncode == 2 and "no checkpoint named sft/lp0_lr" in proc.stderr and "sft/lp0_lr1" in proc.stderr


def test_selection_parse_and_apply():
    assert Selection.parse(None, "2/3").shard == (2, 3)
    for bad in ("0/2", "3/2", "x", "1/0", "1-2"):
        with pytest.raises(ConfigError, match="--shard"):
            Selection.parse(None, bad)
    with pytest.raises(ConfigError, match="names no checkpoint"):
        Selection.parse(",", None)
    names = [type("C", (), {"name": n})() for n in "abcde"]
    assert [c.name for c in Selection.parse(None, "1/2").apply(names)] == ["a", "c", "e"]
    assert [c.name for c in Selection.parse(None, "2/2").apply(names)] == ["b", "d"]
    assert [c.name for c in Selection.parse("e,b/", "1/2").apply(names)] == ["b"]
    assert Selection().record() is None and Selection.parse("a", None).record() == {"checkpoints": ["a"], "shard": None}
