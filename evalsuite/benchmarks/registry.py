"""The benchmark registry: a module registers its `Benchmark` class with `@register`; everything else looks
benchmarks up by name. Adding a benchmark is one module plus its line in `evalsuite/benchmarks/__init__.py`."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from evalsuite.errors import ConfigError

BENCHMARKS: dict[str, type] = {}


def register(cls: type) -> type:
    if cls.name in BENCHMARKS:
        raise ValueError(f"benchmark {cls.name} registered twice")
    BENCHMARKS[cls.name] = cls
    return cls


def did_you_mean(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def benchmark_class(name: str) -> type:
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}{did_you_mean(name, sorted(BENCHMARKS))}; "
                          f"known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


def option_names(cls: type) -> list[str]:
    """The options a benchmark takes: the keyword parameters of its `__init__` besides `variant`."""
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", "variant")]


def check_options(name: str, options: dict[str, Any]) -> None:
    """Unknown option names are an error (a misspelt `max_new_token` must not be ignored), all of them at once."""
    known = option_names(benchmark_class(name))
    unknown = [k for k in options if k not in known]
    if unknown:
        problems = "; ".join(f"{k}{did_you_mean(k, known)}" for k in unknown)
        raise ConfigError(f"{name}: unknown option(s) {problems}; {name} takes {', '.join(known) or 'no options'}")


def get_benchmark(spec: str, **options: Any):
    """`mmlu`, `mmlu:generative`, `bbh:cot`, ... → an instance (name, optional variant, options)."""
    name, _, variant = spec.partition(":")
    check_options(name, options)
    return benchmark_class(name)(variant or None, **options)
