"""What identifies a model for the request store: the content of every file that can change an answer.

For a local checkpoint: each weights file, `config.json`, `generation_config.json` and the tokenizer files
(vocabulary, merges, special tokens, `tokenizer_config.json`, which holds the chat template, or a separate
`chat_template.jinja`), plus the adapter's files and a `tokenizer` override's. For a served model: its name
and URL, plus the local tokenizer's files when one is given (scoring tokenises locally). Names of folders are
not part of it, so a moved or renamed checkpoint keeps its answers; a checkpoint re-trained into the same
folder, or copied over, does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from evalsuite.store.requests import canonical
from evalsuite.store.sqlite import Database

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model", "chat_template.jinja",
                   "chat_template.json")
MODEL_FILES = ("config.json", "generation_config.json", "adapter_config.json", *TOKENIZER_FILES)


def folder_hashes(folder: Path, store: Database, names: tuple[str, ...], suffixes: tuple[str, ...] = ()) -> dict[str, str]:
    """{file name: sha256} of the files in `folder` with one of `names` or `suffixes`."""
    return {f.name: store.file_sha256(f) for f in sorted(folder.iterdir())
            if f.is_file() and (f.name in names or f.suffix in suffixes)}


def model_identity(config: Any, store: Database) -> str:
    """sha256 over the content of the model's files (see the module doc); `store` remembers file hashes."""
    parts: dict[str, Any] = {}
    model = Path(str(config.model)).expanduser()
    if getattr(config, "kind", None) == "openai" or not model.is_dir():
        parts["served"] = f"{config.model}@{getattr(config, 'base_url', '')}"
    else:
        parts["model"] = folder_hashes(model, store, MODEL_FILES, WEIGHT_SUFFIXES)
    adapter = getattr(config, "adapter", None)
    if adapter:
        parts["adapter"] = folder_hashes(Path(adapter).expanduser(), store, MODEL_FILES, WEIGHT_SUFFIXES)
    if getattr(config, "tokenizer", None):
        parts["tokenizer"] = folder_hashes(Path(str(config.tokenizer)).expanduser(), store, TOKENIZER_FILES)
    return hashlib.sha256(canonical(parts).encode()).hexdigest()
