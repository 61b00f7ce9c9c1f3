"""`evalsuite run --models DIR`: every checkpoint × benchmark × clean and perturbed, durable and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evalsuite.cli.common import shown

console = Console()


def run(
    models: Annotated[Path, typer.Option("--models", help="Folder searched for checkpoints (evalsuite.json, config.json or a peft adapter_config.json); symbolic links are followed.")],
    benchmarks: Annotated[Optional[str], typer.Option("--benchmarks", help="Comma-separated benchmark specs (default: mmlu,bbh,ifeval).")] = None,
    perturb: Annotated[Optional[str], typer.Option("--perturb", help="Perturbation kinds, comma-separated, from typo, rephrase, format, template; '' for clean only (default: typo,rephrase,format).")] = None,
    variants: Annotated[Optional[int], typer.Option("--variants", help="Variants per item and kind (default: 2).")] = None,
    severity: Annotated[Optional[float], typer.Option("--severity", help="Perturbation severity, in (0, 1] (default: 0.1).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Perturbation seed (default: 1234).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most N items per subset (default: all).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Benchmark data (default: the prepared folder, else the hub).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help="hf | vllm | openai (default: hf).")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="auto | float32 | bfloat16 | float16 (default: auto, the checkpoint's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Backend batch size (default: 16).")] = None,
    prompt_format: Annotated[Optional[str], typer.Option("--prompt-format", help="auto (each checkpoint's manifest) | plain | chat_template (default: auto).")] = None,
    posix: Annotated[Optional[str], typer.Option("--posix", help="POSIX normaliser: response_length (the paper's) | max_new_tokens (the released library's) (default: response_length).")] = None,
    judge_model: Annotated[Optional[str], typer.Option("--judge-model", help="MT-Bench / AlpacaEval judge.")] = None,
    judge_base_url: Annotated[Optional[str], typer.Option("--judge-base-url", help="OpenAI-compatible judge endpoint.")] = None,
    judge_api_key_env: Annotated[Optional[str], typer.Option("--judge-api-key-env", help="Env var holding the judge endpoint's API key (no key is sent without it, except to api.openai.com).")] = None,
    judge_max_new_tokens: Annotated[Optional[int], typer.Option("--judge-max-new-tokens", help="Judgement length cap (default: 2048).")] = None,
    judge_backend: Annotated[Optional[str], typer.Option("--judge-backend", help="hf | vllm for a local judge checkpoint.")] = None,
    paraphrase_model: Annotated[Optional[str], typer.Option(
        "--paraphrase-model", help="rephrase by an LLM: a served model name (with --paraphrase-base-url) or a local checkpoint.")] = None,
    paraphrase_base_url: Annotated[Optional[str], typer.Option("--paraphrase-base-url", help="OpenAI-compatible endpoint.")] = None,
    paraphrase_api_key_env: Annotated[Optional[str], typer.Option("--paraphrase-api-key-env", help="Env var holding its API key.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML/JSON run file (backend:, run:, benchmark_options:, judge:, paraphrase:); flags override it.")] = None,
    checkpoints: Annotated[Optional[str], typer.Option("--checkpoints", help="Only these checkpoints (names as found below --models, comma-separated).")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Only shard i of n (i/n): every n-th checkpoint found, from the i-th; each shard its own --out, then `evalsuite merge`.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: requests.sqlite, checkpoints/, results.*, run.json (default: reports/run).")] = Path("reports/run"),
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write the HTML report (OUT/report/index.html; `evalsuite report` writes it later).")] = False,
) -> None:
    """Evaluate every checkpoint below --models on every benchmark, clean and perturbed. Exit code 1 when a
    checkpoint or benchmark failed (each failure is recorded in run.json and the table), 2 for bad input."""
    from evalsuite.run.config import load_run_file
    from evalsuite.run.discovery import Selection
    from evalsuite.run.session import evaluation, settings_from

    selection = Selection.parse(checkpoints, shard)
    file = load_run_file(config)
    settings = settings_from(file, benchmarks=benchmarks, perturb=perturb, variants=variants, severity=severity, seed=seed,
                             limit=limit, data=data, backend=backend, dtype=dtype, batch_size=batch_size,
                             prompt_format=prompt_format, posix=posix)
    judge_flags = dict(model=judge_model, base_url=judge_base_url, api_key_env=judge_api_key_env,
                       max_new_tokens=judge_max_new_tokens, backend=judge_backend)
    paraphrase_flags = dict(model=paraphrase_model, base_url=paraphrase_base_url, api_key_env=paraphrase_api_key_env)
    with evaluation(file, settings, models, out, selection, judge_flags=judge_flags,
                    paraphrase_flags=paraphrase_flags) as evaluate, RunProgress() as tracker:
        outcome = evaluate(tracker)
    console.print(summary_table(outcome.table, settings.kinds))
    console.print(f"[bold green]Run:[/bold green] {escape(str(out.resolve()))} (results.csv, results.parquet, run.json, "
                  "checkpoints/<name>/samples_*.jsonl, requests.sqlite)", soft_wrap=True)
    if not no_report:
        write_report(out)
    if outcome.failed:
        console.print(f"[bold red]{len(outcome.failed)} failed:[/bold red]", soft_wrap=True)
        for s in outcome.failed:
            console.print(f"  {shown(s.checkpoint)} {s.task}: {shown(s.status)}", soft_wrap=True)
        raise typer.Exit(1)


def merge(
    shards: Annotated[list[Path], typer.Argument(help="The shards' run folders (each from `evalsuite run --shard i/n` or --checkpoints).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged run folder.")],
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write OUT/report/index.html.")] = False,
) -> None:
    """Merge the run folders of one run split by checkpoint into one: tables, items, request stores, and the paired
    tests against each grid's (0, 1) cell made on the merged items."""
    from evalsuite.run.merge import merge_runs
    from evalsuite.run.records import check_run

    table = merge_runs(shards, out, log=lambda m: console.print(escape(m), soft_wrap=True))
    console.print(summary_table(table, check_run(out)["settings"]["kinds"]))
    if not no_report:
        write_report(out)
    if (table[table.metric == "status"].status.str.startswith("failed")).any():
        raise typer.Exit(1)


