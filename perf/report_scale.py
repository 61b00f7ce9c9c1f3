"""How `evalsuite report` scales to the paper's full grid: wall time, peak memory and file sizes against targets.

A synthetic run folder of the WIT paper's shape is built by the real table code (`pipeline.Progress`: per
checkpoint `results.condition_rows` and `records.items_table`, written as items.parquet parts; then
`results.significance_rows`, `records.prompts_table`, `records.checkpoints_table`, `results.write_table` and
run.json): 71 checkpoints (a base model + 35 SFT + 35 DPO cells, λ grid {0, .2, …, 1}² without (0, 0)), the five
benchmarks at their real item counts (MMLU 14,042, BBH 6,511, IFEval 541, MT-Bench 80, AlpacaEval 805), each
clean and under typo / rephrase / format with 2 variants: ~11M item rows. Scores come from a per-cell skill and a
per-item difficulty; responses, judgements and prompts are synthetic text of the lengths real ones have
(`LENGTHS`), unique per row so that Parquet cannot fold them.

Then `evalsuite.report.build_report` runs in a child process; the parent reports its wall time, peak memory
(the larger of `ru_maxrss` of the children and the sampled sum over the child's process tree, since the item
pages are written by worker processes), the largest file written and the folder's size, each against its target
(≤ 60 s, ≤ 4 GiB, no file over 20 MB, index.html under 5 MB) as "x of target". Building the run is timed
separately: it is not part of the report's time.

    .venv/bin/python perf/report_scale.py --scale 0.05     # a quick run (5 % of the items)
    .venv/bin/python perf/report_scale.py                  # the paper's full shape
    .venv/bin/python perf/report_scale.py --items-only     # time the item pages alone
    .venv/bin/python perf/report_scale.py --item-texts all # with every response and judge output
    .venv/bin/python perf/report_scale.py --dir D --keep   # keep the run in D; later runs add --reuse
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

GRID = [round(0.2 * i, 1) for i in range(6)]
KINDS = ("typo", "rephrase", "format")
VARIANTS = 2
TARGETS = {"wall_s": 60.0, "peak_rss_bytes": 4 * 2**30, "largest_file_bytes": 20 * 10**6,
           "index_html_bytes": 5 * 10**6}


@dataclass(frozen=True)
class Shape:
    """One benchmark as the paper runs it: its task and registry names, item count and subsets, score metric and
    scale, and the mean lengths (characters) of its prompts, responses and judgements."""

    name: str
    task: str
    items: int
    subsets: int
    score_metric: str
    scale: str
    prompt: int
    response: int
    judgement: int = 0
    answers: tuple[str, ...] = ()


# Mean lengths: MMLU's 0-shot question with options; a generative answer with a short explanation. BBH's
# zero-shot task prompt; a short answer. IFEval's instruction; a long response. MT-Bench's two turns and two
# responses and judgements. AlpacaEval's instruction, a long response, a short judge verdict.
SHAPES = (
    Shape("mmlu", "mmlu_generative", 14042, 57, "exact_match,flexible-extract", "proportion", 420, 120,
          answers=("A", "B", "C", "D")),
    Shape("bbh", "bbh_zeroshot", 6511, 27, "exact_match,flexible-extract", "proportion", 650, 150,
          answers=("True", "False", "(A)", "(B)", "(C)", "valid", "invalid", "Yes", "No")),
    Shape("ifeval", "ifeval", 541, 1, "prompt_level_strict_acc,none", "proportion", 250, 1200),
    Shape("mtbench", "mt_bench", 80, 8, "score,none", "rating_1_10", 450, 3000, judgement=1600),
    Shape("alpacaeval", "alpaca_eval", 805, 5, "win,none", "proportion", 200, 1300, judgement=200),
)

WORDS = ("the model answer question because therefore first second step value result option correct "
         "which this that we see can number function given so then thus all none each both either").split()


def text_pool(rng: np.random.Generator, mean: int, size: int = 64) -> list[str]:
    """`size` texts of words with line breaks and quotes, lengths log-normal around `mean` characters."""
    out = []
    for length in np.maximum(4, rng.lognormal(np.log(mean), 0.6, size) * np.exp(-0.18)).astype(int):
        words = rng.choice(WORDS, size=max(1, int(length) // 6))
        text = " ".join(words)[: int(length)]
        out.append(text.replace(" step ", ".\n\nStep ").replace(" option ", ' "option" '))
    return out


def checkpoints(models: Path) -> list[Any]:
    """The paper's 71 checkpoints: base, 35 SFT and 35 DPO cells (DPO on each SFT cell)."""
    from evalsuite.run.discovery import Checkpoint, TrainingMetrics, experiment_key

    exp = experiment_key("org/base-7b", "lima", "f" * 64, "chatml")
    found = [Checkpoint("base", models / "base", "hf", None, None, base_model="org/base-7b")]
    cells = [(p, r) for p in GRID for r in GRID if (p, r) != (0.0, 0.0)]
    for stage in ("sft", "dpo"):
        for p, r in cells:
            name = f"{stage}/p{p}_r{r}"
            parent = str(models / f"sft/p{p}_r{r}") if stage == "dpo" else "org/base-7b"
            found.append(Checkpoint(name, models / name, stage, (p, r), "chatml", experiment=exp, parent=parent,
                                    base_model="org/base-7b", dataset="lima" if stage == "sft" else "ultrafeedback",
                                    dataset_fingerprint=("f" if stage == "sft" else "d") * 64,
                                    metrics=TrainingMetrics(1.2, 1.3, 0.7 if stage == "dpo" else None,
                                                            0.4 if stage == "dpo" else None),
                                    fingerprint=hashlib.sha256(name.encode()).hexdigest()[:16]))
    return found


