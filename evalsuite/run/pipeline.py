"""The run loop: for each checkpoint, load its backend once behind the request store; for each benchmark,
ask the clean items and then each perturbation kind's variants; score; turn the samples into metric rows.

Everything a model answers goes through `StoredBackend`, so an interrupted run resumes where it stopped
and a finished one re-runs from the store in seconds; the clean pass is shared by all kinds (and by
POSIX, whose generations are the clean and perturbed answers already stored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from evalsuite.run.discovery import Checkpoint

Log = Callable[[str], None]


@dataclass
class Tracker:
    """What the run loop reports as it goes (the CLI draws progress bars from it; tests ignore it)."""

    log: Log = lambda message: None
    start: Callable[[int], None] = lambda checkpoints: None  # how many checkpoints will be evaluated
    checkpoint: Callable[[str, int], None] = lambda name, steps: None  # a checkpoint starts: its step count
    step: Callable[[str], None] = lambda label: None  # a step (one benchmark under one condition) starts
    done: Callable[[], None] = lambda: None  # that step finished
    checkpoint_done: Callable[[], None] = lambda: None


@dataclass
class RunSettings:
    benchmarks: list[str]
    kinds: list[str] = field(default_factory=lambda: ["typo", "rephrase", "format"])
    variants: int = 2
    severity: float = 0.1
    seed: int = 1234
    limit: int | None = None
    data: str | None = None
    backend: dict[str, Any] = field(default_factory=dict)  # kind, dtype, batch_size, ... (model filled per checkpoint)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per benchmark name (judge, num_fewshot, ...)
    prompt_format: str = "auto"
    paraphraser: Any = None  # rephrase by an LLM (perturbations.llm.Paraphraser); None: the offline rules


@dataclass
class Condition:
    """One benchmark asked one way on one checkpoint: clean or one perturbation kind."""

    task: str
    condition: str  # "clean" or the kind
    results: dict[str, Any]
    item_results: dict[tuple[str, int | None], tuple[Any, float | None]]  # (item id, variant) -> (answer, score)
    skipped: int = 0
    posix: float | None = None
    posix_sets: int = 0


def variant_items(bench: Any, items: Sequence[Any], kind_name: str, settings: RunSettings) -> tuple[list[Any], int]:
    from evalsuite.perturbing import item_variant_rows, kind_with, perturbed_items

    rows = item_variant_rows(bench, items, kind_with(kind_name, settings.paraphraser), settings.variants, settings.seed,
                             settings.severity)
    return perturbed_items(items, rows)


def item_results(bench: Any, samples: Sequence[Any]) -> dict[tuple[str, int | None], tuple[Any, float | None]]:
    metric, filt = bench.primary_for()
    out = {}
    for s in samples:
        if s.filter == filt:
            out[(s.item_id, s.perturbed.variant if s.perturbed is not None else None)] = bench.item_result(s)
    return out


def posix_of(bench: Any, clean: Sequence[Any], variants: Sequence[Any], backend: Any, prompter: Any) -> tuple[float | None, int]:
    """POSIX over each item's set {clean prompt + its variants}: the greedy first-turn answers (from the
    store: they were just generated) scored teacher-forced after every prompt of the set."""
    from evalsuite.backends import GenerationRequest, ScoreRequest
    from evalsuite.benchmarks.runner import prompter_for
    from evalsuite.metrics import posix_psi

    by_id: dict[str, list[Any]] = {}
    for v in variants:
        by_id.setdefault(v.id, []).append(v)
    sets = []
    for item in clean:
        members = [item, *by_id.get(item.id, [])]
        if len(members) < 2:
            continue
        reqs = [bench.requests(m, prompter_for(m, prompter))[0] for m in members]
        if not all(isinstance(r, GenerationRequest) and r.greedy and r.prompt is not None for r in reqs):
            return None, 0  # POSIX is defined on greedy generations
        sets.append(reqs)
    if not sets:
        return None, 0
    gens = backend.generate([r for reqs in sets for r in reqs])
    pos, scored, work = 0, [], []
    for reqs in sets:
        ids = [g.token_ids for g in gens[pos:pos + len(reqs)]]
        pos += len(reqs)
        if any(not t for t in ids):  # no token ids (some servers) or an empty answer: no set
            continue
        n = len(reqs)
        work.append((n, [len(t) for t in ids], len(scored)))
        scored += [ScoreRequest(reqs[i].prompt, tuple(ids[j])) for i in range(n) for j in range(n)]
    if not work:
        return None, 0
    totals = [s.total for s in backend.score(scored)]
    psis = []
    for n, lengths, start in work:
        logp = [[totals[start + i * n + j] for j in range(n)] for i in range(n)]
        psis.append(posix_psi(logp, lengths))
    return sum(psis) / len(psis), len(psis)


def evaluate_benchmark(spec: str, settings: RunSettings, backend: Any, prompter: Any, out_dir: Path, base_config: dict,
                       track: Tracker) -> list[Condition]:
    from evalsuite.benchmarks.registry import get_benchmark
    from evalsuite.benchmarks.runner import run_benchmark, write_result

    bench = get_benchmark(spec, **settings.options.get(spec.partition(":")[0], {}))
    items = bench.load(settings.data, limit=settings.limit) if settings.data else bench.load(limit=settings.limit)
    config = {**base_config, "benchmark": bench.settings(), "limit": settings.limit, "data": settings.data}
    track.step(f"{bench.task_name} clean")
    clean = run_benchmark(bench, items, backend, prompter, progress=False)
    write_result(clean, out_dir, {**config, "perturbed": None})
    conditions = [Condition(bench.task_name, "clean", clean.results, item_results(bench, clean.samples))]
    track.done()
    for kind in settings.kinds:
        track.step(f"{bench.task_name}@{kind}")
        conditions.append(perturbed_condition(bench, items, kind, settings, backend, prompter, out_dir, config, track))
        track.done()
    return conditions


def perturbed_condition(bench: Any, items: Sequence[Any], kind: str, settings: RunSettings, backend: Any, prompter: Any,
                        out_dir: Path, config: dict, track: Tracker) -> Condition:
    from evalsuite.benchmarks.runner import run_benchmark, write_result

    asked, skipped = variant_items(bench, items, kind, settings)
    if not asked:
        track.log(f"  {bench.task_name}@{kind}: every variant skipped (no safe change)")
        return Condition(bench.task_name, kind, {}, {}, skipped)
    result = run_benchmark(bench, asked, backend, prompter, progress=False)
    result.task = f"{bench.task_name}@{kind}"
    write_result(result, out_dir, {**config, "perturbed": {"kind": kind, "variants": settings.variants,
                                                          "severity": settings.severity, "seed": settings.seed,
                                                          "skipped": skipped}})
    value, sets = posix_of(bench, items, asked, backend, prompter)
    return Condition(bench.task_name, kind, result.results, item_results(bench, result.samples), skipped, value, sets)


def evaluate_checkpoint(ckpt: Checkpoint, settings: RunSettings, store_path: Path, out: Path,
                        track: Tracker) -> list[Condition]:
    from evalsuite.backends import load_backend
    from evalsuite.backends.config import parse_backend_config
    from evalsuite.backends.stored import StoredBackend
    from evalsuite.benchmarks.prompting import Prompter
    from evalsuite.benchmarks.runner import resolve_prompt_format
    from evalsuite.manifest import library_versions
    from evalsuite.store import RequestStore

    cfg = parse_backend_config({**settings.backend, "model": str(ckpt.path)})
    fmt = resolve_prompt_format(ckpt.path, settings.prompt_format, track.log)
    conditions: list[Condition] = []
    with load_backend(cfg) as engine:
        backend = StoredBackend(engine, RequestStore(store_path))
        prompter = Prompter(fmt, backend.tokenizer)  # type: ignore[arg-type]
        base_config = {"model": str(ckpt.path), "checkpoint": ckpt.info(), "backend": cfg.model_dump(mode="json"),
                       "prompt_format": fmt, "weights_fingerprint": backend.model, "versions": library_versions()}
        for spec in settings.benchmarks:
            conditions += evaluate_benchmark(spec, settings, backend, prompter, out / "checkpoints" / ckpt.name,
                                             base_config, track)
        track.log(f"{ckpt.name}: {backend.answered} requests answered by the model, the rest from the store")
    return conditions


def run_models(models: Path, settings: RunSettings, out: Path, track: Tracker | None = None) -> Any:
    """Every checkpoint below `models`; returns the results DataFrame (also written to `out`)."""
    import json

    from evalsuite.errors import ConfigError, EvalsuiteError
    from evalsuite.manifest import library_versions
    from evalsuite.run.discovery import discover
    from evalsuite.run.results import condition_rows, significance_rows, write_table

    track = track or Tracker()
    log = track.log
    found = discover(models)
    if not found:
        raise ConfigError(f"no checkpoint below {models} (folders with evalsuite.json or config.json)")
    for c in found:
        if c.problem:
            log(f"skipping {c.name}: {c.problem}")
    good = [c for c in found if not c.problem]
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({
        "models": str(models), "settings": settings.__dict__ | {
            "options": {k: {o: str(v) for o, v in opts.items()} for k, opts in settings.options.items()},
            "paraphraser": settings.paraphraser and settings.paraphraser.name},
        "checkpoints": [{**c.info(), "path": str(c.path), "problem": c.problem} for c in found],
        "versions": library_versions()}, indent=2, default=str) + "\n")
    by_checkpoint: dict[str, tuple[Checkpoint, list[Condition]]] = {}
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    track.start(len(good))
    for ckpt in good:
        log(f"{ckpt.name} ({ckpt.stage}{'' if ckpt.cell is None else f', cell {ckpt.cell}'})")
        track.checkpoint(ckpt.name, len(settings.benchmarks) * (1 + len(settings.kinds)))
        try:
            conditions = evaluate_checkpoint(ckpt, settings, out / "requests.sqlite", out, track)
        except EvalsuiteError as exc:  # e.g. weights that fail to load: report it, go on with the others
            log(f"skipping {ckpt.name}: {exc}")
            failed.append(ckpt.name)
            continue
        finally:
            track.checkpoint_done()
        by_checkpoint[ckpt.name] = (ckpt, conditions)
        rows += condition_rows(ckpt, conditions, settings.seed)
    rows += significance_rows(by_checkpoint, settings.seed)
    if not by_checkpoint:
        raise ConfigError("no checkpoint could be evaluated")
    return write_table(rows, out)
