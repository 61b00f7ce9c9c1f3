"""The run loop: everything is checked and built before any model loads (benchmarks, options, judges, data,
perturbation variants, the output folder and the request store); then, for each checkpoint, its backend is
loaded once behind the request store and every benchmark is asked clean and under each perturbation kind,
scored, and turned into metric rows. The table and `run.json` are rewritten after every checkpoint, so a long
run has partial results, and every checkpoint × benchmark ends with a status (ok / failed: reason /
skipped: reason) that both record.

Everything a model answers goes through `StoredBackend`, so an interrupted run resumes where it stopped
and a finished one re-runs from the store in seconds; the clean pass is shared by all kinds (and by
POSIX, whose generations are the clean and perturbed answers already stored).
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from evalsuite.errors import ConfigError, EvalsuiteError
from evalsuite.run.discovery import Checkpoint, Selection
from evalsuite.run.types import Condition, ItemResult, Log, RunSettings, Status, TaskInfo

__all__ = ["Condition", "RunOutcome", "RunSettings", "Tracker", "posix_of", "run_models"]


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
class Task:
    """One benchmark of the run, built once for every checkpoint: its items, their variants per kind (rows of
    the `perturbations` package), and what its results record."""

    bench: Any
    items: list[Any]
    variants: dict[str, tuple[list[Any], int]]  # kind -> (perturbed items, skipped variants)
    config: dict[str, Any]
    per_item: dict[str, int] = field(default_factory=dict)  # kind -> variants made per item (template: 1)

    @property
    def name(self) -> str:
        return str(self.bench.task_name)


@dataclass
class RunOutcome:
    table: Any  # pandas DataFrame (also written to the run folder)
    statuses: list[Status] = field(default_factory=list)

    @property
    def failed(self) -> list[Status]:
        return [s for s in self.statuses if s.failed]


def prepare_tasks(settings: RunSettings, log: Log) -> list[Task]:
    """Every benchmark built and checked, its items loaded and perturbed, before any model loads: a typo in a
    benchmark name or option, a missing judge or missing data costs nothing."""
    from evalsuite.benchmarks.runner import build_benchmarks, load_items
    from evalsuite.perturb import item_variant_rows, kind_with, perturbed_items

    benches = build_benchmarks(settings.benchmarks, settings.options)
    tasks = []
    for bench in benches:
        items, provenance = load_items(bench, settings.data, settings.limit)
        variants, per_item = {}, {}
        for kind_name in settings.kinds:
            kind = kind_with(kind_name, settings.paraphraser)
            rows = item_variant_rows(bench, items, kind, settings.variants, settings.seed, settings.severity)
            variants[kind_name] = perturbed_items(items, rows)
            per_item[kind_name] = kind.variant_count(settings.variants)
        tasks.append(Task(bench, items, variants, {"benchmark": {**bench.settings(), **provenance},
                                                   "limit": settings.limit, "data": settings.data}, per_item))
        log(f"{bench.task_name}: {len(items)} items" + "".join(
            f", {kind} {len(asked)} variants ({skipped} skipped)" for kind, (asked, skipped) in variants.items()))
    return tasks


def item_results(bench: Any, samples: Sequence[Any]) -> dict[tuple[str, int | None], ItemResult]:
    """Each prompt's result under the benchmark's primary metric and filter, with what items.parquet shows."""
    _, filt = bench.primary_for()
    return {(s.item_id, s.variant): ItemResult(*bench.item_result(s), s.subset, s.truncated_requests, bench.response(s),
                                               bench.judgement(s))
            for s in samples if s.filter == filt}


def posix_of(bench: Any, clean: Sequence[Any], variants: Sequence[Any], backend: Any, prompter: Any,
             normalization: str = "response_length") -> tuple[float | None, int]:
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
        work.append((n, [len(t) for t in ids], len(scored), reqs[0].max_new_tokens))
        scored += [ScoreRequest(reqs[i].prompt, tuple(ids[j])) for i in range(n) for j in range(n)]
    if not work:
        return None, 0
    totals = [s.total for s in backend.score(scored)]
    psis = []
    for n, lengths, start, max_new in work:
        logp = [[totals[start + i * n + j] for j in range(n)] for i in range(n)]
        psis.append(posix_psi(logp, lengths, normalization=normalization, max_new_tokens=max_new))
    return sum(psis) / len(psis), len(psis)


def evaluate_task(task: Task, settings: RunSettings, backend: Any, prompter: Any, out_dir: Path, base_config: dict,
                  track: Tracker) -> tuple[list[Condition], list[Status]]:
    """One benchmark on one checkpoint: clean, then each kind (a kind the checkpoint cannot be asked in is
    skipped with its reason)."""
    from evalsuite.benchmarks.runner import prefetch, run_benchmark, variant_format, write_result

    config = {**base_config, **task.config}
    formats = {kind: sorted({variant_format(v, prompter.format) for v in asked})
               for kind, (asked, _) in task.variants.items()}
    # kinds whose variants need a chat template the checkpoint's tokenizer lacks: skipped, with the reason
    no_template = not getattr(prompter.tokenizer, "chat_template", None)
    blocked = {kind for kind in task.variants if no_template and "chat_template" in formats[kind]}
    track.step(f"{task.name} clean")
    prefetch(task.bench, [task.items, *(asked for k, (asked, _) in task.variants.items() if k not in blocked)],
             backend, prompter)  # every condition in one engine call per request kind, answers into the store
    clean = run_benchmark(task.bench, task.items, backend, prompter)
    write_result(clean, out_dir, {**config, "perturbed": None})
    conditions = [Condition(task.name, "clean", clean.results, item_results(task.bench, clean.samples))]
    statuses = []
    track.done()
    for kind, (asked, skipped) in task.variants.items():
        track.step(f"{task.name}@{kind}")
        if kind in blocked:
            statuses.append(Status("", task.name, kind, "skipped: the checkpoint's tokenizer has no chat template "
                                                        "to ask the variants in"))
        elif not asked:
            track.log(f"  {task.name}@{kind}: every variant skipped (no safe change)")
            conditions.append(Condition(task.name, kind, {}, {}, skipped))
        else:
            result = run_benchmark(task.bench, asked, backend, prompter)
            result.task = f"{task.name}@{kind}"
            write_result(result, out_dir, {**config, "perturbed": {
                "kind": kind, "variants": task.per_item[kind], "severity": settings.severity, "seed": settings.seed,
                "skipped": skipped, "prompt_format": formats[kind]}})
            value, sets = posix_of(task.bench, task.items, asked, backend, prompter, settings.posix)
            conditions.append(Condition(task.name, kind, result.results, item_results(task.bench, result.samples),
                                        skipped, value, sets))
        track.done()
    return conditions, statuses


def checkpoint_backend(ckpt: Checkpoint, settings: RunSettings, log: Log) -> tuple[Any, Any]:
    """How the checkpoint is prompted and the backend config that answers as it (an adapter-only checkpoint: its
    base weights + the adapter)."""
    from evalsuite.backends.config import parse_backend_config
    from evalsuite.benchmarks.runner import checkpoint_prompting

    how = checkpoint_prompting(ckpt.path, settings.prompt_format, settings.backend.get("add_bos_token"), log)
    weights, adapter = ckpt.weights()
    data = {**settings.backend, "model": str(weights), "add_bos_token": how.add_bos_token}
    if adapter is not None:
        if data.get("kind", "hf") not in ("hf", "vllm"):
            raise EvalsuiteError(f"{ckpt.name} is a LoRA adapter: evaluate it with the hf or vllm backend")
        data["adapter"] = str(adapter)
    return how, parse_backend_config(data)


def evaluate_checkpoint(ckpt: Checkpoint, tasks: Sequence[Task], settings: RunSettings, store: Any, out: Path,
                        track: Tracker, engines: Any = None, shares: bool = False
                        ) -> tuple[list[Condition], list[Status], Checkpoint]:
    """Every task on one checkpoint, its model loaded once (or served by the run's shared multi-LoRA engine,
    `shares`). A task that fails is recorded and the next one runs; a checkpoint that cannot be loaded fails all
    of its tasks. Returns the checkpoint as evaluated too (its prompt format, its weights' identity in the store)."""
    from evalsuite.benchmarks.prompting import Prompter
    from evalsuite.manifest import library_versions
    from evalsuite.run.engines import Engines
    from evalsuite.store import StoreError

    how, cfg = checkpoint_backend(ckpt, settings, track.log)
    conditions: list[Condition] = []
    statuses: list[Status] = []
    pool = engines or Engines(track.log)
    with (nullcontext() if engines else pool), pool.backend(cfg, store, shares) as backend:
        ckpt = replace(ckpt, prompt_format=how.prompt_format, fingerprint=backend.model)
        prompter = Prompter(how.prompt_format, backend.tokenizer)  # type: ignore[arg-type]
        base_config = {"model": str(ckpt.path), "checkpoint": ckpt.info(), "backend": cfg.model_dump(mode="json"),
                       "prompt_format": how.prompt_format, "model_identity": backend.model,
                       "versions": library_versions()}
        shared = getattr(backend.backend, "engine", None)  # a view of a shared engine
        if shared is not None:
            base_config["served_by"] = {"engine_weights": str(shared.checkpoint),
                                        "adapter": "weights swapped in place" if shared.swaps else "multi-LoRA"}
        for task in tasks:
            try:
                done, skipped = evaluate_task(task, settings, backend, prompter, out / "checkpoints" / ckpt.name,
                                              base_config, track)
            except StoreError:
                raise  # answers can no longer be kept: nothing further can be trusted
            except Exception as exc:  # noqa: BLE001 - one benchmark's failure must not lose the others
                track.log(f"  {ckpt.name}: {task.name} failed: {reason(exc)}")
                statuses.append(Status(ckpt.name, task.name, "all", f"failed: {reason(exc)}"))
                continue
            conditions += done
            statuses += [replace(s, checkpoint=ckpt.name) for s in skipped]
            statuses.append(Status(ckpt.name, task.name, "all", "ok"))
        track.log(f"{ckpt.name}: {backend.answered} requests answered by the model, the rest from the store")
    return conditions, statuses, ckpt


def reason(exc: BaseException) -> str:
    """One line saying why: the message of our own errors, the type and first line of anything else."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, EvalsuiteError) else f"{type(exc).__name__}: {text}".rstrip(": ")


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Only one `evalsuite run` writes into a run folder at a time (two would overwrite each other's table)."""
    lock = out / ".evalsuite-run.lock"
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(f"another evalsuite run ({holder}) is writing to {out}: wait for it to end or choose "
                              "another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_run(models: Path, out: Path, selection: Selection = Selection()) -> tuple[list[Checkpoint], Any]:
    """The checkpoints to evaluate (at least one; those `selection` keeps) and the run's request store, opened and
    its write access checked: what a run needs before any data or model loads (call it holding the run's lock)."""
    from evalsuite.run.discovery import discover
    from evalsuite.store import RequestStore

    found = discover(models)
    if not found:
        raise ConfigError(f"no checkpoint below {models} (folders with evalsuite.json or config.json)")
    chosen = selection.apply(found)
    if not chosen:  # only a shard can select nothing (named checkpoints exist, or `apply` said which do not)
        raise ConfigError(f"shard {(selection.record() or {}).get('shard')} holds none of the {len(found)} checkpoints "
                          f"below {models}: use fewer shards")
    return chosen, RequestStore(out / "requests.sqlite")


def preflight(models: Path, out: Path, selection: Selection = Selection()) -> None:
    """`run_models`' own first checks, for a caller about to load something costly first (an LLM paraphraser):
    the output folder, no other run in it, checkpoints to evaluate, a writable store."""
    from evalsuite.paths import ensure_output_dir

    ensure_output_dir(out)
    with run_lock(out):
        open_run(models, out, selection)


def run_models(models: Path, settings: RunSettings, out: Path, track: Tracker | None = None,
               selection: Selection = Selection()) -> RunOutcome:
    """Every checkpoint below `models` × every benchmark; the results table, `run.json` and per-checkpoint
    records in `out`. Raises (before any model loads) for anything the user must fix; failures of single
    checkpoints or benchmarks are recorded and the run goes on (see `RunOutcome.failed`)."""
    from evalsuite.paths import ensure_output_dir
    from evalsuite.run.results import significance_rows

    track = track or Tracker()
    ensure_output_dir(out)
    with run_lock(out):
        found, store = open_run(models, out, selection)
        tasks = prepare_tasks(settings, track.log)
        progress = Progress(out, models, settings, list(found), tasks, selection=selection)
        for c in found:
            if c.problem:
                track.log(f"failed: {c.name}: {c.problem}")
                progress.statuses += [Status(c.name, t.name, "all", f"failed: {c.problem}") for t in tasks]
        try:
            by_checkpoint = evaluate_all([c for c in found if not c.problem], tasks, settings, store, progress, track)
        except BaseException:  # interrupted, or the store failed: the record says so, not "running"
            progress.write("stopped")
            raise
        if selection.record() is not None:  # a shard may lack its grid's (0, 1) cell: `evalsuite merge` tests
            track.log("the paired tests against each grid's (0, 1) cell are made when the shards are merged")
        else:
            sig_rows, notes = significance_rows(by_checkpoint, progress.task_info, settings.seed)
            for note in notes:
                track.log(f"warning: {note.checkpoint} {note.task}: {note.status}")
            progress.rows += sig_rows
            progress.statuses += notes
        return RunOutcome(progress.write("finished"), progress.statuses)


@dataclass
class Progress:
    """What a run has so far (metric rows, statuses, each evaluated checkpoint's items), written out as the run
    folder's tables and `run.json` together (`records`)."""

    out: Path
    models: Path
    settings: RunSettings
    found: list[Checkpoint]  # as evaluated, once they are
    tasks: Sequence[Task] = ()
    selection: Selection = Selection()
    rows: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    parts: dict[str, Path] = field(default_factory=dict)  # checkpoint -> its part of items.parquet
    prompts_written: bool = False

    @property
    def task_info(self) -> dict[str, TaskInfo]:
        return {t.name: TaskInfo.of(t.bench) for t in self.tasks}

    def add(self, ckpt: Checkpoint, conditions: Sequence[Condition]) -> None:
        """A checkpoint done: its rows, and its items written as its part of items.parquet (once: the part does
        not change afterwards, so a long run writes each answer once)."""
        from evalsuite.run.records import item_part, items_table, write_parquet
        from evalsuite.run.results import POSIX_METRIC, condition_rows

        position = next(i for i, c in enumerate(self.found) if c.name == ckpt.name)
        self.found[position] = ckpt
        tasks = self.task_info
        self.rows += condition_rows(ckpt, conditions, tasks, self.settings.seed, POSIX_METRIC[self.settings.posix])
        if conditions:
            self.parts[ckpt.name] = write_parquet(item_part(self.out, position),
                                                  items_table(ckpt.info(), conditions, tasks))

    def write(self, state: str) -> Any:
        """Every table (the results returned as a DataFrame), then run.json, with `state`: running, finished or
        stopped. run.json comes last: its `records_version` vouches for the tables beside it."""
        from evalsuite.run.records import (CHECKPOINTS, ITEMS, PROMPTS, checkpoints_table, prompts_table,
                                           prune_item_parts, write_parquet)
        from evalsuite.run.results import status_rows, write_table

        if not self.prompts_written:
            write_parquet(self.out / PROMPTS, prompts_table(self.tasks))
            self.prompts_written = True
        prune_item_parts(self.out, self.parts.values())
        (self.out / ITEMS).mkdir(exist_ok=True)  # a run whose checkpoints all failed has an empty items table
        write_parquet(self.out / CHECKPOINTS, checkpoints_table(self.found))
        table = write_table(self.rows + status_rows(self.found, self.statuses, self.task_info), self.out)
        write_run_record(self.out, self.models, self.settings.record(), self.found, self.statuses, self.started, state,
                         self.selection.record())
        return table


def evaluate_all(good: Sequence[Checkpoint], tasks: Sequence[Task], settings: RunSettings, store: Any,
                 progress: Progress, track: Tracker) -> dict[str, tuple[Checkpoint, list[Condition]]]:
    """Each checkpoint in turn, its rows, items and statuses added to `progress`, which is written after each one
    (a long run has partial results). Returned: what the significance tests at the end need of each checkpoint,
    its clean conditions without texts (a full grid's answers would not fit in memory). Checkpoints that share an
    engine (a base and its LoRA adapters under vLLM) are evaluated one after the other on it."""
    from evalsuite.run.engines import Engines, engine_groups
    from evalsuite.store import StoreError

    by_checkpoint: dict[str, tuple[Checkpoint, list[Condition]]] = {}
    track.start(len(good))
    configs = []
    for ckpt in good:
        try:
            configs.append(checkpoint_backend(ckpt, settings, lambda message: None)[1])
        except Exception:  # noqa: BLE001 - reported when the checkpoint itself is evaluated
            configs.append(None)
    order, shares = engine_groups(configs)
    with Engines(track.log, [c.adapter for c in configs if getattr(c, "adapter", None)]) as engines:
        for i in order:
            ckpt = good[i]
            track.log(f"{ckpt.name} ({ckpt.stage}{'' if ckpt.cell is None else f', cell {ckpt.cell}'})")
            track.checkpoint(ckpt.name, len(tasks) * (1 + len(settings.kinds)))
            try:
                conditions, done, ckpt = evaluate_checkpoint(ckpt, tasks, settings, store, progress.out, track,
                                                             engines, shares[i])
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. weights that fail to load: recorded, the others go on
                track.log(f"failed: {ckpt.name}: {reason(exc)}")
                conditions, done = [], [Status(ckpt.name, t.name, "all", f"failed: {reason(exc)}") for t in tasks]
            finally:
                track.checkpoint_done()
            progress.statuses += done
            progress.add(ckpt, conditions)
            by_checkpoint[ckpt.name] = (ckpt, [c.without_texts() for c in conditions if c.condition == "clean"])
            progress.write("running")
    return by_checkpoint


def write_run_record(out: Path, models: Path, settings: dict[str, Any], found: Sequence[Checkpoint],
                     statuses: Sequence[Status], started: float, state: str, selection: dict[str, Any] | None = None,
                     merged_from: Sequence[str] | None = None) -> None:
    """`run.json`: what this run was asked to do and how each unit ended; rewritten with the table, so the two
    always describe the same run (`state`: running, finished, or stopped by an interruption or a failure of
    the store)."""
    from evalsuite.manifest import library_versions
    from evalsuite.paths import write_json
    from evalsuite.run.records import RECORDS_VERSION

    record = {
        "records_version": RECORDS_VERSION,
        "state": state,
        "models": str(models), "settings": settings,
        **({"selection": selection} if selection else {}), **({"merged_from": list(merged_from)} if merged_from else {}),
        "checkpoints": [{**c.info(), "path": str(c.path), "problem": c.problem} for c in found],
        "status": [{"checkpoint": s.checkpoint, "task": s.task, "condition": s.condition, "status": s.status}
                   for s in statuses],
        "failed": sum(s.failed for s in statuses),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_time_s": round(time.time() - started, 1), "versions": library_versions()}
    write_json(out / "run.json", record)
