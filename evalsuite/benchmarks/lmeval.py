"""lm-eval-harness as a library: its task configs, answer filters and exact-match metric.

Where lm-eval defines a benchmark (prompt templates, per-task extraction regexes, metric options), we read
its installed YAML and run its filter and metric code instead of copying them, so an lm-eval upgrade that
changes a regex changes ours too, and per-item parity is by construction for everything after generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence


def tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


@lru_cache(maxsize=None)
def task_config(relative: str) -> dict[str, Any]:
    """A task YAML under `lm_eval/tasks/` with its `include`s merged and `!function` references resolved
    (lm-eval's own loader)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(tasks_dir() / relative, resolve_func=True)


def render(template: str, doc: dict[str, Any]) -> str:
    """lm-eval's Jinja rendering of `doc_to_text` / `doc_to_target` templates (`lm_eval.utils.apply_template`:
    its environment, its template), each template compiled once: compiling is what costs (~4 ms, against
    ~20 µs to render), and a run renders every item's prompt for every checkpoint."""
    return _compiled(template).render(**doc)


@lru_cache(maxsize=256)
def _compiled(template: str) -> Any:
    from lm_eval.utils import env

    return env.from_string(template)


@dataclass
class FilterPipeline:
    """One entry of a task's `filter_list`: a name (`strict-match`, `flexible-extract`, ...) and its steps."""

    name: str
    steps: list[tuple[str, dict[str, Any]]]

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> "FilterPipeline":
        return cls(entry["name"], [(f["function"], {k: v for k, v in f.items() if k != "function"}) for f in entry["filter"]])

    def apply(self, responses: Sequence[str], docs: Sequence[dict[str, Any]]) -> list[Any]:
        """Each response through every step, as lm-eval's `FilterEnsemble` does (one response per doc)."""
        import lm_eval.filters  # noqa: F401 - registers the built-in filters
        from lm_eval.api.registry import get_filter

        resps: Any = [[r] for r in responses]
        for function, kwargs in self.steps:
            resps = get_filter(function)(**kwargs).apply(resps, list(docs))
        return [r[0] if isinstance(r, list) else r for r in resps]


NO_FILTER = FilterPipeline("none", [("take_first", {})])


def filters_of(config: dict[str, Any]) -> list[FilterPipeline]:
    return [FilterPipeline.from_config(e) for e in config.get("filter_list", [])] or [NO_FILTER]


def exact_match(prediction: str, reference: str, options: dict[str, Any]) -> float:
    """lm-eval's `exact_match` (the HF `evaluate` port) with the task's metric options."""
    from lm_eval.api.metrics import exact_match_hf_evaluate

    kwargs = {k: options[k] for k in ("regexes_to_ignore", "ignore_case", "ignore_punctuation", "ignore_numbers")
              if k in options}
    return float(exact_match_hf_evaluate(predictions=[prediction], references=[reference], **kwargs)["exact_match"])


def metric_options(config: dict[str, Any], metric: str) -> dict[str, Any]:
    for entry in config.get("metric_list", []):
        if entry.get("metric") == metric:
            return {k: v for k, v in entry.items() if k not in ("metric", "aggregation", "higher_is_better")}
    return {}

