"""Perturbation kinds by name. Adding a kind is one module in `perturbations/kinds/` with `@register`."""

from __future__ import annotations

from typing import Any

from perturbations.base import Kind

_KINDS: dict[str, type[Kind]] = {}


def register(cls: type[Kind]) -> type[Kind]:
    _KINDS[cls.name] = cls
    return cls


def kind_names() -> list[str]:
    _load_builtin()
    return sorted(_KINDS)


def get_kind(name: str, **options: Any) -> Kind:
    _load_builtin()
    if name not in _KINDS:
        raise ValueError(f"unknown perturbation kind {name!r} (known: {', '.join(sorted(_KINDS))})")
    return _KINDS[name](**options)


def _load_builtin() -> None:
    import perturbations.kinds  # noqa: F401  (registers the built-in kinds)
