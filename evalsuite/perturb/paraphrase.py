"""The LLM paraphraser of the `rephrase` kind on our backends: a served model through the OpenAI-compatible backend,
or a local checkpoint; completions cached in `$EVALSUITE_CACHE_DIR/paraphrase-cache.sqlite`."""

from __future__ import annotations

from typing import Any


def backend_completer(backend: Any, max_new_tokens: int = 512) -> Any:
    """A `perturbations.llm` completion function answered by one of our backends (seeded sampling)."""
    from evalsuite.backends import GenerationRequest

    def complete(messages: list[dict[str, str]], seed: int, temperature: float) -> str:
        req = GenerationRequest(messages=messages, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        return backend.generate([req])[0].text

    return complete


def make_paraphraser(name: str, backend: Any) -> Any:
    """An LLM paraphraser answered by one of our backends (a served model through the OpenAI-compatible one, or a
    local checkpoint); completions cached in `$EVALSUITE_CACHE_DIR/paraphrase-cache.sqlite`."""
    from perturbations.llm import Cache, Paraphraser

    from evalsuite.paths import cache_dir

    return Paraphraser(backend_completer(backend), name, Cache(cache_dir() / "paraphrase-cache.sqlite"))


def load_paraphraser(model: str, base_url: str | None, api_key_env: str | None) -> tuple[Any, Any]:
    """An LLM paraphraser and the backend it holds (close it after): a served model through our OpenAI-compatible
    backend (the same key policy, retries and reply checks as judges and evaluated models), else a local
    checkpoint."""
    from evalsuite.backends import load_backend
    from evalsuite.backends.config import backend_config

    backend = load_backend(backend_config(model=model, backend="openai" if base_url else None, base_url=base_url,
                                          api_key_env=api_key_env))
    return make_paraphraser(f"{model}@{base_url}" if base_url else model, backend), backend
