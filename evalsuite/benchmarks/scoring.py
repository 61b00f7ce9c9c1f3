"""`evalsuite score BENCH --responses FILE.jsonl`: score responses produced by any system with the same code
that scores ours (items rebuilt from the rows, responses wrapped as generations, the benchmark's `score`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.backends import Generation
from evalsuite.benchmarks.base import Item
from evalsuite.benchmarks.prompting import Prompter
from evalsuite.benchmarks.runner import BenchmarkResult
from evalsuite.errors import ConfigError


def read_responses(path: Path) -> list[dict[str, Any]]:
    from evalsuite.rows import read_jsonl

    rows = []
    for n, row in read_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("response"), str):
            raise ConfigError(f"{path}:{n}: each row needs a string `response`")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path} has no rows")
    return rows


def score_generated(bench: Any, items: list[Item], texts: list[str]) -> BenchmarkResult:
    prompter = Prompter("plain")
    requests = [bench.requests(it, prompter) for it in items]
    responses = [[Generation(text, None, "stop")] for text in texts]
    samples = bench.score(items, requests, responses, prompter)
    return BenchmarkResult(bench.task_name, samples, bench.aggregate(samples))


def bbh_items(rows: list[dict[str, Any]]) -> list[Item]:
    items = []
    for n, row in enumerate(rows, 1):
        if not all(isinstance(row.get(k), str) for k in ("task", "input", "target")):
            raise ConfigError(f"responses row {n}: bbh rows need string task, input, target and response")
        items.append(Item(f"{row['task']}/row{n}", row["task"], {"input": row["input"], "target": row["target"]}, row["target"]))
    return items


def mmlu_items(rows: list[dict[str, Any]]) -> list[Item]:
    from evalsuite.benchmarks.mmlu import LETTERS, item_ids, normalise_row

    try:
        docs = [normalise_row(r) for r in rows]
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"mmlu rows need question, subject, choices, answer and response ({exc})") from None
    return [Item(i, d["subject"], d, LETTERS[d["answer"]]) for i, d in zip(item_ids(docs), docs)]
