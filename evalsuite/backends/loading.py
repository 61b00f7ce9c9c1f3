"""Loading tokenizers and resolving dtypes/devices, shared by the local backends."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from evalsuite.errors import CheckpointError
from evalsuite.models.checkpoint import first_line, read_model_config

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, checkpoint: Path) -> str:
    """'auto' means the dtype the checkpoint was saved in (float32 if it does not say)."""
    if dtype != "auto":
        return dtype
    config = read_model_config(checkpoint)
    saved = config.get("dtype") or config.get("torch_dtype") or "float32"
    return saved if saved in TORCH_DTYPES else "float32"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, json errors... for bad dirs
        raise CheckpointError(f"cannot load tokenizer from {path}: {first_line(exc)}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def model_context_length(checkpoint: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> int:
    config = read_model_config(checkpoint)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and limit < 1_000_000 else 2048
