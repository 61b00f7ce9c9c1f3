"""Records in lm-eval's shapes: per-item sample-log rows and results with `"metric,filter"` keys.

Sample rows carry lm-eval's fields (`doc_id, doc, target, arguments, resps, filtered_resps, filter,
metrics, doc_hash, prompt_hash, target_hash`, then each metric's value) plus ours (`item_id`, `subset`,
`prompt_format`), so tools that read lm-eval's `samples_*.jsonl` read ours. Hashes are lm-eval's: sha256
of the doc's JSON (indent 2), of the first request's context, and of the target's string.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from typing import Any, Sequence

from evalsuite.benchmarks.types import Sample


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def doc_json(doc: dict[str, Any]) -> str:
    """The doc as lm-eval hashes it (its own serialiser for numpy values and sets)."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False)


def sample_record(sample: Sample) -> dict[str, Any]:
    first_context = sample.arguments[0][0] if sample.arguments else ""
    record = {
        "doc_id": sample.doc_id,
        "doc": sample.doc,
        "target": sample.target,
        "arguments": sample.arguments,
        "resps": sample.resps,
        "filtered_resps": sample.filtered_resps,
        "filter": sample.filter,
        "metrics": list(sample.metrics),
        "doc_hash": sha256(doc_json(sample.doc)),
        "prompt_hash": sha256(first_context),
        "target_hash": sha256(str(sample.target)),
        **sample.metrics,
        "item_id": sample.item_id,
        "subset": sample.subset,
        "prompt_format": sample.prompt_format,
    }
    if sample.perturbed is not None:
        p = sample.perturbed
        record["perturbation"] = {"kind": p.kind, "variant": p.variant, "severity": p.severity}
    if sample.truncated_requests:
        record["truncated_requests"] = sample.truncated_requests
    if sample.extra:
        record["extra"] = sample.extra
    return record


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    """lm-eval's `mean` and `mean_stderr` (sample standard deviation / sqrt(n)); no stderr (null) for n < 2."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var) / math.sqrt(n)


def aggregate_samples(samples: Sequence[Sample]) -> dict[str, dict[str, Any]]:
    """`{"all": {"acc,none": .., "acc_stderr,none": .., "n": .., "truncated_requests": ..}, "<subset>": {...}}`:
    micro-averages over every item, then per subset. `n` counts prompts asked (items × variants);
    `truncated_requests` the requests whose prompt was cut to fit the model's context."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, set[tuple[str, int | None]]] = defaultdict(set)
    truncated: dict[str, dict[tuple[str, int | None], int]] = defaultdict(dict)
    for s in samples:
        for scope in ("all", s.subset):
            counts[scope].add((s.item_id, s.variant))
            truncated[scope][(s.item_id, s.variant)] = s.truncated_requests  # once per prompt, not per filter
            for metric, value in s.metrics.items():
                if isinstance(value, list):  # one value per instruction (IFEval) or turn (MT-Bench): pooled
                    if value:
                        groups[scope][f"{metric},{s.filter}"].extend(float(v) for v in value)
                elif value is not None:
                    groups[scope][f"{metric},{s.filter}"].append(float(value))
    out: dict[str, dict[str, Any]] = {}
    for scope in sorted(counts, key=lambda k: (k != "all", k)):  # every scope, even one with no value
        row: dict[str, Any] = {}
        for key, values in sorted(groups[scope].items()):
            metric, filt = key.split(",", 1)
            mean, stderr = mean_and_stderr(values)
            row[key] = mean
            row[f"{metric}_stderr,{filt}"] = stderr
        row["n"] = len(counts[scope])
        row["truncated_requests"] = sum(truncated[scope].values())
        out[scope] = row
    return out
