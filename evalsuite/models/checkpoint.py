"""Checks that a directory is a loadable Hugging Face checkpoint, before any expensive load starts."""

from __future__ import annotations

import json
from pathlib import Path

from evalsuite.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# The files that define a checkpoint or adapter: what a fingerprint of one covers.
CHECKPOINT_FILE_SUFFIXES = (".json", ".safetensors", ".bin")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_model_config(path: Path) -> dict:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path} is not a Hugging Face checkpoint: no config.json")
    try:
        return json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"corrupt {config_path}: {first_line(exc)}") from None


def check_checkpoint_dir(path: str | Path, *, allow_pickle: bool = False) -> Path:
    """Return the checkpoint dir, or raise a one-line CheckpointError saying what is wrong with it."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_file():
        hint = f"; convert it first: evalsuite models prepare {path}" if path.suffix == ".gguf" else ""
        raise CheckpointError(f"{path} is a file, expected a checkpoint directory{hint}")
    try:
        names = [p.name for p in path.iterdir()]
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint dir {path}: {exc.strerror}") from None
    read_model_config(path)
    safetensors = [n for n in names if n.endswith(".safetensors")]
    if safetensors:
        _check_safetensors_headers(path, safetensors)
        return path
    if any(n.endswith(PICKLE_SUFFIXES) for n in names):
        if allow_pickle:
            return path
        raise CheckpointError(
            f"{path} has only pickle weights (.bin/.pt), which can run code when loaded; "
            "convert them to safetensors or pass --allow-pickle if you trust the source"
        )
    raise CheckpointError(f"{path} has a config.json but no weights files")


def _check_safetensors_headers(path: Path, files: list[str]) -> None:
    # Reading the header is cheap and catches truncated or garbage files before a minutes-long load.
    from safetensors import safe_open

    for name in files:
        try:
            with safe_open(str(path / name), framework="pt") as fh:
                fh.keys()
        except Exception as exc:  # safetensors raises its own error types for every corruption
            raise CheckpointError(f"corrupt weights file {path / name}: {first_line(exc)}") from None


def is_adapter_only(path: Path) -> bool:
    """A LoRA cell kept as its adapter: peft's adapter files and no weights of its own."""
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def adapter_base(path: str | Path) -> Path:
    """The base checkpoint an adapter-only checkpoint applies to (peft's `base_model_name_or_path`, relative to the
    adapter when relative), both checked; a one-line CheckpointError says what is wrong."""
    path = Path(path).expanduser()
    config = path / "adapter_config.json"
    try:
        base = json.loads(config.read_text()).get("base_model_name_or_path")
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"corrupt {config}: {first_line(exc)}") from None
    if not base:
        raise CheckpointError(f"{config} names no base model (base_model_name_or_path)")
    found = (path / base).resolve() if not Path(base).expanduser().is_absolute() else Path(base).expanduser()
    if not found.is_dir():
        raise CheckpointError(f"the base model of adapter {path} is not here: {found} (the adapter was trained on it; "
                              "keep the base where it was or edit base_model_name_or_path)")
    weights = [n.name for n in path.iterdir() if n.name.startswith("adapter_model")]
    if not weights:
        raise CheckpointError(f"{path} has an adapter_config.json but no adapter weights")
    safetensors = [n for n in weights if n.endswith(".safetensors")]
    if not safetensors:
        raise CheckpointError(f"{path} has only pickle adapter weights (.bin), which can run code when loaded; "
                              "convert them to safetensors")
    _check_safetensors_headers(path, safetensors)
    return check_checkpoint_dir(found)
