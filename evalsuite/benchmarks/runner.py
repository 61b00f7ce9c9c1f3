"""Run a benchmark through a backend: every item's requests in one batch per request kind, responses handed
back per item, scored, aggregated, and written as lm-eval-shaped files.

Outputs in `out_dir`: `samples_<task>.jsonl` (one row per item and filter) and `results_<task>.json`
(`{"results": {task: {...}, "<task>:<subset>": {...}}, "config": {...}, "versions": {...}}`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from evalsuite.backends import GenerationRequest, LoglikelihoodRequest
from evalsuite.benchmarks.base import Benchmark, Item, Request, Sample
from evalsuite.benchmarks.prompting import Prompter


@dataclass
class BenchmarkResult:
    task: str
    samples: list[Sample]
    results: dict[str, dict[str, Any]]


def answer_requests(backend: Any, per_item: Sequence[Sequence[Request]], progress: bool = False) -> list[list[Any]]:
    """Every request answered, one backend call per request kind, regrouped per item."""
    flat = [(i, r) for i, reqs in enumerate(per_item) for r in reqs]
    answers: list[Any] = [None] * len(flat)
    for kind, call in ((LoglikelihoodRequest, backend.loglikelihood), (GenerationRequest, backend.generate)):
        positions = [k for k, (_, r) in enumerate(flat) if isinstance(r, kind)]
        if positions:
            for k, answer in zip(positions, call([flat[k][1] for k in positions], progress=progress)):
                answers[k] = answer
    grouped: list[list[Any]] = [[] for _ in per_item]
    for (i, _), answer in zip(flat, answers):
        grouped[i].append(answer)
    return grouped


def run_benchmark(benchmark: Benchmark, items: Sequence[Item], backend: Any, prompter: Prompter,
                  progress: bool = False) -> BenchmarkResult:
    """Every item asked and scored; a variant that names its own prompt format (a `format` perturbation) is
    asked in that format, the rest in `prompter`'s."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(prompter_for(item, prompter).format, []).append(item)
    samples: list[Sample] = []
    for group in groups.values():
        samples += _ask_and_score(benchmark, group, backend, prompter_for(group[0], prompter), progress)
    return BenchmarkResult(benchmark.task_name, samples, benchmark.aggregate(samples))


def prompter_for(item: Item, prompter: Prompter) -> Prompter:
    """The run's prompter, or one in the prompt format the item's variant names."""
    fmt = item.perturbed.prompt_format if item.perturbed is not None and item.perturbed.prompt_format else prompter.format
    return prompter if fmt == prompter.format else Prompter(fmt, prompter.tokenizer, prompter.fewshot_as_multiturn)  # type: ignore[arg-type]


def _ask_and_score(benchmark: Benchmark, items: Sequence[Item], backend: Any, prompter: Prompter,
                   progress: bool) -> list[Sample]:
    requests = [benchmark.requests(item, prompter) for item in items]
    responses = answer_requests(backend, requests, progress=progress)
    while True:  # later rounds see earlier answers (multi-turn benchmarks)
        more = [benchmark.followup(item, prompter, resps) for item, resps in zip(items, responses)]
        if not any(more):
            break
        answers = answer_requests(backend, more, progress=progress)
        for reqs, resps, new_reqs, new_resps in zip(requests, responses, more, answers):
            reqs.extend(new_reqs)
            resps.extend(new_resps)
    return benchmark.score(items, requests, responses, prompter)