@dataclass
class Bench:
    """What the table code asks of a benchmark (`TaskInfo.of`, `prompts_table`)."""

    shape: Shape

    @property
    def task_name(self) -> str:
        return self.shape.task

    @property
    def name(self) -> str:
        return self.shape.name

    @property
    def score_metric(self) -> str:
        return self.shape.score_metric

    @property
    def scale(self) -> str:
        return self.shape.scale

    def prompt_turns(self, item: Any) -> list[str]:
        return [item.text(item.doc["prompt"])]

    def settings(self) -> dict[str, Any]:
        return {"name": self.shape.name}


def tasks(scale: float, rng: np.random.Generator) -> list[Any]:
    """The five benchmarks' items and their variants (real `Item`/`Perturbed` values) at `scale` of their size."""
    from evalsuite.benchmarks.types import Item, Perturbed
    from evalsuite.run.pipeline import Task

    out = []
    for shape in SHAPES:
        n = max(4, round(shape.items * scale))
        pool = text_pool(rng, shape.prompt)
        items = [Item(f"{'sub%02d' % (i % shape.subsets)}/{i:05d}", f"sub{i % shape.subsets:02d}",
                      {"prompt": f"[{i}] " + pool[i % len(pool)]},
                      shape.answers[i % len(shape.answers)] if shape.answers else None) for i in range(n)]
        variants = {kind: ([Item(it.id, it.subset, it.doc, it.target,
                                 Perturbed(kind, v, 0.1, text=f"({kind} {v}) " + it.doc["prompt"]))
                            for it in items for v in range(VARIANTS)], 0) for kind in KINDS}
        out.append(Task(Bench(shape), items, variants, {}, {k: VARIANTS for k in KINDS}))
    return out


