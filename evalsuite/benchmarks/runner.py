"""Run a benchmark through a backend: every item's requests in one batch per request kind, responses handed
back per item, scored, aggregated, and written as lm-eval-shaped files.

Outputs in `out_dir`: `samples_<task>.jsonl` (one row per item and filter) and `results_<task>.json`
(`{"results": {task: {...}, "<task>:<subset>": {...}}, "config": {...}, "versions": {...}}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from evalsuite.backends import GenerationRequest, LoglikelihoodRequest
from evalsuite.benchmarks.base import Benchmark, Request
from evalsuite.benchmarks.prompting import Prompter
from evalsuite.benchmarks.records import sample_record
from evalsuite.benchmarks.types import BenchmarkResult, Item, Sample
from evalsuite.errors import ConfigError
from evalsuite.paths import atomic_write, to_json, write_json

OTHER_FORMAT = {"plain": "chat_template", "chat_template": "plain"}


def answer_requests(backend: Any, per_item: Sequence[Sequence[Request]], progress: bool = False) -> list[list[Any]]:
    """Every request answered, one backend call per request kind, regrouped per item."""
    flat = [(i, r) for i, reqs in enumerate(per_item) for r in reqs]
    answers: list[Any] = [None] * len(flat)
    for kind, method in ((LoglikelihoodRequest, "loglikelihood"), (GenerationRequest, "generate")):
        positions = [k for k, (_, r) in enumerate(flat) if isinstance(r, kind)]
        if positions:
            call = getattr(backend, method)
            for k, answer in zip(positions, call([flat[k][1] for k in positions], progress=progress)):
                answers[k] = answer
    grouped: list[list[Any]] = [[] for _ in per_item]
    for (i, _), answer in zip(flat, answers):
        grouped[i].append(answer)
    return grouped


def run_benchmark(benchmark: Benchmark, items: Sequence[Item], backend: Any, prompter: Prompter,
                  progress: bool = False) -> BenchmarkResult:
    """Every item asked and scored; a variant that names its own prompt format (a `template` perturbation) is
    asked in that format, the rest in `prompter`'s. Aggregates come from all groups' samples together."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(prompter_for(item, prompter).format, []).append(item)
    samples: list[Sample] = []
    for group in groups.values():
        samples += _ask_and_score(benchmark, group, backend, prompter_for(group[0], prompter), progress)
    return BenchmarkResult(benchmark.task_name, samples, benchmark.aggregate(samples))


def prefetch(benchmark: Benchmark, item_sets: Sequence[Sequence[Item]], backend: Any, prompter: Prompter) -> None:
    """The first-round requests of several item sets (a task clean and under each perturbation kind) asked together,
    one call per request kind, so the engine batches across conditions instead of draining a small batch per
    condition. Only useful in front of a store (`StoredBackend`): the answers land there, and each condition's
    `run_benchmark` then reads them instead of asking again."""
    answer_requests(backend, [benchmark.requests(item, prompter_for(item, prompter)) for items in item_sets
                              for item in items])


def variant_format(item: Item, run_format: str) -> str:
    """The prompt format an item is asked in: its variant's (`other`: the one that is not the run's), else the run's."""
    fmt = item.perturbed.prompt_format if item.perturbed is not None and item.perturbed.prompt_format else run_format
    return OTHER_FORMAT[run_format] if fmt == "other" else fmt


def prompter_for(item: Item, prompter: Prompter) -> Prompter:
    """The run's prompter, or one in the prompt format the item's variant names."""
    fmt = variant_format(item, prompter.format)
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
    samples = benchmark.score(items, requests, responses, prompter)
    cut = {(item.id, item.variant): sum(getattr(r, "truncated_tokens", 0) > 0 for r in resps)
           for item, resps in zip(items, responses)}
    for sample in samples:
        sample.truncated_requests = cut.get((sample.item_id, sample.variant), 0)
    return samples


def write_result(result: BenchmarkResult, out_dir: Path, config: dict[str, Any]) -> tuple[Path, Path]:
    """`samples_<task>.jsonl` and `results_<task>.json`, each written atomically."""
    from evalsuite.manifest import library_versions

    samples_path = out_dir / f"samples_{result.task}.jsonl"
    results_path = out_dir / f"results_{result.task}.json"
    atomic_write(samples_path, "".join(to_json(sample_record(s)) + "\n" for s in result.samples))
    results = {f"{result.task}:{k}" if k != "all" else result.task: v for k, v in result.results.items()}
    payload = {"results": results, "config": config, "versions": library_versions()}
    write_json(results_path, payload)
    return samples_path, results_path


@dataclass(frozen=True)
class Prompting:
    """How a checkpoint is prompted: the prompt format and whether raw prompts start with the BOS token."""

    prompt_format: str
    add_bos_token: bool


