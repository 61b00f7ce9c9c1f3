"""Options shared by commands that talk to a model, and how they become a backend config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from evalsuite.backends.config import HFConfig, OpenAIConfig, VLLMConfig, load_config_file, parse_backend_config
from evalsuite.models import DEFAULT_MODEL

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


def backend_config(
    *,
    model: str = DEFAULT_MODEL,
    backend: str | None = None,
    dtype: str | None = None,
    config: Path | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    tokenizer: str | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
) -> HFConfig | VLLMConfig | OpenAIConfig:
    """Config file values, overridden by the flags that were given. Local model names are resolved to a
    checkpoint dir (embedded models and .gguf files are prepared on first use)."""
    data: dict[str, Any] = dict(load_config_file(config).get("backend") or {}) if config else {}
    flags = {
        "kind": backend,
        "dtype": dtype,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "tokenizer": tokenizer,
        "batch_size": batch_size,
        "trust_remote_code": trust_remote_code or None,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    data.setdefault("model", model)
    if data.get("kind", "hf") != "openai":
        from evalsuite.models.prepare import resolve_model

        data["model"] = str(resolve_model(str(data["model"])))
    return parse_backend_config(data)


def load_paraphraser(model: str, base_url: str | None, api_key_env: str | None) -> tuple[Any, Any]:
    """An LLM paraphraser and the backend it holds (close it after): a served model through our OpenAI-compatible
    backend (the same key policy, retries and reply checks as judges and evaluated models), else a local
    checkpoint."""
    from evalsuite.backends import load_backend
    from evalsuite.perturbing import make_paraphraser

    backend = load_backend(backend_config(model=model, backend="openai" if base_url else None, base_url=base_url,
                                          api_key_env=api_key_env))
    return make_paraphraser(f"{model}@{base_url}" if base_url else model, backend), backend


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Untrusted text (model output, names from disk) made safe for the terminal: control characters, escape
    sequences included, are shown as `\\x1b`-style escapes instead of being obeyed; rich markup is escaped."""
    from rich.markup import escape

    return escape(_CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text))