def conditions(ckpt: Any, task: Any, rng: np.random.Generator, pools: dict[str, list[str]]) -> list[Any]:
    """One checkpoint's synthetic results on one task: clean and each kind, per prompt an `ItemResult`."""
    from evalsuite.run.types import Condition, ItemResult

    shape: Shape = task.bench.shape
    n = len(task.items)
    p, r = ckpt.cell or (0.0, 0.0)
    skill = 0.35 + 0.25 * r - 0.1 * p + (0.05 if ckpt.stage == "dpo" else 0.0) + (-0.2 if ckpt.cell is None else 0)
    difficulty = np.linspace(-1.5, 1.5, n)
    responses, judgements = pools[f"{shape.name}:r"], pools.get(f"{shape.name}:j")
    ids = [it.id for it in task.items]
    subsets = [it.subset for it in task.items]
    out = []
    for cond in ("clean",) + KINDS:
        results = {}
        for v in [None] if cond == "clean" else list(range(VARIANTS)):
            noise = rng.normal(0, 0.6, n) - (0.15 if v is not None else 0.0)
            prob = 1 / (1 + np.exp(-(4 * (skill - 0.5) - difficulty + noise)))
            if shape.scale == "rating_1_10":
                scores = np.clip(np.round(1 + 9 * prob + rng.normal(0, 1, n)), 1, 10)
            else:
                scores = (rng.random(n) < prob).astype(float)
            score_list = [None if u else float(s) for u, s in zip(rng.random(n) < (0.005 if judgements else 0), scores)]
            picks = rng.integers(0, len(responses), n).tolist()
            truncated = ((rng.random(n) < 0.01) & (shape.name == "bbh")).astype(int).tolist()
            if shape.answers:
                k = len(shape.answers)
                answers = [it.target if s == 1 else shape.answers[(i + 1 + (v or 0)) % k]
                           for i, (it, s) in enumerate(zip(task.items, scores))]
            else:
                answers = [None] * n
            head = f"{ckpt.name} {cond} {v}"
            texts = [f"{head} {i}: {responses[j]}" for i, j in zip(ids, picks)]
            verdicts = [f"{i} {v}: {judgements[j]}" for i, j in zip(ids, picks)] if judgements else [None] * n
            results.update({(i, v): ItemResult(a, s, sub, t, x, y) for i, a, s, sub, t, x, y
                            in zip(ids, answers, score_list, subsets, truncated, texts, verdicts)})
        out.append(Condition(task.name, cond, {"all": {"truncated_requests": 0}}, results, 0,
                             None if cond == "clean" else float(rng.random() * 0.1), 0 if cond == "clean" else n))
    return out


@dataclass(frozen=True)
class Build:
    """What every build worker needs: the run folder, the shape, the seed."""

    out: Path
    scale: float
    resamples: int
    seed: int = 0


def prepare(build: Build) -> tuple[list[Any], list[Any], dict[str, list[str]], Any]:
    """The checkpoints, tasks, text pools and run settings (the same in every worker: all from the seed)."""
    from evalsuite.run.types import RunSettings

    import evalsuite.metrics as metrics

    # the bootstrap intervals are not what is measured here: fewer resamples keep the build short
    metrics.bootstrap_ci = functools.partial(metrics.bootstrap_ci, resamples=build.resamples)
    metrics.paired_bootstrap = functools.partial(metrics.paired_bootstrap, resamples=build.resamples)
    rng = np.random.default_rng(build.seed)
    found = checkpoints(build.out.parent / "models")
    prepared = tasks(build.scale, rng)
    pools = {}
    for shape in SHAPES:
        pools[f"{shape.name}:r"] = text_pool(rng, shape.response, 256)
        if shape.judgement:
            pools[f"{shape.name}:j"] = text_pool(rng, shape.judgement, 256)
    settings = RunSettings(benchmarks=[s.name for s in SHAPES], kinds=list(KINDS), variants=VARIANTS)
    return found, prepared, pools, settings


def build_part(build: Build, positions: list[int]) -> tuple[list[dict[str, Any]], dict[str, list[Any]], int]:
    """Checkpoints at `positions`: their result rows and clean conditions (for the significance tests), their
    items.parquet parts written (`Progress.add`, the run's own code)."""
    from evalsuite.run.pipeline import Progress

    found, prepared, pools, settings = prepare(build)
    progress = Progress(build.out, build.out.parent / "models", settings, list(found), prepared)
    clean, rows = {}, 0
    for k in positions:
        ckpt = found[k]
        rng = np.random.default_rng([build.seed, k])
        conds = [c for task in prepared for c in conditions(ckpt, task, rng, pools)]
        rows += sum(len(c.item_results) for c in conds)
        progress.add(ckpt, conds)
        clean[ckpt.name] = [c.without_texts() for c in conds if c.condition == "clean"]
    return progress.rows, clean, rows


