"""Shared fixtures. Unit tests use a tiny random Llama built here; integration tests use SmolLM2."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Tests never reach the Hugging Face hub: everything they load is built here or read from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EVALSUITE = [sys.executable, "-m", "evalsuite"]  # the CLI as a real subprocess

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: what is two plus two? Answer: four.",
    "A B C D answer the following multiple choice questions about science and history.",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "Write a short poem about the sea, the sky, and the wind.",
] * 20


def build_tiny_model(directory: Path, seed: int = 0, max_positions: int = 128) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained on a few sentences, saved as safetensors."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>", model_max_length=max_positions,
    )
    tok.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=max_positions, tie_word_embeddings=True, initializer_range=0.2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(str(directory), safe_serialization=True)
    tok.save_pretrained(str(directory))
    return directory


def bos_model_dir(directory: Path) -> Path:
    """The tiny Llama whose fast tokenizer prepends its BOS token when asked for special tokens, as Llama's and
    Mistral's do (the shared tiny tokenizer and SmolLM2's never do)."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    build_tiny_model(directory)
    tok = AutoTokenizer.from_pretrained(directory)
    bos = tok.bos_token
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.bos_token_id)])
    tok.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_long_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with room for few-shot benchmark prompts (4,096 positions: BBH's 3-shot CoT prompts
    take ~1,900 tokens under its small vocabulary)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-long"), max_positions=4096)


@pytest.fixture(scope="session")
def tiny_tok(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_hf(tiny_model_dir: Path):
    from evalsuite.backends import HFConfig, load_backend

    return load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32", batch_size=3))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct prepared from the embedded GGUF (fp32), cached across runs."""
    from evalsuite.models import prepare_model

    return prepare_model("smollm2-135m-instruct", dtype="fp32").path


def run_and_kill_at(args: list[str], marker: Path, env: dict, timeout: float = 300) -> None:
    """Run a real subprocess and SIGKILL it the moment `marker` appears (a checkpoint written mid-run)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run ended before the kill point:\n" + proc.stdout.read()[-3000:]
