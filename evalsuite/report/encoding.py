"""The paper's λ-grid heatmap encoding, shared by the static figures and the HTML report.

One module decides every colour, label and number format so that the browser shows exactly the colours
of the matplotlib figures (and of the WIT paper's PDF, whose vector fills this reproduces):

* colour: ``RdYlGn`` through ``matplotlib.colors.TwoSlopeNorm(vcenter=0, vmin=min gain, vmax=max gain)``
  over the *trained* cells only (the (0, 0) Base cell is excluded from the normalisation and stays
  uncoloured). Each side of 0 is stretched to its own extreme; a symmetric or linear scale does not
  reproduce the paper.
* text: every cell prints its absolute value (2 decimals, POSIX 3), dark or white by the fill's luminance;
  (0, 0) reads "Base:" (in red), (0, 1) reads "IT:".

matplotlib is imported lazily (inside functions, once) so that importing this module stays cheap for the
CLI; colouring is vectorised with numpy, so tens of thousands of cells take milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

# Cell = (λp, λr); the base model sits at BASE_CELL (0, 0) (shown, never coloured); REFERENCE_CELL (0, 1) is
# conventional completion-only tuning, the reference all gains are taken against. One definition, in analysis
# (a light module: no pandas at import); re-exported here.
from evalsuite.analysis.frame import BASE_CELL, REFERENCE_CELL, Cell

# names and orders the index page, the item pages and the figures share
STAGE_LABELS = {"base": "Base", "hf": "HF", "sft": "SFT", "dpo": "DPO", "delta": "ΔDPO (DPO − SFT)"}
CONDITION_ORDER = ("clean", "typo", "rephrase", "format", "template")


def condition_key(name: str) -> tuple[int, str]:
    """Sort key: clean, then the perturbation kinds in their usual order, then anything else by name."""
    return (CONDITION_ORDER.index(name), "") if name in CONDITION_ORDER else (len(CONDITION_ORDER), name)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

CMAP_NAME = "RdYlGn"

EPSILON = 1e-9
"""Stand-in extreme (in gain units, i.e. percent) when every gain lies on one side of 0.