def write_report(out: Path) -> None:
    """The run's HTML report in OUT/report, its path printed. The run's results stand whatever happens here: a
    report that cannot be written is said (with how to write it later), not a failed run."""
    from evalsuite.errors import EvalsuiteError
    from evalsuite.report import build_report

    try:
        index = build_report([out], out / "report")
    except Exception as exc:  # noqa: BLE001 - any failure here leaves the run's exit code and summary as they are
        reason = str(exc) if isinstance(exc, EvalsuiteError) else f"{type(exc).__name__}: {exc}"
        console.print(f"[bold yellow]report not written:[/bold yellow] {escape(reason)} (retry with `evalsuite report "
                      f"{escape(str(out))}`)", soft_wrap=True)
        return
    console.print(f"report: {shown(str(index.resolve()))}", soft_wrap=True, highlight=False)


class RunProgress:
    """Two rich bars with ETA: checkpoints, and the steps (benchmark × condition) of the current one."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from evalsuite.run.pipeline import Tracker

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.overall = self.progress.add_task("checkpoints", total=None)
        self.current: Any = None
        self.name = ""
        self.tracker = Tracker(log=self.log, start=lambda n: self.progress.update(self.overall, total=n),
                               checkpoint=self.checkpoint, step=self.step, done=self.done,
                               checkpoint_done=self.checkpoint_done)

    def __enter__(self) -> Any:
        self.progress.__enter__()
        return self.tracker

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def log(self, message: str) -> None:
        self.progress.console.print(shown(message), soft_wrap=True)

    def checkpoint(self, name: str, steps: int) -> None:
        self.name = name
        self.current = self.progress.add_task(shown(name), total=steps)

    def checkpoint_done(self) -> None:
        self.progress.remove_task(self.current)
        self.progress.advance(self.overall)

    def step(self, label: str) -> None:
        self.progress.update(self.current, description=shown(f"{self.name}: {label}"))

    def done(self) -> None:
        self.progress.advance(self.current)


def summary_table(df: Any, kinds: list[str]) -> Table:
    """One row per checkpoint, task and condition (clean, then each kind): score, agreement, POSIX, and beside
    them what the numbers leave out (unscored prompts, truncated prompts, skipped variants) or why there are
    none (the status). Long rather than wide, so it stays readable in a narrow terminal."""
    table = Table("checkpoint", "task", "condition", "score", "agreement", "POSIX")
    table.add_column("notes", max_width=48, overflow="ellipsis", no_wrap=True)  # a failure's reason is printed in full below
    metrics = df[df.metric != "status"]
    value = {(r.checkpoint, r.task, r.condition, r.metric): r.value for r in metrics.itertuples()}
    posix = next((m for m in ("posix", "posix_max_new_tokens") if (metrics.metric == m).any()), "posix")

    def cell(key: tuple[str, str, str], metric: str) -> str:
        v = value.get((*key, metric))
        return "-" if v is None or v != v else f"{float(v):.3f}"

    def notes(key: tuple[str, str, str]) -> str:
        counts = [(value.get((*key, m)), label) for m, label in (("unscored", "unscored"), ("truncated_requests", "truncated"),
                                                                  ("skipped_variants", "variants skipped"))]
        return ", ".join(f"{int(v)} {label}" for v, label in counts if v)

    statuses = df[df.metric == "status"]
    status = {(r.checkpoint, r.task, r.condition): str(r.status) for r in statuses.itertuples()}
    for r in statuses[statuses.condition == "all"].itertuples():
        if r.status != "ok":
            table.add_row(shown(str(r.checkpoint)), r.task, "-", "-", "-", "-", shown(str(r.status)))
            continue
        for cond in ("clean", *kinds):
            key = (r.checkpoint, r.task, cond)
            note = shown(status[key]) if key in status else notes(key)  # a skipped condition says why
            table.add_row(shown(str(r.checkpoint)), r.task, cond, cell(key, "score"), cell(key, "agreement"),
                          cell(key, posix), note)
    return table
