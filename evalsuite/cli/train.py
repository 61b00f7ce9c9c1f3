"""`evalsuite train sft|grid|dpo`: WIT fine-tuning of one (λp, λr) cell or a grid, and DPO on SFT cells."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evalsuite.errors import ConfigError
from evalsuite.paths import ensure_output_dir

app = typer.Typer(help="Fine-tune with the WIT loss (sft: one cell, grid: a (λp, λr) grid), then DPO on each cell (dpo).",
                  no_args_is_help=True)
console = Console()

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML run config (see docs/cli.md).")]
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


def _writable(output_dir: Path, out: Path | None) -> None:
    """Fail in one line before any model loads when the output folder cannot be written."""
    ensure_output_dir(output_dir, "--out" if out is not None else "output_dir")


def _summary(results: list) -> None:
    # The last logged step loss for both stages (`train_loss` is the mean over the run); "-" when not recorded.
    table = Table("cell", "stage", "status", "final loss", "steps", "reward acc", "reward margin", "wall s")
    table.add_column("path", overflow="fold")

    def fmt(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)

    for r in results:
        m = r.manifest.metrics
        table.add_row(r.path.name, r.manifest.stage, "skipped" if r.skipped else "trained",
                      fmt(m.get("final_loss")), fmt(m.get("steps")), fmt(m.get("reward_accuracy")),
                      fmt(m.get("reward_margin")), fmt(m.get("wall_time_s")), escape(str(r.path)))
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
    extra = list(overrides or [])
    extra += [f"lambda_p={lambda_p}"] if lambda_p is not None else []
    extra += [f"lambda_r={lambda_r}"] if lambda_r is not None else []
    run = _load(config, out, extra)
    _writable(run.output_dir, out)
    from evalsuite.training.sft import train_cell  # torch and transformers: only once the input is known good

    _summary([train_cell(run, force=force, log=_log)])


@app.command("grid")
def grid(
    config: ConfigOpt = None,
    out: OutOpt = None,
    cells: Annotated[Optional[str], typer.Option(
        "--cells", help="Cells as LP:LR, comma-separated (default: the paper's 35 cells, λp, λr ∈ {0,.2,..,1} minus 0:0).")] = None,
    dpo: Annotated[bool, typer.Option("--dpo", help="Then run DPO on every cell (OUT/dpo/<cell>/).")] = False,
    dpo_config: Annotated[Optional[Path], typer.Option(
        "--dpo-config", help="YAML DPO config (implies --dpo); override its keys as dpo.KEY=VALUE.")] = None,
    force: ForceOpt = False,
    overrides: OverridesArg = None,
) -> None:
    """Train every cell of the grid (then DPO on each with --dpo); finished cells are skipped, an interrupted
    one resumes."""
    from evalsuite.training.config import load_run_config, paper_grid, parse_cells
    from evalsuite.training.dpo import DPORunConfig, train_dpo_grid

    sft_over, dpo_over = split_dpo_overrides(overrides)
    if dpo_over and not (dpo or dpo_config):
        raise ConfigError("dpo.KEY=VALUE overrides need --dpo or --dpo-config")
    run = _load(config, out, sft_over)
    dpo_run = None
    if dpo or dpo_config:  # validated before any training, so a DPO config typo costs nothing
        dpo_run = load_run_config(DPORunConfig, dpo_config, dpo_over)
        if "output_dir" not in dpo_run.model_fields_set or out is not None:
            dpo_run = dpo_run.model_copy(update={"output_dir": run.output_dir})
    chosen = parse_cells(cells) if cells else paper_grid()
    _writable(run.output_dir, out)
    if dpo_run is not None:
        _writable(dpo_run.output_dir, out)
    from evalsuite.training.sft import train_grid  # torch and transformers: only once the input is known good

    results = train_grid(run, chosen, force=force, log=_log)
    if dpo_run is not None:
        results += train_dpo_grid(dpo_run, run.output_dir, chosen, force=force, log=_log)
    _summary(results)


def split_dpo_overrides(overrides: list[str] | None) -> tuple[list[str], list[str]]:
    """`dpo.KEY=VALUE` goes to the DPO config (prefix stripped), everything else to the SFT config."""
    sft, dpo = [], []
    for item in overrides or []:
        if item.startswith("dpo."):
            dpo.append(item.removeprefix("dpo."))
        else:
            sft.append(item)
    return sft, dpo


@app.command("dpo")
def dpo(
    from_dir: Annotated[Path, typer.Option("--from", help="OUT/sft (or OUT) holding the SFT cells; DPO cells go to OUT/dpo unless --out.")],
    config: ConfigOpt = None,
    out: OutOpt = None,
    cells: Annotated[Optional[str], typer.Option("--cells", help="Cells as LP:LR, comma-separated (default: all).")] = None,
    force: ForceOpt = False,
    overrides: OverridesArg = None,
) -> None:
    """DPO (TRL) on every SFT cell with the same data, settings and seed -> OUT/dpo/<cell>/."""
    from evalsuite.training.config import load_run_config, parse_cells
    from evalsuite.training.dpo import DPORunConfig, sft_root, train_dpo_grid

    extra = list(overrides or []) + ([f"output_dir={out}"] if out is not None else [])
    run = load_run_config(DPORunConfig, config, extra)
    if "output_dir" not in run.model_fields_set:  # default: beside the SFT cells, OUT/sft -> OUT/dpo
        run = run.model_copy(update={"output_dir": sft_root(from_dir).parent})
    chosen = parse_cells(cells) if cells else None
    _writable(run.output_dir, out)
    _summary(train_dpo_grid(run, from_dir, chosen, force=force, log=_log))