``TwoSlopeNorm`` needs vmin < 0 < vmax. With all gains ≥ 0 we use vmin = −EPSILON, so 0 maps to the
yellow centre and the positive side keeps its own stretch (the grid is all ≥ yellow); symmetrically for
all ≤ 0. All gains equal to 0 gives vmin = −EPSILON, vmax = +EPSILON: everything is the yellow centre.
"""

BASE_FILL = "#ffffff"
"""Fill of the uncoloured Base cell (white, as in the paper)."""

MISSING_FILL = "#d9d9d9"
"""Fill of a cell that exists but has no finite value/gain (failed, not scored): light grey, text "n/a"."""

EMPTY_FILL = "none"
"""A lattice position with no checkpoint at all (sparse grids): drawn empty, no text."""

BASE_LABEL_COLOR = "#d62728"
"""The paper prints "Base:" in red."""

BEST_MARKER_COLOR = "#d62728"
"""Red circle on the best cell(s)."""

SFT_BEST_MARKER_COLOR = "#1f77b4"
"""Blue square on the SFT-best cell of a DPO grid."""

NOT_SIGNIFICANT_MARK = "≈"
"""Printed in the corner of a cell not significantly different from (0, 1) (p ≥ SIGNIFICANCE_LEVEL)."""

NOT_SIGNIFICANT_LEGEND = "≈ not significantly different from IT (0, 1), p ≥ 0.05"

SIGNIFICANCE_LEVEL = 0.05

PARTIAL_HATCH = "////"
"""Hatch over a cell whose value is shown but some of its items failed or could not be scored (partial)."""

PARTIAL_LEGEND = "hatched: some items failed or could not be scored"

DARK_TEXT = "#000000"
LIGHT_TEXT = "#ffffff"

LABELS: dict[Cell, str] = {BASE_CELL: "Base:", REFERENCE_CELL: "IT:"}
"""Prefix printed before the value in the two special cells."""

NA_TEXT = "n/a"

_HEX_BYTES = tuple(f"{i:02x}" for i in range(256))


@lru_cache(maxsize=1)
def colormap() -> Any:
    """The ``RdYlGn`` colormap object (cached: looking it up copies it)."""
    from matplotlib import colormaps

    return colormaps[CMAP_NAME]


def norm_limits(gains: Iterable[float]) -> tuple[float, float]:
    """(vmin, vmax) for ``TwoSlopeNorm(vcenter=0)`` over finite gains, with the degenerate cases made valid.

    No finite gain at all gives (−EPSILON, EPSILON). See :data:`EPSILON` for the one-sided cases.
    """
    finite = [g for g in gains if g is not None and math.isfinite(g)]
    vmin = min(finite) if finite else 0.0
    vmax = max(finite) if finite else 0.0
    return (vmin if vmin < 0 else -EPSILON, vmax if vmax > 0 else EPSILON)


def _hex_rows(rgba: Any) -> list[str]:
    """``matplotlib.colors.to_hex`` for an (n, 4) float array, vectorised (same round-half-even rounding)."""
    import numpy as np

    ints = np.round(np.asarray(rgba, dtype=float)[:, :3] * 255).astype(np.int64).tolist()
    h = _HEX_BYTES
    return ["#" + h[r] + h[g] + h[b] for r, g, b in ints]


def colors_for(values: Any, vmin: float, vmax: float) -> list[str]:
    """Hex colours of ``values`` under ``TwoSlopeNorm(0, vmin, vmax)`` + RdYlGn (NaN → MISSING_FILL).

    Exposed so a caller can colour several grids on one shared scale (e.g. a comparison).
    """
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size == 0:
        return []
    bad = ~np.isfinite(arr)
    normed = np.asarray(TwoSlopeNorm(vcenter=0.0, vmin=vmin, vmax=vmax)(np.where(bad, 0.0, arr)), dtype=float)
    out = _hex_rows(colormap()(normed))
    if bad.any():
        for i in np.flatnonzero(bad).tolist():
            out[i] = MISSING_FILL
    return out


def cell_colors(gains: Mapping[Cell, float], base: Optional[Cell] = BASE_CELL) -> dict[Cell, str]:
    """Fill colour ("#rrggbb") of every trained cell with a finite gain.

    ``gains``: relative gain in percent, positive = better (for POSIX and other lower-is-better metrics the
    caller passes (ref − v)/|ref|, so green is always better). The ``base`` cell (default (0, 0); None when
    the grid has no base) is excluded from the normalisation and from the result: it is uncoloured.
    Cells whose gain is None/NaN/±inf are also left out (render them with :data:`MISSING_FILL`), and they do
    not enter the normalisation. Degenerate grids never raise: see :func:`norm_limits`. A single trained cell
    is coloured by its own sign (0 → yellow centre, >0 → darkest green, <0 → darkest red).
    """
    cells = [c for c in gains if c != base]
    vals = [_as_float(gains[c]) for c in cells]
    keep = [(c, v) for c, v in zip(cells, vals) if math.isfinite(v)]
    if not keep:
        return {}
    vmin, vmax = norm_limits(v for _, v in keep)
    hexes = colors_for([v for _, v in keep], vmin, vmax)
    return {c: h for (c, _), h in zip(keep, hexes)}


def fills(
    gains: Mapping[Cell, float], cells: Iterable[Cell], base: Optional[Cell] = BASE_CELL
) -> dict[Cell, str]:
    """A fill for every cell in ``cells``: the coloured ones, BASE_FILL for the base, MISSING_FILL otherwise."""
    colored = cell_colors(gains, base)
    return {c: (BASE_FILL if c == base else colored.get(c, MISSING_FILL)) for c in cells}


def _as_float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _channel(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


@lru_cache(maxsize=4096)
def relative_luminance(hex_color: str) -> float:
    """WCAG 2 relative luminance of "#rrggbb"."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


@lru_cache(maxsize=4096)
def text_color(hex_color: str) -> str:
    """Dark or white text, whichever contrasts more with the fill (WCAG contrast ratio; tie → dark).

    Non-hex fills ("none", named colours) get dark text.
    """
    if not (isinstance(hex_color, str) and len(hex_color) == 7 and hex_color.startswith("#")):
        return DARK_TEXT
    lum = relative_luminance(hex_color)
    contrast_dark = (lum + 0.05) / 0.05
    contrast_light = 1.05 / (lum + 0.05)
    return DARK_TEXT if contrast_dark >= contrast_light else LIGHT_TEXT


def decimals(metric: str) -> int:
    """3 decimals for POSIX (its values are small, ~0.1–2), 2 for everything else (the paper's figures);
    the same rule analysis uses to decide ties (`analysis.decimals_for`)."""
    from evalsuite.analysis.gains import decimals_for

    return decimals_for(str(metric))


def format_value(value: Any, metric: str) -> str:
    """The number printed in a cell: 2 decimals (POSIX 3); None/NaN → "n/a"."""
    v = _as_float(value)
    if not math.isfinite(v):
        return NA_TEXT if math.isnan(v) else ("∞" if v > 0 else "−∞")
    return f"{v:.{decimals(metric)}f}"


def format_gain(gain: Any) -> str:
    """A relative gain for tooltips/tables: signed, 2 decimals, "%"."""
    g = _as_float(gain)
    return NA_TEXT if not math.isfinite(g) else f"{g:+.2f}%"


