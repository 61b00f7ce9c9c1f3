"""Model checkpoints: embedded models, GGUF/HF conversion, checkpoint validation.

`prepare_model`/`resolve_model` are imported lazily: they pull in torch and transformers, which the
CLI should not pay for just to print its help.
"""

from typing import Any

from evalsuite.models.embedded import DEFAULT_MODEL, EMBEDDED_MODELS

_LAZY = {"PreparedModel", "prepare_model", "resolve_model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from evalsuite.models import prepare

        return getattr(prepare, name)
    raise AttributeError(f"module 'evalsuite.models' has no attribute {name!r}")


__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "PreparedModel", "prepare_model", "resolve_model"]
