"""Options shared by commands that talk to a model, and how they become a backend config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer


ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Embedded model name, checkpoint dir, .gguf file, or (openai) served model name."),
]
BackendOpt = Annotated[Optional[str], typer.Option("--backend", "-b", help="hf | vllm | openai (default: hf).")]
DTypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="auto | float32 | bfloat16 | float16 (fp32/bf16 accepted).")]
ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML/JSON file; its `backend:` mapping sets any backend option.")
]
BaseUrlOpt = Annotated[Optional[str], typer.Option("--base-url", help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1")]
ApiKeyEnvOpt = Annotated[
    Optional[str], typer.Option("--api-key-env", help="openai backend: the env var holding the API key; without it no key is sent (except OPENAI_API_KEY to api.openai.com).")
]
TokenizerOpt = Annotated[Optional[str], typer.Option("--tokenizer", help="Tokenizer dir (openai backend: needed for scoring).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Requests per forward batch (hf, vllm scoring).")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Allow model repos to run their own Python code.")]


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Untrusted text (model output, names from disk) made safe for the terminal: control characters, escape
    sequences included, are shown as `\\x1b`-style escapes instead of being obeyed; rich markup is escaped."""
    from rich.markup import escape

    return escape(_CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text))