def cell_label(cell: Cell) -> str:
    """"Base:" for (0, 0), "IT:" for (0, 1), "" otherwise."""
    return LABELS.get(cell, "")


def cell_text(cell: Cell, value: Any, metric: str) -> str:
    """The full text of a cell, e.g. "IT: 28.60"."""
    label = cell_label(cell)
    text = format_value(value, metric)
    return f"{label} {text}" if label else text


def _sorted_axis(values: Iterable[float]) -> list[float]:
    return sorted({float(v) for v in values})


@dataclass
class GridView:
    """Everything needed to draw one λ-grid panel (figure) or HTML heatmap, independent of pandas.

    ``values`` are absolute, on the paper's scale (percent, MT-Bench 1–10, POSIX raw). ``gains`` (percent,
    positive = better) decide the colour. Axes default to the λ values present among ``values``/``gains``:
    a sparse grid (e.g. base + 3 cells) is drawn with only the rows/columns it has, and lattice positions
    without a checkpoint are left empty (not "n/a"), because padding to the paper's 6×6 lattice would make a
    3-cell grid a mostly blank panel while its axis ticks would still not be the paper's values.
    Set ``lambda_p``/``lambda_r`` explicitly to align several panels (SFT, DPO, ΔDPO) on one lattice.
    """

    title: str
    metric: str
    values: dict[Cell, float]
    gains: dict[Cell, float] = field(default_factory=dict)
    base: Optional[Cell] = None
    reference: Cell = REFERENCE_CELL
    best: list[Cell] = field(default_factory=list)
    sft_best: Optional[Cell] = None
    not_significant: set[Cell] = field(default_factory=set)
    n: dict[Cell, float] = field(default_factory=dict)
    low: dict[Cell, float] = field(default_factory=dict)
    high: dict[Cell, float] = field(default_factory=dict)
    failed: dict[Cell, float] = field(default_factory=dict)
    missing: dict[Cell, float] = field(default_factory=dict)
    p: dict[Cell, float] = field(default_factory=dict)
    status: dict[Cell, str] = field(default_factory=dict)
    significance_level: float = SIGNIFICANCE_LEVEL
    lambda_p: list[float] = field(default_factory=list)
    lambda_r: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = {_cell(c): v for c, v in self.values.items()}
        self.gains = {_cell(c): v for c, v in self.gains.items()}
        self.p = {_cell(c): v for c, v in self.p.items()}
        self.status = {_cell(c): v for c, v in self.status.items()}
        if self.base is None and BASE_CELL in self.values:
            self.base = BASE_CELL
        present = set(self.values) | set(self.gains)
        self.lambda_p = _sorted_axis(self.lambda_p or (c[0] for c in present))
        self.lambda_r = _sorted_axis(self.lambda_r or (c[1] for c in present))

    @property
    def cells(self) -> list[Cell]:
        """Cells that exist (have a value or gain), row-major (λp, then λr)."""
        return sorted(set(self.values) | set(self.gains))

    def colors(self) -> dict[Cell, str]:
        """:func:`cell_colors` of this view's gains (Base excluded)."""
        return cell_colors(self.gains, self.base)

    def fills(self) -> dict[Cell, str]:
        """A fill for every existing cell (see :func:`fills`)."""
        return fills(self.gains, self.cells, self.base)

    def partial(self, cell: Cell) -> bool:
        """True when the cell shows a finite value but some of its items failed or could not be scored."""
        v = _as_float(self.values.get(cell))
        if not math.isfinite(v):
            return False
        return any(_as_float(d.get(cell)) > 0 for d in (self.failed, self.missing))

    def partial_cells(self) -> list[Cell]:
        """The :meth:`partial` cells, row-major."""
        return [c for c in self.cells if self.partial(c)]

    def significance(self, cell: Cell) -> str:
        """The verdict of the cell's paired test against IT (0, 1): "p = 0.031 vs IT (0, 1)", "not
        significantly different from IT (p = 0.41)", "not tested: <why>" or "not tested against (0, 1)";
        "" for the reference cell itself, the Base cell, and every cell of a view no test applies to (other metrics
        and conditions than the clean score, ΔDPO, differences between runs)."""
        if cell == self.reference or (self.base is not None and cell == self.base):
            return ""
        if not self.not_significant and not any(math.isfinite(_as_float(v)) for v in self.p.values()):
            why = self.status.get(cell)
            return f"not tested: {why}" if why else ""
        p = _as_float(self.p.get(cell))
        if cell in self.not_significant or (math.isfinite(p) and p >= self.significance_level):
            return f"not significantly different from IT (p = {format_p(p)})" if math.isfinite(p) else \
                f"not significantly different from IT (p ≥ {self.significance_level:g})"
        if math.isfinite(p):
            return f"p = {format_p(p)} vs IT (0, 1)"
        why = self.status.get(cell)
        return f"not tested: {why}" if why else "not tested against (0, 1)"

    def tooltip(self, cell: Cell) -> str:
        """Value, gain, CI, n, failed/missing counts, the failure/skip reason and the significance verdict of
        one cell, as plain text (HTML escapes it)."""
        parts = [f"λp={cell[0]:g}, λr={cell[1]:g}", cell_text(cell, self.values.get(cell), self.metric)]
        if cell in self.gains and cell != self.reference:
            parts.append(f"gain vs IT {format_gain(self.gains[cell])}")
        lo, hi = self.low.get(cell), self.high.get(cell)
        if lo is not None and hi is not None and math.isfinite(_as_float(lo)) and math.isfinite(_as_float(hi)):
            parts.append(f"CI [{format_value(lo, self.metric)}, {format_value(hi, self.metric)}]")
        for name, d in (("n", self.n), ("failed", self.failed), ("missing", self.missing)):
            v = _as_float(d.get(cell))
            if math.isfinite(v):
                parts.append(f"{name}={v:g}")
        status = self.status.get(cell)
        if status and not self.significance(cell).endswith(status):
            parts.append(status)
        verdict = self.significance(cell)
        if verdict:
            parts.append(verdict)
        return "\n".join(parts)


