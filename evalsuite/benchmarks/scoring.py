"""`evalsuite score BENCH --responses FILE.jsonl`: score responses produced by any system with the same code
that scores ours (items rebuilt from the rows, responses wrapped as generations, the benchmark's `score`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalsuite.backends import Generation
from evalsuite.benchmarks.prompting import Prompter
from evalsuite.benchmarks.types import BenchmarkResult, Item
from evalsuite.errors import ConfigError


def read_rows_file(path: Path) -> list[tuple[int, Any]]:
    """(row number, row) from JSONL, or from a JSON list (alpaca-eval's `model_outputs.json`)."""
    from evalsuite.rows import read_jsonl

    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {path} as a JSON list: {exc}") from None
        if not isinstance(rows, list):
            raise ConfigError(f"{path}: expected a JSON list of rows")
        return list(enumerate(rows, 1))
    return read_jsonl(path)


def read_responses(path: Path, field: str = "response") -> list[dict[str, Any]]:
    rows = []
    for n, row in read_rows_file(path):
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise ConfigError(f"{path}:{n}: each row needs a string `{field}`")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path} has no rows")
    return rows


def score_generated(bench: Any, items: list[Item], answers: list[list[str]]) -> BenchmarkResult:
    """Score given answers (one list of turns per item) as if our backend had produced them: the requests
    are rebuilt round by round exactly as `run_benchmark` builds them, so later turns see earlier answers."""
    prompter = Prompter("plain")
    requests, responses = [], []
    for item, turns in zip(items, answers):
        reqs = list(bench.requests(item, prompter))
        while len(turns) >= len(reqs):
            resps = [Generation(text, None, "stop") for text in turns[:len(reqs)]]
            more = bench.followup(item, prompter, resps)
            if not more:
                break
            reqs.extend(more)
        if len(turns) != len(reqs):
            raise ConfigError(f"{item.id}: {len(turns)} answer(s) given, the benchmark asks {len(reqs)} turn(s)")
        requests.append(reqs)
        responses.append(resps)
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


def mtbench_items(rows: list[dict[str, Any]], bench: Any, source: Any) -> tuple[list[Item], list[list[str]]]:
    """FastChat `model_answer` rows (`question_id`, `choices[0].turns`) matched to the MT-Bench questions."""
    by_qid = {it.doc["question_id"]: it for it in bench.load(source)}
    items, answers = [], []
    for n, row in enumerate(rows, 1):
        turns = (row.get("choices") or [{}])[0].get("turns") if isinstance(row.get("choices"), list) else None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise ConfigError(f"responses row {n}: MT-Bench rows are FastChat model answers: "
                              '{"question_id": 81, "choices": [{"turns": ["answer 1", "answer 2"]}]}')
        if row.get("question_id") not in by_qid:
            raise ConfigError(f"responses row {n}: question_id {row.get('question_id')!r} is not an MT-Bench question")
        items.append(by_qid[row["question_id"]])
        answers.append(turns)
    return items, answers


def alpacaeval_items(rows: list[dict[str, Any]], bench: Any, source: Any) -> list[Item]:
    """alpaca-eval `model_outputs` rows (`instruction`, `output`) matched to the reference set by instruction."""
    by_instruction = {it.doc["instruction"]: it for it in bench.load(source)}
    items = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("instruction"), str) or row["instruction"] not in by_instruction:
            raise ConfigError(f"responses row {n}: instruction not in the AlpacaEval reference set: "
                              f"{row['instruction'][:80]!r}")
        items.append(by_instruction[row["instruction"]])
    return items