def write_result(result: BenchmarkResult, out_dir: Path, config: dict[str, Any]) -> tuple[Path, Path]:
    """`samples_<task>.jsonl` and `results_<task>.json`, each written to a temp file and renamed."""
    from evalsuite.manifest import library_versions

    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / f"samples_{result.task}.jsonl"
    results_path = out_dir / f"results_{result.task}.json"
    _atomic_write(samples_path, "".join(json.dumps(s.to_record(), ensure_ascii=False) + "\n" for s in result.samples))
    results = {f"{result.task}:{k}" if k != "all" else result.task: v for k, v in result.results.items()}
    payload = {"results": results, "config": config, "versions": library_versions()}
    _atomic_write(results_path, json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return samples_path, results_path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def resolve_prompt_format(model_dir: Path | None, requested: str, log: Any = print) -> str:
    """`auto`: the format recorded in the checkpoint's manifest (what it was trained with), else `plain`
    (lm-eval's default). A named format wins, with a warning when it contradicts the manifest."""
    from evalsuite.manifest import read_manifest

    manifest = read_manifest(model_dir) if model_dir is not None and model_dir.is_dir() else None
    if requested == "auto":
        if manifest is not None:
            return manifest.prompt_format
        log("prompt format: plain (lm-eval's default; no evalsuite.json names one, use --prompt-format to choose)")
        return "plain"
    if manifest is not None and manifest.prompt_format != requested:
        log(f"warning: {model_dir} was trained with prompt format {manifest.prompt_format}, evaluating with {requested}")
    return requested


def evaluate_model(
    backend_config: Any,
    specs: Sequence[str],
    *,
    data: str | None,
    out_dir: Path,
    limit: int | None = None,
    seed: int | None = None,
    prompt_format: str = "auto",
    options: dict[str, Any] | None = None,
    store: Path | None = None,
    perturbed: Path | None = None,
    log: Any = print,
) -> dict[str, BenchmarkResult]:
    """Every benchmark in `specs` (`mmlu`, `bbh:cot`, ...) on one model; records and results in `out_dir`.
    With a `store`, every answer is kept there and a re-run asks the model only for what is missing. With
    `perturbed` (rows of `evalsuite perturb`), the items are asked in their variants instead, one result per
    perturbation kind (`<task>@<kind>`)."""
    from evalsuite.perturbing import perturbed_items, read_variant_rows

    from evalsuite.backends import load_backend
    from evalsuite.benchmarks.registry import get_benchmark

    variant_rows = read_variant_rows(perturbed) if perturbed is not None else None
    model_path = Path(str(backend_config.model))
    benchmarks = [get_benchmark(spec, **(options or {}).get(spec.partition(":")[0], {})) for spec in specs]
    fmt = resolve_prompt_format(model_path if model_path.is_dir() else None, prompt_format, log)
    results: dict[str, BenchmarkResult] = {}
    with load_backend(backend_config) as engine:
        backend: Any = engine
        if store is not None:
            from evalsuite.backends.stored import StoredBackend
            from evalsuite.store import RequestStore

            backend = StoredBackend(engine, RequestStore(store))
        prompter = Prompter(fmt, backend.tokenizer)
        for bench in benchmarks:
            items = bench.load(data, limit=limit, seed=seed) if data else bench.load(limit=limit, seed=seed)
            runs: list[tuple[str, Sequence[Item], dict[str, Any] | None]] = [(bench.task_name, items, None)]
            if variant_rows is not None:
                runs = []
                for kind in sorted({r["kind"] for r in variant_rows}):
                    asked, skipped = perturbed_items(items, [r for r in variant_rows if r["kind"] == kind])
                    if asked:
                        runs.append((f"{bench.task_name}@{kind}", asked, {"file": str(perturbed), "kind": kind,
                                                                           "variants": len(asked), "skipped": skipped}))
                if not runs:
                    log(f"{bench.task_name}: no row of {perturbed} is one of its items")
            for task, asked_items, pinfo in runs:
                log(f"{task}: {len(asked_items)} items, prompt format {fmt}")
                result = run_benchmark(bench, asked_items, backend, prompter, progress=True)
                result.task = task
                config = {"model": str(backend_config.model), "backend": backend_config.model_dump(mode="json"),
                          "prompt_format": fmt, "data": data, "limit": limit, "seed": seed,
                          "benchmark": bench.settings(), "perturbed": pinfo}
                write_result(result, out_dir, config)
                results[task] = result
        if store is not None:
            log(f"request store {store}: {backend.answered} requests answered by the model, the rest from the store")
    return results
