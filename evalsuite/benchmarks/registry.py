"""The benchmark registry: a module registers its `Benchmark` class with `@register`; everything else looks
benchmarks up by name. Adding a benchmark is one module plus its line in `evalsuite/benchmarks/__init__.py`."""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from evalsuite.errors import ConfigError, did_you_mean

BENCHMARKS: dict[str, type] = {}


def register(cls: type) -> type:
    if cls.name in BENCHMARKS:
        raise ValueError(f"benchmark {cls.name} registered twice")
    BENCHMARKS[cls.name] = cls
    return cls


def benchmark_class(name: str) -> type:
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}{did_you_mean(name, sorted(BENCHMARKS))}; "
                          f"known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


def option_names(cls: type) -> list[str]:
    """The options a benchmark takes: the keyword parameters of its `__init__` besides `variant`."""
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", "variant")]


def checked_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` checked against the benchmark's `__init__`: every name known (a misspelt `max_new_token` must
    not be ignored) and every value of its declared type (`num_fewshot: "5"` becomes 5, `max_new_tokens: 0` or
    `tasks: navigate` are errors), all problems reported at once."""
    cls = benchmark_class(name)
    known = option_names(cls)
    hints = typing.get_type_hints(cls.__init__, include_extras=True)  # keep the bounds of PositiveInt & co.
    problems, values = [], {}
    for key, value in options.items():
        if key not in known:
            problems.append(f"unknown option {key}{did_you_mean(key, known)}")
            continue
        try:
            adapter = TypeAdapter(hints.get(key, Any), config=ConfigDict(arbitrary_types_allowed=True))
            values[key] = adapter.validate_python(value)
        except ValidationError as exc:
            problems.append(f"{key}: {exc.errors()[0]['msg']} (got {value!r})")
    if problems:
        raise ConfigError(f"{name}: {'; '.join(problems)}; {name} takes {', '.join(known) or 'no options'}")
    return values


def get_benchmark(spec: str, **options: Any):
    """`mmlu`, `mmlu:generative`, `bbh:cot`, ... → an instance (name, optional variant, options checked)."""
    name, _, variant = spec.partition(":")
    return benchmark_class(name)(variant or None, **checked_options(name, options))
