"""The `evalsuite` command. Every user-facing error ends as one line on stderr and exit code 2."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from evalsuite import __version__
from evalsuite.cli import models as models_cli
from evalsuite.cli import study as study_cli
from evalsuite.cli import train as train_cli
from evalsuite.cli.evaluate import data_app, evaluate, score
from evalsuite.cli.generate import generate
from evalsuite.cli.perturb import perturb
from evalsuite.cli.report import report
from evalsuite.cli.run import merge, run
from evalsuite.errors import EvalsuiteError

app = typer.Typer(
    help="evalsuite: WIT loss grids, DPO on every cell, and robustness evaluation of instruction-tuned LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_cli.app, name="models")
app.add_typer(train_cli.app, name="train")
app.add_typer(data_app, name="data")
app.add_typer(study_cli.app, name="study")
app.command("generate")(generate)
app.command("eval")(evaluate)
app.command("score")(score)
app.command("perturb")(perturb)
app.command("run")(run)
app.command("merge")(merge)
app.command("report")(report)
app.command("demo")(study_cli.demo)


def _version(value: bool) -> None:
    if value:
        print(f"evalsuite {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs (vLLM, transformers).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    _configure_logging(verbose)


def _configure_logging(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main() -> None:
    """Run the CLI. Every error the user can fix (a bad flag as much as a bad file) ends as one
    `evalsuite: error: ...` line on stderr and exit code 2, with nothing half-written."""
    try:
        from typer._click import exceptions as click_errors  # typer >= 0.2x carries its own click
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click_errors

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # `evalsuite` or a group alone: its help, as usual
        print(exc.format_message(), file=sys.stderr)
        sys.exit(2)
    except click_errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "evalsuite"
        fail(f"{exc.format_message()} (see `{command} --help`)")
    except (click_errors.ClickException, EvalsuiteError) as exc:
        fail(exc.format_message() if isinstance(exc, click_errors.ClickException) else str(exc))
    except (KeyboardInterrupt, typer.Abort):
        print("evalsuite: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str) -> None:
    """One line, whatever the message held (a path or a server reply may carry newlines)."""
    print(f"evalsuite: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)