def checkpoint_prompting(model_dir: Path | None, requested: str, add_bos_token: bool | None = None,
                         log: Any = print) -> Prompting:
    """Evaluate a checkpoint the way it was trained. Format `auto`: the one in its manifest, else `plain`
    (lm-eval's default); a named format wins, with a warning when it contradicts the manifest. BOS: the user's
    `add_bos_token` if given; else, in the plain format, what training did (the manifest's `add_bos_token`; for
    older plain-format cells, whether their tokenizer adds one, since plain training sequences were encoded with
    the tokenizer's special tokens); else none (lm-eval's default; chat templates write their own)."""
    from evalsuite.backends.loading import load_tokenizer
    from evalsuite.backends.tokenization import tokenizer_adds_bos
    from evalsuite.manifest import read_manifest

    manifest = read_manifest(model_dir) if model_dir is not None and model_dir.is_dir() else None
    if requested == "auto":
        if manifest is None:
            log("prompt format: plain (lm-eval's default; no evalsuite.json names one, use --prompt-format to choose)")
        fmt = manifest.prompt_format if manifest is not None else "plain"
    else:
        if manifest is not None and manifest.prompt_format != requested:
            log(f"warning: {model_dir} was trained with prompt format {manifest.prompt_format}, evaluating with {requested}")
        fmt = requested
    trained_plain = manifest is not None and manifest.stage in ("sft", "dpo") and manifest.prompt_format == "plain"
    trained_bos = None
    if trained_plain and fmt == "plain":
        trained_bos = manifest.add_bos_token
        if trained_bos is None:  # a manifest from before the field
            trained_bos = tokenizer_adds_bos(load_tokenizer(model_dir))
    if add_bos_token is None:
        return Prompting(fmt, bool(trained_bos))
    if trained_bos is not None and trained_bos != add_bos_token:
        log(f"warning: {model_dir} was trained {'with' if trained_bos else 'without'} a BOS token before each prompt; "
            f"evaluating {'with' if add_bos_token else 'without'} one (add_bos_token: {str(add_bos_token).lower()})")
    return Prompting(fmt, add_bos_token)


def build_benchmarks(specs: Sequence[str], options: dict[str, dict[str, Any]]) -> list[Benchmark]:
    """Every benchmark of `specs` with its options (`{name: {...}}`) checked, and each judge it needs present and
    usable (its key's variable set, its checkpoint there): cheap, nothing is loaded, so a run can refuse before
    any model does."""
    from evalsuite.benchmarks.registry import get_benchmark

    benches = [get_benchmark(spec, **options.get(spec.partition(":")[0], {})) for spec in specs]
    missing = sorted({b.name for b in benches if b.needs_judge and getattr(b, "judge", None) is None})
    if missing:
        raise ConfigError(f"{', '.join(missing)} need(s) a judge: --judge-model (and --judge-base-url for a served "
                          "one), or a judge: section in the run file")
    for judge in {id(b.judge): b.judge for b in benches if getattr(b, "judge", None) is not None}.values():
        judge.check()
    return benches


def load_items(bench: Benchmark, data: str | None, limit: int | None = None,
               seed: int | None = None) -> tuple[list[Item], dict[str, Any]]:
    """A benchmark's items from `data` (None: its default source) and its provenance, recorded with its results."""
    if data:
        return bench.load(data, limit=limit, seed=seed), bench.provenance(data)
    return bench.load(limit=limit, seed=seed), bench.provenance()


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
    Benchmarks, data and judges are checked (and the items loaded) before the model is. With a `store`, every
    answer is kept there and a re-run asks the model only for what is missing. With `perturbed` (rows of
    `evalsuite perturb`), the items are asked in their variants instead, one result per perturbation kind
    (`<task>@<kind>`)."""
    from evalsuite.backends import load_backend
    from evalsuite.perturb import perturbed_items, read_variant_rows

    variant_rows = read_variant_rows(perturbed) if perturbed is not None else None
    loaded = [(bench, *load_items(bench, data, limit, seed)) for bench in build_benchmarks(specs, options or {})]
    stored = None
    if store is not None:  # opened, and its write access checked, before the model loads
        from evalsuite.store import RequestStore

        stored = RequestStore(store)
    model_path = Path(str(backend_config.model))
    explicit_bos = backend_config.add_bos_token if "add_bos_token" in backend_config.model_fields_set else None
    how = checkpoint_prompting(model_path if model_path.is_dir() else None, prompt_format, explicit_bos, log)
    backend_config = backend_config.model_copy(update={"add_bos_token": how.add_bos_token})
    results: dict[str, BenchmarkResult] = {}
    with load_backend(backend_config) as engine:
        backend: Any = engine
        if stored is not None:
            from evalsuite.store.backend import StoredBackend

            backend = StoredBackend(engine, stored)
        prompter = Prompter(how.prompt_format, backend.tokenizer)  # type: ignore[arg-type]
        for bench, items, provenance in loaded:
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
                log(f"{task}: {len(asked_items)} items, prompt format {how.prompt_format}")
                result = run_benchmark(bench, asked_items, backend, prompter, progress=True)
                result.task = task
                truncated = result.results["all"].get("truncated_requests", 0)
                if truncated:
                    log(f"warning: {task}: {truncated} request(s) had their prompt cut to fit the context window")
                config = {"model": str(backend_config.model), "backend": backend_config.model_dump(mode="json"),
                          "prompt_format": how.prompt_format, "data": data, "limit": limit, "seed": seed,
                          "benchmark": {**bench.settings(), **provenance}, "perturbed": pinfo}
                write_result(result, out_dir, config)
                results[task] = result
        if store is not None:
            log(f"request store {store}: {backend.answered} requests answered by the model, the rest from the store")
    return results