def format_p(p: Any) -> str:
    """A p value for tooltips: 2 significant digits ("0.031", "0.41"), "< 0.001" below 0.001; NaN → "n/a"."""
    v = _as_float(p)
    if not math.isfinite(v):
        return NA_TEXT
    if v < 0.001:
        return "< 0.001"
    return f"{v:.2g}" if v < 1 else "1"


def _cell(c: Any) -> Cell:
    return (float(c[0]), float(c[1]))


def grid_view(
    frame: "pd.DataFrame",
    *,
    title: str,
    metric: Optional[str] = None,
    best: Optional[list[Cell]] = None,
    sft_best: Optional[Cell] = None,
    lambda_p: Optional[list[float]] = None,
    lambda_r: Optional[list[float]] = None,
    significance_level: float = SIGNIFICANCE_LEVEL,
) -> GridView:
    """A GridView from the rows of ONE grid of the analysis "grid frame" (one experiment/stage/benchmark/
    condition/metric).

    Reads columns lambda_p, lambda_r, value, and where present is_base, gain, low, high, n, failed, missing,
    p_vs_0_1 (kept as ``p``; cells with p ≥ ``significance_level`` are marked not significant; NaN p means "not
    tested") and status ("failed: …"/"skipped: …", the reason a cell has no score; kept as ``status``).
    ``best`` defaults to ``analysis.best_cells`` of the rows (ties at the shown precision kept, Base excluded).
    """
    values: dict[Cell, float] = {}
    extra: dict[str, dict[Cell, float]] = {k: {} for k in ("gain", "low", "high", "n", "failed", "missing")}
    not_sig: set[Cell] = set()
    pvals: dict[Cell, float] = {}
    status: dict[Cell, str] = {}
    base: Optional[Cell] = None
    cols = set(frame.columns)
    records = frame.to_dict("records")
    for row in records:
        cell = _cell((row["lambda_p"], row["lambda_r"]))
        values[cell] = _as_float(row.get("value"))
        if "is_base" in cols and bool(row.get("is_base")):
            base = cell
        for k in extra:
            if k in cols:
                v = _as_float(row.get(k))
                if math.isfinite(v) or k == "gain":
                    extra[k][cell] = v
        p = _as_float(row.get("p_vs_0_1")) if "p_vs_0_1" in cols else math.nan
        if math.isfinite(p):
            pvals[cell] = p
            if p >= significance_level:
                not_sig.add(cell)
        st = row.get("status") if "status" in cols else None
        if isinstance(st, str) and st.strip() and st.strip() != "ok":
            status[cell] = st.strip()
    if base is None and BASE_CELL in values and "is_base" not in cols:
        base = BASE_CELL
    if metric is None:
        metric = str(records[0]["metric"]) if records and "metric" in cols else "score"
    gains = extra["gain"]
    if best is None:
        from evalsuite.analysis import LOWER_IS_BETTER, best_cells, decimals_for

        trained = {c: v for c, v in values.items() if c != base}
        best = best_cells(trained, metric in LOWER_IS_BETTER, decimals_for(metric))
    not_sig.discard(REFERENCE_CELL)
    if base is not None:
        not_sig.discard(base)
    return GridView(
        title=title, metric=metric, values=values, gains=gains, base=base, best=list(best),
        sft_best=sft_best, not_significant=not_sig, n=extra["n"], low=extra["low"], high=extra["high"],
        failed=extra["failed"], missing=extra["missing"], p=pvals, status=status,
        significance_level=significance_level, lambda_p=list(lambda_p or []), lambda_r=list(lambda_r or []),
    )
