"""`evalsuite models ...`"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evalsuite.models.embedded import EMBEDDED_MODELS

app = typer.Typer(help="Prepare and list models.", no_args_is_help=True)
console = Console()


@app.command("prepare")
def prepare(
    model: Annotated[str, typer.Argument(help="Embedded model name (see `evalsuite models list`), a .gguf file, or an HF checkpoint dir.")],
    dest: Annotated[Optional[Path], typer.Option("--dest", "-d", help="Output dir (default: the evalsuite model cache).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Saved dtype: fp32 | bf16.")] = "fp32",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if a verified copy exists; replace --dest.")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code")] = False,
) -> None:
    """Convert a model to a verified Hugging Face safetensors checkpoint (cached; re-runs are instant)."""
    from evalsuite.models.prepare import prepare_model

    start = time.perf_counter()
    prepared = prepare_model(model, dest, dtype, force=force, trust_remote_code=trust_remote_code)  # type: ignore[arg-type]
    what = "cached, verified earlier" if prepared.cached else "converted and verified (saved logits == source logits)"
    # soft_wrap: a path must stay on one line, whatever the terminal width, so it can be copied.
    console.print(f"[green]{escape(str(prepared.path))}[/green]  ({what}, {time.perf_counter() - start:.1f}s)", soft_wrap=True)


@app.command("list")
def list_models() -> None:
    """List the models embedded in installed packages."""
    table = Table("name", "package", "description")
    for m in EMBEDDED_MODELS.values():
        table.add_row(m.name, m.pip_name, m.description)
    console.print(table)
