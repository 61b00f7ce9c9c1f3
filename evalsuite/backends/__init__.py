"""Generation backends behind one interface (`Backend`), chosen by the config's `kind`.

The registry maps a kind to the module and class that implement it; modules are imported lazily so that
`hf` users never import vLLM and vice versa.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evalsuite.backends.config import HFConfig, OpenAIConfig, VLLMConfig, parse_backend_config
from evalsuite.backends.types import (
    Generation,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ScoreRequest,
    TokenScores,
)

if TYPE_CHECKING:
    from evalsuite.backends.base import Backend

BACKENDS: dict[str, str] = {
    "hf": "evalsuite.backends.hf_backend:HFBackend",
    "vllm": "evalsuite.backends.vllm_backend:VLLMBackend",
    "openai": "evalsuite.backends.openai_backend:OpenAIBackend",
}


def __getattr__(name: str) -> Any:
    # `Backend` pulls in torch/transformers; importing it lazily keeps `evalsuite --help` fast.
    if name == "Backend":
        from evalsuite.backends.base import Backend

        return Backend
    raise AttributeError(f"module 'evalsuite.backends' has no attribute {name!r}")


def load_backend(config: HFConfig | VLLMConfig | OpenAIConfig | dict[str, Any]) -> "Backend":
    """Build the backend a config names (a dict is validated first)."""
    if isinstance(config, dict):
        config = parse_backend_config(config)
    module_name, class_name = BACKENDS[config.kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(config)


__all__ = [
    "BACKENDS",
    "Backend",
    "Generation",
    "GenerationRequest",
    "HFConfig",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "OpenAIConfig",
    "ScoreRequest",
    "TokenScores",
    "VLLMConfig",
    "load_backend",
    "parse_backend_config",
]
