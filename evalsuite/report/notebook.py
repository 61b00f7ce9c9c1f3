"""The DPO plasticity notebook's plumbing: showing a table or figure from a notebook cell with its numbers
attached as data, reading those numbers back from an executed notebook, and executing the notebook against run
folders (papermill, parameters `RUN_DIRS`) into an .ipynb and an HTML page.

`show` displays a table as HTML (escaped: experiment names are user text) and plain text, and attaches the
same numbers as JSON under `MIME`, keyed by a name: viewers that do not know that type ignore it, while tests
and tools read the figures back exactly (`shown`) instead of parsing printed text.

    python -m evalsuite.report.notebook [RUN_DIR ...] [--out reports/notebooks] [--no-html]
    make notebook RUN=DIR                              (the same, from the repository root)
    python -m evalsuite.report.notebook --out notebooks --no-html   (refresh the committed notebook)

The notebook's source of truth is `notebooks/dpo_plasticity.py` (jupytext percent format) in the repository;
`notebooks/dpo_plasticity.ipynb` is the same notebook executed on the paper's grids, committed with outputs.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

MIME = "application/vnd.evalsuite.table+json"
ROOT = Path(__file__).resolve().parents[2]
# notebooks/dpo_plasticity.py, through a link among the package's data, so an installed evalsuite has it too
SOURCE = Path(__file__).parent / "templates" / "dpo_plasticity.py"
KERNEL = "python3"
FIGURE_DPI = 80  # committed notebooks carry their PNGs: small, but every printed cell value stays legible


def _native(value: Any) -> Any:
    """Python values for JSON: numpy scalars as Python ones, tuples as lists, keys as text."""
    if isinstance(value, (list, tuple)):
        return [_native(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _native(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def payload(table: "pd.DataFrame | Mapping[str, Any]") -> Any:
    """What `show` attaches: a table's rows as records, a mapping as itself, as valid JSON values: NaN and
    infinities (an unbounded interval) as None, as every record evalsuite writes (`paths.json_safe`), since a
    notebook is JSON that other tools parse strictly."""
    from evalsuite.paths import json_safe

    return json_safe(_native(dict(table) if isinstance(table, Mapping) else table.to_dict("records")))


def bundle(name: str, table: "pd.DataFrame | Mapping[str, Any]", *, decimals: int = 2,
           caption: str | None = None) -> dict[str, Any]:
    """The display bundle `show` sends: HTML (every value and name escaped) and plain text of `table` (a
    DataFrame, or a mapping shown as a two-column table) rounded to `decimals`, plus its unrounded numbers under
    `MIME` as {"name": name, "data": ...}."""
    import pandas as pd

    frame = (pd.DataFrame({"figure": list(table), "value": [_shown_value(v, decimals) for v in table.values()]})
             if isinstance(table, Mapping) else table)
    shown_frame = frame.round(decimals) if len(frame) else frame
    table_html = shown_frame.to_html(index=False, escape=True, na_rep="n/a",
                                     float_format=lambda v: f"{v:.{decimals}f}")
    html = (f"<p><b>{_escape(caption)}</b></p>" if caption else "") + table_html
    text = shown_frame.to_string(index=False, na_rep="n/a") if len(frame) else "(no rows)"
    return {"text/html": html, "text/plain": text, MIME: {"name": name, "data": payload(table)}}


def show(name: str, table: "pd.DataFrame | Mapping[str, Any]", *, decimals: int = 2,
         caption: str | None = None) -> None:
    """Display `table` in the notebook (see `bundle`)."""
    from IPython.display import display

    display(bundle(name, table, decimals=decimals, caption=caption), raw=True)


def _shown_value(value: Any, decimals: int) -> str:
    """One figure of a mapping as text: counts as integers, other numbers rounded, NaN as n/a."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{decimals}f}"


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def show_figure(fig: "Figure", dpi: int = FIGURE_DPI) -> None:
    """Display a matplotlib Figure as PNG, whatever matplotlib backend the kernel has (the report's figures are
    built without pyplot)."""
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    display(Image(buffer.getvalue()))


