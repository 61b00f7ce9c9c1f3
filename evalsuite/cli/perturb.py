"""`evalsuite perturb`: typo, rephrase or format variants of a benchmark's items, as JSONL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape


console = Console()


def perturb(
    benchmark: Annotated[str, typer.Option("--benchmark", help="mmlu, bbh, bbh:cot, ifeval, mtbench or alpacaeval.")],
    kind: Annotated[str, typer.Option("--kind", help="typo | rephrase | format | template")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output JSONL (one row per item and variant).")],
    variants: Annotated[int, typer.Option("--variants", help="Variants per item.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Global seed (each variant is seeded from it and the item id).")] = 1234,
    severity: Annotated[float, typer.Option("--severity", help="0..1: fraction of words (typo), rule sites (rephrase) or layout dimensions (format) changed.")] = 0.1,
    data: Annotated[Optional[str], typer.Option("--data", help="Benchmark data (default: the prepared folder, else the hub).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most N items per subset (the first N).")] = None,
    paraphrase_model: Annotated[Optional[str], typer.Option(
        "--paraphrase-model", help="rephrase by an LLM: a served model name (with --paraphrase-base-url) or a local checkpoint; "
        "without it, rephrase uses the offline rewording rules.")] = None,
    paraphrase_base_url: Annotated[Optional[str], typer.Option("--paraphrase-base-url", help="OpenAI-compatible endpoint.")] = None,
    paraphrase_api_key_env: Annotated[Optional[str], typer.Option(
        "--paraphrase-api-key-env", help="Env var holding the endpoint's API key (never stored).")] = None,
) -> None:
    """Perturbed variants of a benchmark's prompts; a rerun with the same arguments writes the same bytes."""
    from evalsuite.benchmarks.prepare import prepared_or
    from evalsuite.perturb import load_paraphraser
    from evalsuite.errors import ConfigError
    from evalsuite.perturb import variant_rows, write_rows

    from evalsuite.paths import ensure_output_file

    if variants < 1:
        raise ConfigError("--variants must be at least 1")
    ensure_output_file(out)  # before any work
    if paraphrase_model is not None and kind != "rephrase":
        raise ConfigError("--paraphrase-model applies to --kind rephrase only")
    backend = None
    paraphraser = None
    try:
        if paraphrase_model is not None:
            paraphraser, backend = load_paraphraser(paraphrase_model, paraphrase_base_url, paraphrase_api_key_env)
        rows = variant_rows(benchmark, kind, data=prepared_or(data, None), variants=variants, seed=seed,
                            severity=severity, limit=limit, paraphraser=paraphraser)
        skipped: Counter[str] = Counter()

        def counted():
            for row in rows:
                if row["skipped_reason"]:
                    skipped[row["skipped_reason"]] += 1
                yield row

        n = write_rows(counted(), out)
    finally:
        if backend is not None:
            backend.close()
    console.print(f"{n} variants, {sum(skipped.values())} skipped", soft_wrap=True)
    for reason, count in skipped.most_common():
        console.print(f"  skipped {count}: {escape(reason)}", soft_wrap=True)
    console.print(f"[bold green]Variants:[/bold green] {escape(str(out.resolve()))}", soft_wrap=True)
