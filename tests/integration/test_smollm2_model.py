"""The embedded model: conversion is exact, the CLI leaves a loadable checkpoint that talks sense."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evalsuite.manifest import read_manifest
from evalsuite.models import EMBEDDED_MODELS, prepare_model
from evalsuite.models.prepare import sha256_file

pytestmark = pytest.mark.integration


def test_cli_prepare_to_dest_loads_and_generates_coherent_text(tmp_path):
    dest = tmp_path / "smol"
    proc = subprocess.run(
        [sys.executable, "-m", "evalsuite", "models", "prepare", "smollm2-135m-instruct", "--dest", str(dest)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "converted and verified" in proc.stdout
    model = AutoModelForCausalLM.from_pretrained(str(dest))
    tok = AutoTokenizer.from_pretrained(str(dest))
    assert tok.chat_template and tok.model_max_length == model.config.max_position_embeddings == 8192
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    answer = tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer

    # An independent check of the conversion on a different input than prepare's own probe.
    gguf = EMBEDDED_MODELS["smollm2-135m-instruct"].gguf_path()
    source = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    probe = tok("Once upon a time, in a land far away, there lived", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(source(probe).logits, model(probe).logits)


def test_manifest_and_rerun_is_cached(smollm2_dir):
    manifest = read_manifest(smollm2_dir)
    gguf = EMBEDDED_MODELS["smollm2-135m-instruct"].gguf_path()
    assert manifest.stage == "base" and manifest.base_model == "smollm2-135m-instruct"
    assert manifest.source["sha256"] == sha256_file(gguf) and manifest.prompt_format == "chat_template"
    again = prepare_model("smollm2-135m-instruct", dtype="fp32")
    assert again.cached and again.path == smollm2_dir
