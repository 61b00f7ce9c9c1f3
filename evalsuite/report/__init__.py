"""The λ-grid study as an offline HTML report and paper-style figures (`evalsuite report`).

`build_report(run_dirs, out, paper=None, compare=None, item_texts="auto") -> Path` writes OUT/index.html and what it links; see
`evalsuite.report.html`. The submodules (encoding, figures, tables, items) import matplotlib and pandas lazily,
so importing this package stays cheap for the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["build_report"]


def build_report(run_dirs: Sequence[Path], out: Path, paper: str | None = None, compare: Path | None = None,
                 item_texts: str = "auto") -> Path:
    """See `evalsuite.report.html.build_report`."""
    from evalsuite.report.html import build_report as build

    return build(run_dirs, out, paper=paper, compare=compare, item_texts=item_texts)  # type: ignore[arg-type]
