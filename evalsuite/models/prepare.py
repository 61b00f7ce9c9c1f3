"""`evalsuite models prepare`: any embedded model name, GGUF file or HF checkpoint dir -> a plain Hugging
Face safetensors checkpoint (tokenizer and chat template included), verified and cached.

Verification: the saved checkpoint is loaded back from disk and its logits on a probe input must equal,
bit for bit, those of the source model cast to the same dtype. The manifest is written last, so a
directory with a manifest is complete; a re-run with the same source and dtype returns at once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from evalsuite.backends.loading import TORCH_DTYPES
from evalsuite.errors import CheckpointError, EvalsuiteError
from evalsuite.manifest import CheckpointManifest, read_manifest, write_manifest
from evalsuite.models.checkpoint import CHECKPOINT_FILE_SUFFIXES, check_checkpoint_dir, first_line
from evalsuite.models.embedded import EMBEDDED_MODELS
from evalsuite.paths import dir_lock, fingerprint_dir, models_cache_dir, sha256_file, staged_dir

log = logging.getLogger(__name__)

PrepareDType = Literal["fp32", "bf16"]
DTYPES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16"}
PROBE_MESSAGES = [{"role": "user", "content": "Name three prime numbers and explain why they are prime."}]
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. 1 + 1 = 2; the answer is"


@dataclass(frozen=True)
class Source:
    kind: Literal["gguf", "hf"]
    path: Path
    label: str  # embedded name or the path as given
    sha256: str


@dataclass(frozen=True)
class PreparedModel:
    path: Path
    manifest: CheckpointManifest
    cached: bool  # True when an existing verified copy was reused


def resolve_source(name_or_path: str) -> Source:
    if name_or_path in EMBEDDED_MODELS:
        gguf = EMBEDDED_MODELS[name_or_path].gguf_path()
        return Source("gguf", gguf, name_or_path, sha256_file(gguf))
    path = Path(name_or_path).expanduser()
    if not path.exists():
        if "/" not in name_or_path and not name_or_path.endswith(".gguf"):
            known = ", ".join(sorted(EMBEDDED_MODELS))
            raise EvalsuiteError(f"unknown model {name_or_path!r}: not an embedded model ({known}) nor an existing path")
        raise CheckpointError(f"model path not found: {path}")
    if path.is_file():
        _check_gguf(path)
        return Source("gguf", path, str(path), sha256_file(path))
    check_checkpoint_dir(path)
    # Names, sizes and the first MiB of each weight file: cheap, and changes whenever the weights do.
    return Source("hf", path, str(path), fingerprint_dir(path, CHECKPOINT_FILE_SUFFIXES, head_bytes=1 << 20))


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise CheckpointError(f"{path} is not a GGUF file (bad magic bytes {magic!r})")
    from gguf import GGUFReader

    try:
        GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/IndexError/struct errors on truncation
        raise CheckpointError(f"corrupt GGUF file {path}: {first_line(exc)}") from None


def default_dest(source: Source, dtype: PrepareDType) -> Path:
    if source.kind == "gguf" and source.label in EMBEDDED_MODELS:
        stem = source.label
    else:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", source.path.stem if source.kind == "gguf" else source.path.name)
        stem = f"{stem}-{source.sha256[:8]}"
    return models_cache_dir() / f"{stem}-{dtype}"


def _load_source(source: Source, torch_dtype: torch.dtype, trust_remote_code: bool) -> tuple[torch.nn.Module, object]:
    # Load straight in the target dtype: `.to(bf16)` on an fp32 model would also cast buffers that
    # from_pretrained keeps in fp32 (RoPE inv_freq), and then no reload could reproduce its logits.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": source.path.name} if source.kind == "gguf" else {}
    directory = source.path.parent if source.kind == "gguf" else source.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            str(directory), dtype=torch_dtype, trust_remote_code=trust_remote_code, **kwargs
        )
    except Exception as exc:
        raise CheckpointError(f"cannot load {source.label}: {first_line(exc)}") from None
    # A GGUF-loaded model keeps its quantizer, which makes save_pretrained and training refuse; the
    # weights are already dequantized, so dropping it leaves a plain model with identical outputs.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    return model.eval(), tokenizer


def _probe_ids(tokenizer: object) -> torch.Tensor:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(PROBE_MESSAGES, tokenize=False, add_generation_prompt=True) + PROBE_TEXT
    else:
        text = PROBE_TEXT
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


def prepare_model(
    name_or_path: str,
    dest: str | Path | None = None,
    dtype: PrepareDType = "fp32",
    *,
    force: bool = False,
    trust_remote_code: bool = False,
) -> PreparedModel:
    if dtype not in DTYPES:
        raise EvalsuiteError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    source = resolve_source(name_or_path)
    explicit_dest = dest is not None
    dest = Path(dest).expanduser() if dest else default_dest(source, dtype)

    # One preparer per destination: `accelerate launch` starts N processes that all resolve the model.
    with dir_lock(dest):
        existing = _reusable(dest, source, dtype)
        if existing is not None and not force:
            return PreparedModel(dest, existing, cached=True)
        # The cache may be refreshed freely; a directory the user named is only replaced when asked.
        if explicit_dest and dest.exists() and any(dest.iterdir()) and not force:
            raise EvalsuiteError(f"{dest} already holds something else; choose another --dest or pass --force")
        return _convert(source, dest, dtype, trust_remote_code)


def _convert(source: Source, dest: Path, dtype: PrepareDType, trust_remote_code: bool) -> PreparedModel:
    torch_dtype = TORCH_DTYPES[DTYPES[dtype]]
    model, tokenizer = _load_source(source, torch_dtype, trust_remote_code)
    _set_context_length(tokenizer, model)
    probe = _probe_ids(tokenizer)
    expected = _logits(model, probe)

    with staged_dir(dest) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        _verify(staging, probe, expected, torch_dtype)
        manifest = CheckpointManifest(
            stage="base",
            base_model=source.label,
            prompt_format="chat_template" if getattr(tokenizer, "chat_template", None) else "plain",
            dtype=DTYPES[dtype],
            source={"kind": source.kind, "path": str(source.path), "sha256": source.sha256},
            metrics={"probe_tokens": int(probe.shape[1]), "probe_max_abs_logit_diff": 0.0},
        )
        write_manifest(staging, manifest)
    return PreparedModel(dest, manifest, cached=False)


def _reusable(dest: Path, source: Source, dtype: PrepareDType) -> CheckpointManifest | None:
    if not dest.is_dir():
        return None
    try:
        manifest = read_manifest(dest)
    except CheckpointError:
        return None
    if manifest and manifest.source.get("sha256") == source.sha256 and manifest.dtype == DTYPES[dtype]:
        return manifest
    return None


def _set_context_length(tokenizer: object, model: torch.nn.Module) -> None:
    # GGUF tokenizers come back with an "infinite" model_max_length; the config knows the real window.
    window = getattr(model.config, "max_position_embeddings", None)
    if isinstance(window, int) and getattr(tokenizer, "model_max_length", 0) > window:
        tokenizer.model_max_length = window


def _verify(directory: Path, probe: torch.Tensor, expected: torch.Tensor, torch_dtype: torch.dtype) -> None:
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch_dtype, use_safetensors=True)
    got = _logits(reloaded.eval(), probe)
    if not torch.equal(got, expected):
        diff = (got.float() - expected.float()).abs().max().item()
        raise CheckpointError(f"conversion check failed: saved checkpoint's logits differ from the source (max |diff| {diff:.3g})")


def resolve_model(name_or_path: str) -> Path:
    """A checkpoint dir for a model argument: embedded names are prepared (cached) on first use."""
    if name_or_path in EMBEDDED_MODELS:
        return prepare_model(name_or_path).path
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return prepare_model(str(path)).path
    return path