def shown(notebook: Any) -> dict[str, Any]:
    """name → data of every `show` output of an executed notebook (a path or an nbformat node)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    out: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MIME in data:
                record = data[MIME]
                out[record["name"]] = record["data"]
    return out


def read_source(source: Path = SOURCE) -> Any:
    """The notebook as an nbformat node from its jupytext percent-format source."""
    import jupytext

    if not Path(source).is_file():
        raise FileNotFoundError(f"notebook source {source} not found: run from a checkout of the evalsuite "
                                "repository (the notebook lives in notebooks/, not in the installed package)")
    return jupytext.read(str(source))


def execute(run_dirs: Sequence[Path], out_dir: Path, *, source: Path = SOURCE, name: str | None = None,
            html: bool = True, timeout: int = 1800) -> tuple[Path, Path | None]:
    """Execute the notebook with `RUN_DIRS` = `run_dirs` (none: the paper's grids only) into
    `out_dir/NAME.ipynb` and, unless `html` is False, `out_dir/NAME.html`. NAME: `name`, else "dpo_plasticity"
    plus the first run folder's name. A cell that raises stops the run with papermill's error naming it; the
    partial notebook is still written for inspection."""
    import nbformat
    import papermill

    from evalsuite.paths import atomic_write, ensure_output_dir
    from evalsuite.run.records import check_run

    for d in run_dirs:  # a wrong folder is a one-line error here, not a traceback from inside the kernel
        check_run(Path(d))
    runs = [str(Path(d).expanduser().resolve()) for d in run_dirs]
    stem = name or ("dpo_plasticity" + (f"-{Path(runs[0]).name}" if runs else ""))
    out_dir = ensure_output_dir(Path(out_dir))
    ipynb = out_dir / f"{stem}.ipynb"
    with tempfile.TemporaryDirectory() as tmp:  # papermill records a path given, but a whole node passed in
        unexecuted = Path(tmp) / f"{stem}.ipynb"
        nbformat.write(read_source(source), str(unexecuted))
        papermill.execute_notebook(str(unexecuted), str(ipynb), parameters={"RUN_DIRS": runs},
                                   kernel_name=KERNEL, progress_bar=False, execution_timeout=timeout,
                                   cwd=str(Path(source).parent))
    executed = nbformat.read(str(ipynb), as_version=4)
    executed.metadata["papermill"].update(input_path=_shown_path(Path(source)), output_path=ipynb.name)
    atomic_write(ipynb, nbformat.writes(executed))
    page = atomic_write(out_dir / f"{stem}.html", render_html(ipynb)) if html else None
    return ipynb, page


def _shown_path(path: Path) -> str:
    """`path` relative to the repository where it is in it (no machine's folder layout in a committed file)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def render_html(ipynb: Path) -> str:
    """An executed notebook as one HTML page: nbconvert's lab template, inputs shown, nothing loaded from the
    network (see templates/notebook_offline.html.j2)."""
    import nbformat
    from nbconvert import HTMLExporter

    templates = Path(__file__).parent / "templates"
    exporter = HTMLExporter(template_name="lab", template_file=str(templates / "notebook_offline.html.j2"))
    body, _ = exporter.from_notebook_node(nbformat.read(str(ipynb), as_version=4))
    return body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalsuite.report.notebook",
                                     description="Execute the DPO plasticity notebook on run folders.")
    parser.add_argument("run_dirs", nargs="*", type=Path, help="evalsuite run folders (none: the paper's grids)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "notebooks")
    parser.add_argument("--no-html", action="store_true", help="write the executed .ipynb only")
    args = parser.parse_args(argv)
    from evalsuite.errors import ConfigError

    try:
        ipynb, page = execute(args.run_dirs, args.out, html=not args.no_html)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"notebook: {ipynb}" + (f"\nhtml: {page}" if page else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