def build_run(out: Path, scale: float, resamples: int, seed: int = 0, workers: int = 2) -> dict[str, Any]:
    """The synthetic run folder, written by the run's own table code (checkpoints shared out over `workers`
    processes); returns counts."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from evalsuite.run.pipeline import Progress
    from evalsuite.run.results import significance_rows
    from evalsuite.run.types import Status

    build = Build(out, scale, resamples, seed)
    found, prepared, _, settings = prepare(build)
    shares = [list(range(len(found)))[w::workers] for w in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(build_part, [build] * workers, shares))
    progress = Progress(out, out.parent / "models", settings, list(found), prepared)
    by_checkpoint = {}
    rows = 0
    for part_rows, clean, n in parts:
        progress.rows += part_rows
        rows += n
        by_checkpoint.update({name: (next(c for c in found if c.name == name), conds) for name, conds in clean.items()})
    order = {c.name: k for k, c in enumerate(found)}
    progress.rows.sort(key=lambda row: order[row["checkpoint"]])  # the run's order (a stable sort)
    progress.parts = {c.name: item_part_path(out, k) for k, c in enumerate(found)}
    progress.statuses += [Status(c.name, t.name, "all", "ok") for c in found for t in prepared]
    by_checkpoint = {c.name: by_checkpoint[c.name] for c in found}
    sig, notes = significance_rows(by_checkpoint, progress.task_info, seed)
    progress.rows += sig
    progress.statuses += notes
    progress.write("finished")
    return {"checkpoints": len(found), "item_rows": rows, "items": {t.name: len(t.items) for t in prepared}}


def item_part_path(out: Path, position: int) -> Path:
    from evalsuite.run.records import item_part

    return item_part(out, position)


def folder_stats(folder: Path) -> dict[str, Any]:
    largest, size, files = (None, 0), 0, 0
    for path in folder.rglob("*"):
        if path.is_file():
            n = path.stat().st_size
            size += n
            files += 1
            if n > largest[1]:
                largest = (path, n)
    index = folder / "index.html"
    return {"files": files, "folder_bytes": size, "largest_file": str(largest[0].relative_to(folder)) if largest[0]
            else None, "largest_file_bytes": largest[1], "index_html_bytes": index.stat().st_size if index.exists()
            else None}


def child(run: Path, out: Path, items_only: bool, texts: str) -> None:
    """The measured part, in its own process: the report (or the item pages alone) of `run`, with the item texts
    (responses, judge outputs) as `--item-texts` says."""
    start = time.perf_counter()
    if items_only:
        from evalsuite.report.items import write_item_pages
        from evalsuite.run.records import read_run

        from evalsuite.report.html import with_texts

        tables = read_run(run, item_columns=[])
        write_item_pages(tables, out, texts=with_texts(tables, texts))  # type: ignore[arg-type]
    else:
        from evalsuite.report import build_report

        build_report([run], out, item_texts=texts)
    print(json.dumps({"inner_s": time.perf_counter() - start}))


def tree_rss(root: int) -> int:
    """Resident memory of process `root` and all its descendants now (Linux /proc; 0 elsewhere)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parents[pid], rss[pid] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def measure(run: Path, out: Path, items_only: bool, texts: str) -> dict[str, Any]:
    """Wall time; peak memory as the largest single process (`ru_maxrss` of the children) and as the sum over
    the report's process tree (sampled every 0.1 s: the item pages use worker processes); CPU time of the tree."""
    command = [sys.executable, __file__, "--child", str(run), str(out)] + (["--items-only"] if items_only else [])
    command += ["--item-texts", texts]
    with tempfile.TemporaryFile("w+") as out_log, tempfile.TemporaryFile("w+") as err_log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out_log, stderr=err_log, text=True)
        peak_tree = 0
        while True:  # wait4: this child's own usage (its worker processes included), not earlier children's
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_tree = max(peak_tree, tree_rss(proc.pid))
            time.sleep(0.1)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_log.seek(0)
        err_log.seek(0)
        stdout, stderr = out_log.read(), err_log.read()
    if proc.returncode:
        sys.stderr.write(stdout + stderr)
        raise SystemExit(f"the report failed (exit {proc.returncode})")
    inner = json.loads(stdout.strip().splitlines()[-1])["inner_s"]
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"wall_s": wall, "inner_s": inner, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_bytes": max(peak, peak_tree), "peak_process": peak, "peak_tree": peak_tree,
            "load": os.getloadavg()[0], **folder_stats(out)}


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of each benchmark's items (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the run and report folders (printed)")
    parser.add_argument("--dir", type=Path, help="work here instead of a temporary folder")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples while building the run")
    parser.add_argument("--workers", type=int, default=2, help="processes building the run (default 2)")
    parser.add_argument("--items-only", action="store_true", help="time the item pages alone")
    parser.add_argument("--item-texts", choices=("auto", "all", "none"), default="auto",
                        help="responses and judge outputs in the item pages, as `evalsuite report --item-texts` "
                        "(auto: left out when items.parquet is over 256 MiB, as at the paper's full scale)")
    parser.add_argument("--reuse", action="store_true", help="reuse the run already built in --dir")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.items_only, args.item_texts)

    work = args.dir or Path(tempfile.mkdtemp(prefix="report-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    run, out = work / "run", work / "report"
    try:
        if not (args.reuse and (run / "run.json").exists()):
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True)
            t0 = time.perf_counter()
            built = build_run(run, args.scale, args.resamples, workers=args.workers)
            print(f"synthetic run (scale {args.scale:g}): {built['checkpoints']} checkpoints, "
                  f"{built['item_rows']:,} item rows {built['items']}, built in {time.perf_counter() - t0:.1f} s "
                  f"(not part of the report's time); items.parquet {human(du(run / 'items.parquet'))}")
        shutil.rmtree(out, ignore_errors=True)
        from evalsuite.report.html import with_texts
        from evalsuite.run.records import read_run

        what = "item pages alone" if args.items_only else "evalsuite report"
        texts = with_texts(read_run(run, item_columns=[]), args.item_texts)
        got = measure(run, out, args.items_only, args.item_texts)
        print(f"{what} (--item-texts {args.item_texts}: responses and judge outputs "
              f"{'included' if texts else 'left out'}): {got['files']:,} files, folder {human(got['folder_bytes'])}")
        rows = [("wall time", got["wall_s"], TARGETS["wall_s"], f"{got['wall_s']:.1f} s (in-process "
                 f"{got['inner_s']:.1f} s, CPU {got['cpu_s']:.1f} s, load {got['load']:.1f})", "≤ 60 s"),
                ("peak memory", got["peak_rss_bytes"], TARGETS["peak_rss_bytes"],
                 f"{human(got['peak_rss_bytes'])} (largest process {human(got['peak_process'])}, process tree "
                 f"{human(got['peak_tree'])})", "≤ 4 GiB"),
                ("largest file", got["largest_file_bytes"], TARGETS["largest_file_bytes"],
                 f"{human(got['largest_file_bytes'])} ({got['largest_file']})", "≤ 20 MB")]
        if got["index_html_bytes"] is not None:
            rows.append(("index.html", got["index_html_bytes"], TARGETS["index_html_bytes"],
                         human(got["index_html_bytes"]), "< 5 MB"))
        for label, value, target, shown, goal in rows:
            print(f"  {label:<13} {shown:<64} target {goal:<8} {value / target:.2f}x of target")
    finally:
        if args.keep or args.dir:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


if __name__ == "__main__":
    main()
