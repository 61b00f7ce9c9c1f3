"""The benchmark registry: a module registers its `Benchmark` class with `@register`; everything else looks
benchmarks up by name. Adding a benchmark is one module plus its line in `evalsuite/benchmarks/__init__.py`."""

from __future__ import annotations

from typing import Any

from evalsuite.errors import ConfigError

BENCHMARKS: dict[str, type] = {}


def register(cls: type) -> type:
    if cls.name in BENCHMARKS:
        raise ValueError(f"benchmark {cls.name} registered twice")
    BENCHMARKS[cls.name] = cls
    return cls


def get_benchmark(spec: str, **options: Any):
    """`mmlu`, `mmlu:generative`, `bbh:cot`, ... → an instance (name, optional variant, options)."""
    name, _, variant = spec.partition(":")
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name](variant or None, **options)
