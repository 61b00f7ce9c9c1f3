"""`evalsuite run --models DIR`: every checkpoint × benchmark × clean and perturbed, durable and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()


def run(
    models: Annotated[Path, typer.Option("--models", help="Folder searched for checkpoints (evalsuite.json or config.json).")],
    benchmarks: Annotated[str, typer.Option("--benchmarks", help="Comma-separated benchmark specs.")] = "mmlu,bbh,ifeval",
    perturb: Annotated[str, typer.Option("--perturb", help="Perturbation kinds, comma-separated ('' for clean only).")] = "typo,rephrase,format",
    variants: Annotated[int, typer.Option("--variants", help="Variants per item and kind.")] = 2,
    severity: Annotated[float, typer.Option("--severity", help="Perturbation severity (0..1).")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Perturbation seed.")] = 1234,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most N items per subset.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Benchmark data (default: the prepared folder, else the hub).")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="hf | vllm | openai")] = "hf",
    dtype: Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Backend batch size.")] = 16,
    prompt_format: Annotated[str, typer.Option("--prompt-format", help="auto (each checkpoint's manifest) | plain | chat_template")] = "auto",
    judge_model: Annotated[Optional[str], typer.Option("--judge-model", help="MT-Bench / AlpacaEval judge.")] = None,
    judge_base_url: Annotated[Optional[str], typer.Option("--judge-base-url")] = None,
    judge_api_key_env: Annotated[Optional[str], typer.Option("--judge-api-key-env")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: requests.sqlite, checkpoints/, results.*")] = Path("reports/run"),
) -> None:
    """Evaluate every checkpoint below --models on every benchmark, clean and perturbed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from evalsuite.cli.evaluate import make_judge, prepared_or
    from evalsuite.errors import ConfigError
    from evalsuite.perturbing import KINDS
    from evalsuite.run.pipeline import RunSettings, run_models

    kinds = [k.strip() for k in perturb.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown perturbation kind(s) {', '.join(unknown)} (choose from {', '.join(KINDS)})")
    judge = make_judge(judge_model, judge_base_url, judge_api_key_env, 2048)
    options: dict[str, dict[str, Any]] = {"mtbench": {"judge": judge}, "alpacaeval": {"judge": judge}} if judge else {}
    settings = RunSettings(benchmarks=[b.strip() for b in benchmarks.split(",") if b.strip()], kinds=kinds,
                           variants=variants, severity=severity, seed=seed, limit=limit, data=prepared_or(data, None),
                           backend={"kind": backend, "dtype": dtype, "batch_size": batch_size}, options=options,
                           prompt_format=prompt_format)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
        bar = progress.add_task("checkpoint × benchmark", total=None)
        try:
            df = run_models(models, settings, out, log=lambda m: progress.console.print(escape(m), soft_wrap=True),
                            advance=lambda: progress.advance(bar), on_start=lambda n: progress.update(bar, total=n))
        finally:
            if judge is not None:
                judge.close()
    console.print(summary_table(df, kinds))
    console.print(f"[bold green]Run:[/bold green] {escape(str(out.resolve()))} (results.csv, results.parquet, "
                  "checkpoints/<name>/samples_*.jsonl, requests.sqlite)", soft_wrap=True)


def summary_table(df: Any, kinds: list[str]) -> Table:
    """One row per checkpoint, task and condition (clean, then each kind): score, agreement, POSIX. Long
    rather than wide, so it stays readable in a narrow terminal."""
    table = Table("checkpoint", "task", "condition", "score", "agreement", "POSIX")

    def cell(ck: str, task: str, cond: str, metric: str) -> str:
        hit = df[(df.checkpoint == ck) & (df.task == task) & (df.condition == cond) & (df.metric == metric)]
        return "-" if hit.empty or hit.value.iloc[0] is None else f"{float(hit.value.iloc[0]):.3f}"

    for (ck, task), _ in df[df.condition == "clean"].groupby(["checkpoint", "task"], sort=False):
        for cond in ("clean", *kinds):
            table.add_row(escape(str(ck)), task, cond, *[cell(ck, task, cond, m) for m in ("score", "agreement", "posix")])
    return table
