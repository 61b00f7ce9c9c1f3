"""`evalsuite report RUN_DIR...`: the λ-grid study as an offline HTML report (heatmaps, tables, item pages)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run folders (the --out of `evalsuite run`); their experiments are shown side by side, never pooled.",
        show_default=False, metavar="RUN_DIR")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Report folder (default: the first RUN_DIR's report/).")] = None,
    paper: Annotated[Optional[str], typer.Option(
        "--paper", help="MODEL:DATASET of the WIT paper, e.g. Llama-3.2-1B:Tulu-v2: its published grid beside yours.")] = None,
    compare: Annotated[Optional[Path], typer.Option(
        "--compare", help="Another run folder of the same grid: per-cell differences (it − these runs).")] = None,
    item_texts: Annotated[str, typer.Option(
        "--item-texts", help="Responses and judge outputs in the item pages: auto (unless a run's items.parquet "
        "is over 256 MiB) | all | none.")] = "auto",
) -> None:
    """Write OUT/index.html (opens from disk, no server, no network) and print its path."""
    from rich.console import Console

    from evalsuite.cli.common import shown
    from evalsuite.errors import ConfigError
    from evalsuite.report import build_report

    if item_texts not in ("auto", "all", "none"):
        raise ConfigError(f"--item-texts {shown(item_texts)}: choose auto, all or none")
    index = build_report(run_dirs, out if out is not None else run_dirs[0] / "report", paper=paper, compare=compare,
                         item_texts=item_texts)  # type: ignore[arg-type]
    Console().print(f"report: {shown(str(index.resolve()))}", soft_wrap=True, highlight=False)
