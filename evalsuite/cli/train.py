"""`evalsuite train sft|grid`: WIT fine-tuning of one (λp, λr) cell or a grid of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="Fine-tune with the WIT loss: one cell (sft) or a (λp, λr) grid (grid).", no_args_is_help=True)
console = Console()

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML run config (see README).")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output root (overrides output_dir).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Retrain finished cells and discard interrupted runs.")]
OverridesArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="Config overrides KEY=VALUE, e.g. lambda_p=0.2 training.learning_rate=1e-5 dataset.limit=100"),
]


def _log(msg: str) -> None:
    console.print(escape(msg), soft_wrap=True)


def _load(config: Path | None, out: Path | None, overrides: list[str] | None):
    from evalsuite.training.config import load_sft_config

    extra = list(overrides or [])
    if out is not None:
        extra.append(f"output_dir={out}")
    return load_sft_config(config, extra)


def _summary(results: list) -> None:
    table = Table("cell", "status", "final loss", "steps", "tokens", "wall s")
    table.add_column("path", overflow="fold")
    for r in results:
        m = r.manifest.metrics
        table.add_row(r.path.name, "skipped" if r.skipped else "trained", f"{m.get('final_loss') or 0:.4f}",
                      str(m.get("steps")), str(m.get("tokens_seen")), str(m.get("wall_time_s")), escape(str(r.path)))
    console.print(table)


@app.command("sft")
def sft(
    config: ConfigOpt = None,
    out: OutOpt = None,
    lambda_p: Annotated[Optional[float], typer.Option("--lambda-p", help="Prompt-token weight λp in [0, 1].")] = None,
    lambda_r: Annotated[Optional[float], typer.Option("--lambda-r", help="Response-token weight λr in [0, 1].")] = None,
    force: ForceOpt = False,
    overrides: OverridesArg = None,
) -> None:
    """Train one cell into OUT/sft/lp{λp}_lr{λr}/ (skipped if done, resumed if interrupted)."""
    from evalsuite.training.sft import train_cell

    extra = list(overrides or [])
    extra += [f"lambda_p={lambda_p}"] if lambda_p is not None else []
    extra += [f"lambda_r={lambda_r}"] if lambda_r is not None else []
    _summary([train_cell(_load(config, out, extra), force=force, log=_log)])


@app.command("grid")
def grid(
    config: ConfigOpt = None,
    out: OutOpt = None,
    cells: Annotated[Optional[str], typer.Option(
        "--cells", help="Cells as LP:LR, comma-separated (default: the paper's 35 cells, λp, λr ∈ {0,.2,..,1} minus 0:0).")] = None,
    force: ForceOpt = False,
    overrides: OverridesArg = None,
) -> None:
    """Train every cell of the grid; finished cells are skipped, an interrupted one resumes."""
    from evalsuite.training.config import paper_grid, parse_cells
    from evalsuite.training.sft import train_grid

    run = _load(config, out, overrides)
    chosen = parse_cells(cells) if cells else paper_grid()
    _summary(train_grid(run, chosen, force=force, log=_log))
