"""`evalsuite study --config STUDY.yaml [--executor local|ray|slurm] [--dry-run]` and `evalsuite study status DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evalsuite.cli.common import shown

# wide enough for a unit's id on one line, in a terminal or a log file
console = Console(width=max(Console().width, 150))
app = typer.Typer(help="The whole study as one resumable graph: SFT cells -> DPO -> evaluation -> report, run "
                       "locally, on a Ray cluster or on SLURM.", invoke_without_command=True, no_args_is_help=False)


def _log(message: str) -> None:
    console.print(shown(message), soft_wrap=True, highlight=False)


@app.callback()
def study(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="The study file (see configs/).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The study folder (default: the file's out:, else reports/study/<name>).")] = None,
    executor: Annotated[str, typer.Option("--executor", "-e", help="local (in this process) | ray | slurm (submitit).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster address (default: the file's ray.address, else RAY_ADDRESS, else a local cluster).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the units, their state and resources; run nothing.")] = False,
    redo_changed: Annotated[bool, typer.Option("--redo-changed", help="Redo units done with other settings than the file's now.")] = False,
) -> None:
    """Run every unit of the study not done yet (a re-run skips finished units and resumes interrupted ones), then
    print where the report is. Exit code 1 when a unit failed, 2 for bad input."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("--config is required (or use `evalsuite study status DIR`)", param_hint="--config")
    from evalsuite.study.config import load_study
    from evalsuite.study.driver import prepare, rows, run_study
    from evalsuite.study.graph import done_record

    plan = prepare(load_study(config), out)
    if dry_run:
        table = rows(plan)
        console.print(status_table(plan, table))
        if any(r.state == "changed" for r in table):
            console.print("[magenta]units done with other settings block a run: --redo-changed redoes them[/magenta]")
        return
    outcome = run_study(plan, executor, redo_changed=redo_changed, log=_log, address=ray_address)
    table = rows(plan)
    console.print(status_table(plan, table))
    failed = {u: o for u, o in outcome.items() if o != "ok"}
    for row in table:
        record = done_record(plan, row.unit) or {}
        if row.state == "partial" and record.get("failed"):
            failed[row.unit.id] = f"{record['failed']} benchmark(s) failed (in the report; a re-run retries them)"
    for unit, why in failed.items():
        console.print(f"[bold red]{escape(unit)}[/bold red]: {shown(why)}", soft_wrap=True)
    index = plan.folder / "report" / "index.html"
    if index.is_file():
        console.print(f"[bold green]Report:[/bold green] {escape(str(index))}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command("status")
def status(folder: Annotated[Path, typer.Argument(help="A study folder.")]) -> None:
    """The units of a running or finished study: state, resources, and what each one recorded."""
    from evalsuite.study.driver import rows
    from evalsuite.study.graph import open_study

    plan = open_study(folder)
    console.print(status_table(plan, rows(plan)))


def status_table(plan, table) -> Table:
    from evalsuite.study.driver import resources_text, summary
    from evalsuite.study.graph import done_record

    out = Table("kind", "state", "resources", title=f"{plan.folder} ({summary(table)})")
    out.columns.insert(0, __import__("rich.table", fromlist=["Column"]).Column("unit", overflow="fold", min_width=24))
    out.add_column("notes", overflow="fold")
    colour = {"done": "green", "running": "cyan", "partial": "yellow", "changed": "magenta", "to do": "white"}
    for row in table:
        note = ""
        record = done_record(plan, row.unit) or {}
        if record.get("key") == row.unit.key:
            note = f"{record.get('seconds', 0):.0f}s on {record.get('host', '?')}"
            if record.get("attempts", 1) > 1:
                note += f", {record['attempts']} attempts"
            if record.get("failed"):
                note += f", {record['failed']} benchmark(s) failed: a re-run retries them"
        elif row.state == "running":
            try:
                held = json.loads(plan.record(row.unit, ".running").read_text())
                note = f"{held.get('host')} pid {held.get('pid')}"
            except (OSError, ValueError):
                pass
        elif row.state == "changed":
            note = "done with other settings (--redo-changed)"
        out.add_row(escape(row.unit.id), row.unit.kind, f"[{colour[row.state]}]{row.state}[/]",
                    resources_text(row.unit), shown(note))
    return out
