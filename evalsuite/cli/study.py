"""`evalsuite study --config STUDY.yaml [--executor local|ray|slurm] [--dry-run]` and `evalsuite study status DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from evalsuite.cli.common import shown

if TYPE_CHECKING:
    import pandas as pd

# wide enough for a unit's id on one line, in a terminal or a log file
console = Console(width=max(Console().width, 150))
app = typer.Typer(help="The whole study as one resumable graph: SFT cells -> DPO -> evaluation -> report, run "
                       "locally, on a Ray cluster or on SLURM.", invoke_without_command=True, no_args_is_help=False)


def _log(message: str) -> None:
    console.print(shown(message), soft_wrap=True, highlight=False)


Overrides = Annotated[Optional[list[str]], typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a key of the study file (repeatable): eval.run.limit=2, sft.training.max_steps=4.")]
Executor = Annotated[str, typer.Option("--executor", "-e", help="local (in this process) | ray | slurm (submitit).")]
RayAddress = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster address (default: the file's ray.address, else RAY_ADDRESS, else a local cluster).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the units, their state and resources; run nothing.")]
RedoChanged = Annotated[bool, typer.Option("--redo-changed", help="Redo units done with other settings than the file's now.")]


@app.callback()
def study(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="The study file (see configs/).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The study folder (default: the file's out:, else reports/study/<name>).")] = None,
    overrides: Overrides = None,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    dry_run: DryRun = False,
    redo_changed: RedoChanged = False,
) -> None:
    """Run every unit of the study not done yet (a re-run skips finished units and resumes interrupted ones), then
    print where the report is. Exit code 1 when a unit failed, 2 for bad input."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("--config is required (or use `evalsuite study status DIR`)", param_hint="--config")
    drive(config, overrides or [], out, executor, ray_address, dry_run, redo_changed)


def demo(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The study folder (default: reports/demo).")] = None,
    overrides: Overrides = None,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    dry_run: DryRun = False,
    redo_changed: RedoChanged = False,
) -> None:
    """The study in miniature on the embedded model (`evalsuite study --config` the packaged demo file,
    configs/demo.yaml): 4 WIT cells, DPO on each, MMLU / BBH / IFEval subsets clean and perturbed, the report and
    the DPO plasticity notebook. A re-run reuses everything done."""
    from evalsuite.study.config import demo_config

    drive(demo_config(), overrides or [], out, executor, ray_address, dry_run, redo_changed)


def drive(config: Path, overrides: list[str], out: Optional[Path], executor: str, ray_address: Optional[str],
          dry_run: bool, redo_changed: bool) -> None:
    """Load the study file, then print its plan (`--dry-run`) or run it and print its units, an overview of the
    results and where the report (and notebook) are."""
    from evalsuite.study.config import load_study
    from evalsuite.study.driver import prepare, rows, run_study
    from evalsuite.study.graph import done_record

    plan = prepare(load_study(config, overrides), out)
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
    if (plan.folder / "run" / "results.parquet").is_file():
        from evalsuite.run.results import load_results

        console.print(overview_table(load_results(plan.folder / "run")))
    report = done_record(plan, next(u for u in plan.units if u.kind == "report")) or {}  # what the report unit wrote
    for label, path in (("Notebook", report.get("notebook")), ("Report", report.get("report"))):
        if path and Path(path).is_file():
            console.print(f"[bold green]{label}:[/bold green] {escape(str(path))}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def overview_table(df: "pd.DataFrame") -> Table:
    """One row per checkpoint (a checkpoint that failed whole included): each task's clean score with its 95%
    interval and n, the mean agreement with the clean answers over the perturbation kinds, and what the scores leave
    out (unscored, truncated prompts, skipped variants, failed or skipped tasks)."""
    tasks = sorted(df[df.metric != "status"].task.dropna().unique())
    table = Table(Column("checkpoint", no_wrap=True), *(f"{t} (clean)" for t in tasks), "agreement",
                  title="clean score [95% CI] n; agreement: the clean answer kept under perturbation (mean over kinds)")
    table.add_column("left out", overflow="fold")
    order = df.sort_values(["experiment", "stage", "lambda_p", "lambda_r"], key=_stage_order, na_position="first")
    names = list(dict.fromkeys(order.checkpoint.dropna()))
    short = {n: "/".join(n.split("/")[-2:]) for n in names}  # stage/cell; whole names where two grids share one
    label = short if len(set(short.values())) == len(names) else {n: n for n in names}
    for name in names:
        rows = df[df.checkpoint == name]
        agreement = rows[(rows.condition != "clean") & (rows.metric == "agreement")].value
        table.add_row(shown(label[name]), *(_clean_score(rows, task) for task in tasks),
                      "-" if agreement.empty else f"{agreement.mean():.2f}", ", ".join(_left_out(rows)) or "-")
    return table


def _clean_score(rows: "pd.DataFrame", task: str) -> str:
    score = rows[(rows.task == task) & (rows.condition == "clean") & (rows.metric == "score")]
    return "-" if score.empty else "{:.2f} [{:.2f}, {:.2f}] {:.0f}".format(*score.iloc[0][["value", "low", "high", "n"]])


def _left_out(rows: "pd.DataFrame") -> list[str]:
    counts = [(int(rows[rows.metric == m].value.sum()), what) for m, what in
              (("unscored", "unscored"), ("truncated_requests", "truncated prompts"), ("skipped_variants", "variants skipped"))]
    status = rows[rows.metric == "status"].status.fillna("ok")
    counts += [(int(status.str.startswith(s).sum()), f"{s} (see the report's status table)") for s in ("failed", "skipped")]
    return [f"{n} {what}" for n, what in counts if n]


def _stage_order(column: "pd.Series") -> "pd.Series":
    """Sort key: base, then SFT, then DPO cells (each by λp, λr)."""
    return column.map({"base": 0, "sft": 1, "dpo": 2}).fillna(3) if column.name == "stage" else column


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
    out.columns.insert(0, Column("unit", overflow="fold", min_width=24))
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
