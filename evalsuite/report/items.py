"""Per-task item pages: the drill-down from a heatmap cell to its items.

One page per task, with its data beside it, so that it opens from disk (a `fetch()` of JSON does not work from
`file://`; a `<script src>` does):

    items/<task>.html           the page (template `items.html.j2`); items.js and items.css beside it
    items/<task>.data.js        the task's index: checkpoints, conditions, item ids, rows, blocks
    items/<task>/c<id>.js       checkpoint <id>: per row its state (right, wrong, scored, unscored, no result),
                                score, answer and truncation: what the outcome filters need
    items/<task>/c<id>-b<j>.js  that checkpoint's responses and judgements for its block j of rows
    items/<task>/p<j>.js        prompts and targets of prompt block j (prompts do not depend on the checkpoint)

A row is one (item, condition, variant), the paired unit of items.parquet. Rows are numbered once per task from
prompts.parquet (items in natural order of their ids, then clean before the kinds, then variants), so one row
number addresses the same prompt in every checkpoint's file. Blocks are runs of whole items of at most about
`BLOCK_BYTES`: a page loads the two small per-row files of the cell and its comparison, then only the blocks of
the items it shows, so no file grows with the benchmark.

Checkpoints are read one at a time (from the run folder's items.parquet when the tables come from `read_run`):
a full grid's responses are gigabytes and are never in memory together.

Every data file is one call `window.EVALSUITE_ITEMS_PUSH(key, object, blobs)`. Typed columns and strings (UTF-8
bytes with their byte lengths) are base64 blobs the object refers to as `{"$b": index, "t": type}`. Not JSON
arrays: `json.dumps` of millions of strings was the slowest step at the paper's scale (~11M rows), while an Arrow
string column already is one byte buffer plus offsets, which base64 carries with no Python object per value.
Base64 cannot end a script; everything else is `json.dumps` with `<` written `\\u003c` (no `</script>`), and the
page sets data with `textContent` only. Prompts, responses and judgements are cut at `CAP` characters with a
visible mark saying where the full text is. Identical inputs give identical bytes: sorted keys, fixed orders, no
time stamps.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from evalsuite.analysis.frame import BASE_STAGES, REFERENCE_CELL
from evalsuite.report.encoding import STAGE_LABELS, condition_key

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

CAP = 4000  # characters of a prompt, response or judgement shown on the page; the rest is in the run folder
BLOCK_BYTES = 2 * 2**20  # text per block file, before base64
FOLDER = "items"
STAGE_ORDER = {"base": 0, "hf": 0, "sft": 1, "dpo": 2}
MISSING, UNSCORED, WRONG, RIGHT, SCORED = 0, 1, 2, 3, 4  # a row's state in a checkpoint's file
TEXTS = ("response", "judgement")
PROMPT_TEXTS = ("prompt", "target", "prompt_format")
RECORD_COLUMNS = ("task", "benchmark", "condition", "item_id", "subset", "variant", "answer", "score", "correct",
                  "truncated") + TEXTS
STATIC = ("items.js", "items.css")
CHECKPOINT_COLUMNS = ("checkpoint", "experiment", "stage", "lambda_p", "lambda_r", "parent", "base_model")


def _none(value: Any) -> Any:
    """None for pandas' missing values (NaN, NA, None), else the value."""
    import pandas as pd

    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):  # not a scalar
        return value


def _float(value: Any) -> float | None:
    value = _none(value)
    return None if value is None else float(value)


def _str(value: Any) -> str | None:
    value = _none(value)
    return None if value is None else str(value)


# ---------------------------------------------------------------------------------------------------------------
# checkpoints, and who is compared with whom


@dataclass(frozen=True)
class Ckpt:
    """One checkpoint as the pages list it, with what its default comparisons are found from."""

    name: str
    experiment: str = ""
    stage: str = "hf"
    lambda_p: float | None = None
    lambda_r: float | None = None
    parent: str | None = None
    base_model: str | None = None
    dpo_data: str | None = None  # a DPO cell's preference data fingerprint: its (0, 1) reference shares it

    @property
    def cell(self) -> tuple[float, float] | None:
        if self.lambda_p is None or self.lambda_r is None:
            return None
        return (round(self.lambda_p, 4), round(self.lambda_r, 4))

    @property
    def label(self) -> str:
        stage = STAGE_LABELS.get(self.stage, self.stage)
        if self.cell is None:
            return f"{stage} · {self.name}"
        tag = " (IT)" if self.cell == REFERENCE_CELL else ""
        return f"{stage} λp={self.cell[0]:g} λr={self.cell[1]:g}{tag} · {self.name}"


def checkpoint_list(records: Sequence[Mapping[str, Any]], experiments: Sequence[str] | None) -> list[Ckpt]:
    """The checkpoints of `records` (rows of checkpoints.parquet, then of the items or results table: the first
    record of a name wins, later ones fill what it lacks) in the pages' order: base models, then each experiment's
    SFT and DPO cells by (λp, λr). With `experiments`, only their cells (and base models), in that order."""
    merged: dict[str, dict[str, Any]] = {}
    for rec in records:
        name = _str(rec.get("checkpoint"))
        if name is None:
            continue
        kept = merged.setdefault(name, {})
        for key, value in rec.items():
            if kept.get(key) is None and _none(value) is not None:
                kept[key] = value
    found = []
    for name, info in merged.items():
        stage = _str(info.get("stage")) or "hf"
        found.append(Ckpt(name=name, experiment=_str(info.get("experiment")) or "", stage=stage,
                          lambda_p=_float(info.get("lambda_p")), lambda_r=_float(info.get("lambda_r")),
                          parent=_str(info.get("parent")), base_model=_str(info.get("base_model")),
                          dpo_data=_str(info.get("dataset_fingerprint")) if stage == "dpo" else None))
    order = list(experiments) if experiments is not None else sorted({c.experiment for c in found})
    if experiments is not None:
        found = [c for c in found if not c.experiment or c.experiment in order]

    def key(c: Ckpt) -> tuple:
        exp = order.index(c.experiment) if c.experiment in order else -1
        return (c.stage not in BASE_STAGES, exp, STAGE_ORDER.get(c.stage, 3), c.stage, c.cell or (-1.0, -1.0), c.name)

    return sorted(found, key=key)


def comparisons(ckpts: Sequence[Ckpt]) -> list[dict[str, int | None]]:
    """Each checkpoint's comparison cells as indices into `ckpts`: `ref` the (0, 1) cell of its experiment and
    stage (for DPO, of its preference data where there is one), `parent` the SFT cell a DPO cell was trained
    from, `base` its base model; `default` the first of ref, parent, base (None: none of them is listed)."""
    out = []
    for k, c in enumerate(ckpts):
        choices = {"ref": _reference(c, ckpts), "parent": _parent(c, ckpts), "base": _base(c, ckpts)}
        choices = {key: (v if v != k else None) for key, v in choices.items()}
        default = next((v for v in choices.values() if v is not None), None)
        out.append({**choices, "default": default})
    return out


def _reference(c: Ckpt, ckpts: Sequence[Ckpt]) -> int | None:
    if not c.experiment or c.cell is None:
        return None
    same = [k for k, o in enumerate(ckpts)
            if o.experiment == c.experiment and o.stage == c.stage and o.cell == REFERENCE_CELL]
    preferred = [k for k in same if ckpts[k].dpo_data == c.dpo_data]
    return (preferred or same or [None])[0]


def _parent(c: Ckpt, ckpts: Sequence[Ckpt]) -> int | None:
    """The SFT checkpoint a DPO cell was trained from: the one its manifest's parent path names (the longest
    checkpoint name that path ends with), else the SFT cell at the same (λp, λr) of its experiment."""
    if c.stage != "dpo":
        return None
    sft = [k for k, o in enumerate(ckpts) if o.stage == "sft"]
    if c.parent:
        path = c.parent.replace("\\", "/").rstrip("/")
        named = [k for k in sft if path == ckpts[k].name or path.endswith("/" + ckpts[k].name)]
        if named:
            return max(named, key=lambda k: len(ckpts[k].name))
    same = [k for k in sft if ckpts[k].experiment == c.experiment and ckpts[k].cell == c.cell]
    return same[0] if same else None


def _base(c: Ckpt, ckpts: Sequence[Ckpt]) -> int | None:
    if c.stage in BASE_STAGES:
        return None
    bases = [k for k, o in enumerate(ckpts) if o.stage in BASE_STAGES]
    matching = [k for k in bases if ckpts[k].base_model and ckpts[k].base_model == c.base_model]
    return (matching or (bases if len(bases) == 1 else []) or [None])[0]


# ---------------------------------------------------------------------------------------------------------------
# encoding: typed arrays and UTF-8 string columns as base64 blobs inside one JS call per file


@dataclass
class Payload:
    """One data file: a JSON object whose typed columns are blobs (`{"$b": i, "t": type}` in the JSON)."""

    key: str
    data: dict[str, Any] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)

    def blob(self, raw: Any, kind: str) -> dict[str, Any]:
        """`raw` (bytes-like) as blob of type `kind` (u8, u16, i32, f64, or utf8 bytes): its reference."""
        self.blobs.append(base64.b64encode(raw))
        return {"$b": len(self.blobs) - 1, "t": kind}

    def array(self, values: Any, kind: str) -> dict[str, Any]:
        import numpy as np

        dtype = {"u8": "<u1", "u16": "<u2", "i32": "<i4", "f64": "<f8"}[kind]
        return self.blob(np.ascontiguousarray(values, dtype=dtype).tobytes(), kind)

    def strings(self, column: "pa.Array") -> dict[str, Any]:
        """A string column as UTF-8 bytes and int32 byte lengths (-1 = null)."""
        data, lengths = _utf8(column)
        return {"data": self.blob(data, "utf8"), "len": self.array(lengths, "i32")}

    def write(self, path: Path) -> None:
        """`window.EVALSUITE_ITEMS_PUSH(key, object, ["blob", …]);` (blobs written as they are: no copy)."""
        with open(path, "wb") as fh:
            fh.write(f"window.EVALSUITE_ITEMS_PUSH({script_json(self.key)},{script_json(self.data)},[".encode())
            for k, blob in enumerate(self.blobs):
                fh.write(b',"' if k else b'"')
                fh.write(blob)
                fh.write(b'"')
            fh.write(b"]);\n")


def script_json(value: Any) -> str:
    """JSON safe inside a script: ASCII, sorted keys, every `<` as `\\u003c` (so no `</script>` or `<!--`)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def _plain(column: "pa.Array | pa.ChunkedArray") -> "pa.Array":
    """One string (or large_string) array: chunks combined, dictionaries decoded, anything else cast."""
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    return arr


def byte_lengths(column: "pa.Array") -> "np.ndarray":
    """Each value's length in UTF-8 bytes (-1 for null), from Arrow's offsets: no pass over the text."""
    import numpy as np
    import pyarrow as pa

    arr = _plain(column)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    wide = pa.types.is_large_string(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if wide else np.int32)
    lengths = np.diff(offsets[arr.offset: arr.offset + len(arr) + 1]).astype(np.int64)
    if arr.null_count:
        lengths[arr.is_null().to_numpy(zero_copy_only=False)] = -1
    return lengths


def _utf8(column: "pa.Array") -> tuple[Any, "np.ndarray"]:
    """The UTF-8 bytes of a string column back to back, and each value's byte length (-1 for null), straight from
    Arrow's buffers."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _plain(column)
    if len(arr) == 0:
        return b"", np.zeros(0, dtype=np.int32)
    wide = pa.types.is_large_string(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[arr.offset: arr.offset + len(arr) + 1].astype(np.int64)
    lengths = np.diff(offsets)
    nulls = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    if nulls is not None and lengths[nulls].any():  # Arrow allows bytes behind a null: drop them
        return _utf8(pc.if_else(arr.is_null(), pa.scalar("", arr.type), arr))
    data = arr.buffers()[2]
    raw = memoryview(data)[offsets[0]: offsets[-1]] if data is not None else b""
    lengths = lengths.astype(np.int32)
    if nulls is not None:
        lengths[nulls] = -1
    return raw, lengths


def trim(column: "pa.Array", cap: int = CAP) -> tuple["pa.Array", list[list[int]]]:
    """The column with each text cut to `cap` characters, and [position, full length in characters] of each one
    cut (what the page's "trimmed" mark says). Only texts of more than `cap` bytes are looked at."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    column = _plain(column)
    candidates = np.flatnonzero(byte_lengths(column) > cap)
    if not len(candidates):
        return column, []
    chars = pc.utf8_length(column.take(pa.array(candidates))).to_numpy(zero_copy_only=False)
    is_over = chars > cap
    over = candidates[is_over]
    if not len(over):
        return column, []
    mask = np.zeros(len(column), dtype=bool)
    mask[over] = True
    cut = pc.utf8_slice_codeunits(column.take(pa.array(over)), 0, cap)
    return pc.replace_with_mask(column, pa.array(mask), cut), [[int(i), int(n)] for i, n in zip(over, chars[is_over])]


def string_column(series: "pd.Series") -> "pa.Array":
    """A column as an Arrow string array (nulls kept): zero-copy for pandas' Arrow-backed strings; a category's
    labels; anything else as its text (an option index 2 or 2.0 as "2")."""
    import pyarrow as pa

    try:
        arr = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed objects
        arr = None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr is not None and pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr is not None and pa.types.is_null(arr.type):
        arr = arr.cast(pa.string())
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pa.array([None if _none(v) is None else _text(v) for v in series], type=pa.string())
    return arr


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def take(column: "pa.Array | pa.ChunkedArray", positions: "np.ndarray") -> "pa.Array":
    """`column[positions]` as one array, null where a position is -1."""
    import numpy as np
    import pyarrow as pa

    missing = positions < 0
    index = pa.array(np.where(missing, 0, positions), mask=missing if missing.any() else None, type=pa.int64())
    out = column.take(index)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def _column(frame: Any, name: str) -> "pa.Array":
    """Column `name` of a DataFrame or an Arrow table as one Arrow array (strings or dictionary-encoded)."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        col = frame.column(name)
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return string_column(frame[name])


def _index_in(column: "pa.Array", values: "pa.Array") -> "np.ndarray":
    """Each value's position in `values` (-1: not there or null); on a dictionary column, looked up once per
    distinct value."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        codes = _index_in(column.dictionary, values)
        indices = pc.fill_null(column.indices.cast(pa.int64()), -1).to_numpy()
        return np.where(indices >= 0, codes[np.maximum(indices, 0)] if len(codes) else -1, -1)
    return pc.fill_null(pc.index_in(column.cast(values.type), value_set=values), -1).to_numpy().astype(np.int64)


def _distinct(frame: Any, name: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _column(frame, name)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary.take(pc.unique(col.indices.drop_null()))
    return [str(v) for v in pc.unique(col).to_pylist() if v is not None]


def _variants_of(frame: Any) -> "np.ndarray":
    """The variant column as int64, -1 for the clean row (null)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(frame, pa.Table):
        return pc.fill_null(frame.column("variant").cast(pa.int64()), -1).to_numpy()
    return pd.to_numeric(frame["variant"], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# one task's rows


def natural_key(text: str) -> tuple:
    """Sort key reading digit runs as numbers (`bbh/2` before `bbh/10`)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


@dataclass
class TaskRows:
    """The rows of one task, numbered once for all checkpoints: items in natural order, then conditions (clean
    first), then variants (-1: the clean row)."""

    item_ids: list[str]
    conditions: list[str]
    keys: "np.ndarray"  # sorted: (item * n_conditions + condition) << 20 | variant + 1
    index: Any = field(default=None, repr=False)  # item ids and conditions as Arrow arrays, made once

    @classmethod
    def of(cls, frames: Sequence[Any]) -> "TaskRows":
        """Every (item, condition, variant) of `frames` (DataFrames or Arrow tables with item_id, condition,
        variant columns)."""
        import numpy as np

        def unique(name: str) -> list[str]:
            return sorted({v for f in frames for v in _distinct(f, name)})

        rows = cls(sorted(unique("item_id"), key=natural_key), sorted(unique("condition"), key=condition_key),
                   np.zeros(0, dtype=np.int64))
        keys = np.concatenate([rows._key(f) for f in frames] or [rows.keys])
        rows.keys = np.unique(keys[keys >= 0])
        return rows

    def _key(self, frame: Any) -> "np.ndarray":
        """Each record's key; -1 where its item or condition is not one of these rows'."""
        import numpy as np
        import pyarrow as pa

        if self.index is None:
            self.index = (pa.array(self.item_ids, pa.large_string()), pa.array(self.conditions, pa.large_string()))
        items, conds = self.index
        item = _index_in(_column(frame, "item_id"), items)
        cond = _index_in(_column(frame, "condition"), conds)
        variant = _variants_of(frame)
        key = ((item.astype(np.int64) * len(self.conditions) + cond) << 20) + (variant + 1)
        return np.where((item < 0) | (cond < 0), -1, key)

    def locate(self, frame: Any) -> "np.ndarray":
        """Each record's row number; -1 for a record with no row (not in prompts.parquet)."""
        import numpy as np

        key = self._key(frame)
        if not len(self.keys):
            return np.full(len(key), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return np.where((key >= 0) & (self.keys[pos] == key), pos, -1)

    @property
    def row_item(self) -> "np.ndarray":
        return (self.keys >> 20) // max(len(self.conditions), 1)

    @property
    def row_cond(self) -> "np.ndarray":
        return (self.keys >> 20) % max(len(self.conditions), 1)

    @property
    def row_variant(self) -> "np.ndarray":
        return (self.keys & ((1 << 20) - 1)) - 1

    @property
    def item_start(self) -> "np.ndarray":
        import numpy as np

        return np.searchsorted(self.row_item, np.arange(len(self.item_ids) + 1))

    def blocks(self, row_bytes: "np.ndarray", budget: int = BLOCK_BYTES) -> list[list[int]]:
        """Runs of whole items of about `budget` bytes (`row_bytes`: each row's size) as [first row, end row)."""
        import numpy as np

        n_items = len(self.item_ids)
        if not n_items or not len(self.keys):
            return []
        per_item = np.bincount(self.row_item, weights=row_bytes, minlength=n_items)
        block = (np.concatenate([[0.0], np.cumsum(per_item)[:-1]]) // budget).astype(np.int64)
        edges = np.concatenate([[0], np.flatnonzero(np.diff(block)) + 1, [n_items]])
        starts = self.item_start
        return [[int(starts[a]), int(starts[b])] for a, b in zip(edges[:-1], edges[1:]) if starts[b] > starts[a]]


# ---------------------------------------------------------------------------------------------------------------
# one checkpoint's files for one task


@dataclass
class Records:
    """One checkpoint's records of one task (rows of items.parquet) as an Arrow table."""

    table: "pa.Table"

    def __len__(self) -> int:
        return self.table.num_rows

    def column(self, name: str) -> "pa.ChunkedArray | None":
        return self.table.column(name) if name in self.table.column_names else None

    def strings(self, name: str) -> "pa.ChunkedArray | None":
        """A text column, or None where the table lacks it or it is null throughout."""
        col = self.column(name)
        return col if col is not None and col.null_count < len(col) else None

    def numbers(self, name: str, fill: float = float("nan")) -> "np.ndarray":
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        col = self.column(name)
        if col is None:
            return np.full(len(self), fill)
        return pc.fill_null(col.cast(pa.float64()), fill).to_numpy()

    def correct(self) -> "np.ndarray":
        """`correct` as 1 / 0, and -1 where it is None (a score that is not right or wrong)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        col = self.column("correct")
        if col is None:
            return np.full(len(self), -1, dtype=np.int8)
        return pc.fill_null(col.cast(pa.int8()), -1).to_numpy()


def arrow_records(frame: "pd.DataFrame") -> "pa.Table":
    """Records held in a DataFrame as the Arrow table the writers take (strings as strings, whatever their
    pandas dtype)."""
    import pyarrow as pa

    columns = {}
    for name in frame.columns:
        if name in ("score", "lambda_p", "lambda_r"):
            columns[name] = pa.array(_numbers(frame[name]), type=pa.float64())
        elif name in ("variant", "truncated"):
            columns[name] = pa.array(frame[name].astype("Int64"), type=pa.int64())
        elif name == "correct":
            columns[name] = pa.array(frame[name].astype("boolean"), type=pa.bool_())
        else:
            columns[name] = string_column(frame[name])
    return pa.table(columns)


def _numbers(series: "pd.Series") -> "np.ndarray":
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=float("nan"))


def state_payload(key: str, where: "np.ndarray", rec: Records) -> tuple[Payload, bool]:
    """A checkpoint's per-row file; `where` maps each row to its record (-1: none). Also says whether a score is
    neither right nor wrong (a rating, a tie)."""
    import numpy as np

    have = where >= 0
    pos = np.where(have, where, 0)
    score = rec.numbers("score")[pos] if len(rec) else np.full(len(where), np.nan)
    correct = rec.correct()[pos] if len(rec) else np.full(len(where), -1)
    scored = have & ~np.isnan(score)
    state = np.full(len(where), MISSING, dtype=np.uint8)
    state[have & ~scored] = UNSCORED
    state[scored & (correct == 1)] = RIGHT
    state[scored & (correct == 0)] = WRONG
    state[scored & (correct < 0)] = SCORED
    pay = Payload(key, {"n": int(len(where))})
    pay.data["state"] = pay.array(state, "u8")
    non_binary = bool((state == SCORED).any())
    if non_binary:
        pay.data["score"] = pay.array(np.where(scored, score, np.nan), "f64")
    truncated = np.where(have, rec.numbers("truncated", 0.0)[pos], 0) if len(rec) else np.zeros(0)
    if truncated.any():
        pay.data["truncated"] = pay.array(np.clip(truncated, 0, 65535), "u16")
    answers = rec.strings("answer")
    if answers is not None:
        pay.data["answer"] = pay.strings(take(answers, where))
    return pay, non_binary


def text_payload(key: str, columns: Mapping[str, "pa.Array"], cap: int) -> Payload:
    """Texts of one block (responses and judgements, or prompts and targets), each cut to `cap` characters, with
    the rows cut and their full lengths."""
    pay = Payload(key)
    for name, column in sorted(columns.items()):
        cut, trimmed = trim(column, cap)
        pay.data[name] = {**pay.strings(cut), "trimmed": trimmed}
    return pay


@dataclass
class TaskPage:
    """One task's page as it is being written: its rows, and what each checkpoint's files hold."""

    task: str
    slug: str
    rows: TaskRows
    folder: Path
    cap: int
    texts: bool = True  # write the responses and judgements (False: the page says where they are instead)
    prompt_blocks: list[list[int]] = field(default_factory=list)
    # what the checkpoints' records say, each with the id of the checkpoint it came from (the first one wins, so
    # the outcome does not depend on which process wrote which checkpoint)
    benchmark: tuple[int, str] | None = None
    subsets: dict[int, tuple[int, str]] = field(default_factory=dict)  # item index -> (checkpoint id, subset)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)  # checkpoint -> what its files hold
    binary: bool = True

    def merge(self, other: "TaskPage") -> None:
        """What another process learnt writing other checkpoints of this task."""
        self.written.update(other.written)
        self.binary = self.binary and other.binary
        if other.benchmark is not None and (self.benchmark is None or other.benchmark < self.benchmark):
            self.benchmark = other.benchmark
        for item, found in other.subsets.items():
            if item not in self.subsets or found < self.subsets[item]:
                self.subsets[item] = found

    def write_prompts(self, prompts: "pd.DataFrame") -> None:
        import numpy as np

        self.folder.mkdir(parents=True, exist_ok=True)
        row = self.rows.locate(prompts) if len(prompts) else np.zeros(0, dtype=np.int64)
        ok = row >= 0
        columns = {name: string_column(prompts[name]) for name in PROMPT_TEXTS if name in prompts and len(prompts)}
        columns = {name: col for name, col in columns.items() if col.null_count < len(col)}
        n = len(self.rows.keys)
        row_bytes = np.zeros(n)
        for col in columns.values():
            row_bytes += np.bincount(row[ok], weights=np.clip(byte_lengths(col), 0, 4 * self.cap)[ok], minlength=n)
        self.prompt_blocks = self.rows.blocks(row_bytes + 16)
        where = np.full(n, -1, dtype=np.int64)
        where[row[ok]] = np.flatnonzero(ok)
        for j, (r0, r1) in enumerate(self.prompt_blocks):
            picked = {name: take(col, where[r0:r1]) for name, col in columns.items()}
            text_payload(f"p{j}", picked, self.cap).write(self.folder / f"p{j}.js")

    def learn_subsets(self, ident: int, items: "np.ndarray", subsets: "np.ndarray") -> None:
        """Each item's subset, from the first checkpoint that records one (only items not seen before)."""
        import numpy as np

        unique, first = np.unique(items, return_index=True)
        known = np.zeros(len(self.rows.item_ids), dtype=bool)
        known[list(self.subsets)] = True
        for item, at in zip(unique[~known[unique]], first[~known[unique]]):
            if _none(subsets[at]) is not None:
                self.subsets[int(item)] = (ident, str(subsets[at]))

    def write_checkpoint(self, ident: int, name: str, table: "pa.Table") -> None:
        """Checkpoint `name`'s files (file id `ident`) from its records of this task."""
        import numpy as np

        rec = Records(table)
        row = self.rows.locate(table)
        ok = row >= 0
        n = len(self.rows.keys)
        where = np.full(n, -1, dtype=np.int64)
        where[row[ok]] = np.flatnonzero(ok)
        if rec.column("benchmark") is not None and len(rec) and self.benchmark is None:
            self.benchmark = (ident, str(rec.column("benchmark")[0].as_py() or ""))
        if rec.column("subset") is not None:
            self.learn_subsets(ident, self.rows.row_item[row[ok]], rec.column("subset").to_numpy()[ok])
        pay, non_binary = state_payload(f"c{ident}", where, rec)
        self.binary = self.binary and not non_binary
        pay.write(self.folder / f"c{ident}.js")
        entry: dict[str, Any] = {"id": ident, "records": len(rec), "unlisted": int((~ok).sum()), "blocks": []}
        # each text in row order once; the blocks are slices of it
        texts = {t: take(col, where) for t in TEXTS if self.texts and (col := rec.strings(t)) is not None}
        if texts:
            row_bytes = sum(np.clip(byte_lengths(col), 0, 4 * self.cap) for col in texts.values())
            entry["blocks"] = self.rows.blocks(row_bytes + 16.0)
            for j, (r0, r1) in enumerate(entry["blocks"]):
                picked = {t: col.slice(r0, r1 - r0) for t, col in texts.items()}
                text_payload(f"c{ident}-b{j}", picked, self.cap).write(self.folder / f"c{ident}-b{j}.js")
        self.written[name] = entry

    def index(self, ckpts: Sequence[Ckpt], info: "TaskSummary") -> Payload:
        """The task's `<slug>.data.js`: the checkpoints with records or a status for this task, and the rows."""
        import numpy as np
        import pyarrow as pa

        listed = [c for c in ckpts if c.name in self.written or c.name in info.statuses]
        entries = []
        for c, links in zip(listed, comparisons(listed)):
            done = self.written.get(c.name, {"id": None, "records": 0, "unlisted": 0, "blocks": []})
            entries.append({"name": c.name, "label": c.label, "experiment": c.experiment, "stage": c.stage,
                            "cell": list(c.cell) if c.cell else None, **links, **done,
                            "status": info.statuses.get(c.name, [])})
        named = {item: subset for item, (_, subset) in self.subsets.items()}
        subsets = sorted(set(named.values()) | ({""} if len(named) < len(self.rows.item_ids) else set()))
        code = {s: k for k, s in enumerate(subsets)}
        item_subset = np.array([code[named.get(i, "")] for i in range(len(self.rows.item_ids))], dtype=np.int32)
        pay = Payload("meta", {
            "task": self.task, "slug": self.slug, "benchmark": self.benchmark[1] if self.benchmark else info.benchmark,
            "score_metric": info.score_metric, "scale": info.scale, "binary": self.binary, "cap": self.cap,
            "conditions": self.rows.conditions, "checkpoints": entries, "texts": self.texts,
            "n_items": len(self.rows.item_ids),
            "n_rows": int(len(self.rows.keys)), "blocks": self.prompt_blocks, "subsets": subsets})
        pay.data["item_id"] = pay.strings(pa.array(self.rows.item_ids, type=pa.string()))
        pay.data["item_subset"] = pay.array(item_subset, "i32")
        pay.data["item_start"] = pay.array(self.rows.item_start, "i32")
        pay.data["row_cond"] = pay.array(self.rows.row_cond, "u8")
        pay.data["row_variant"] = pay.array(self.rows.row_variant, "i32")
        return pay


@dataclass
class TaskSummary:
    """What the results table says about a task: its score's metric and scale, and each checkpoint's statuses
    that are not ok."""

    benchmark: str = ""
    score_metric: str = ""
    scale: str = ""
    statuses: dict[str, list[str]] = field(default_factory=dict)  # checkpoint -> ["condition: status"]


def task_infos(results: "pd.DataFrame") -> dict[str, TaskSummary]:
    infos: dict[str, TaskSummary] = {}
    if results.empty or "task" not in results:
        return infos
    for task, rows in results.groupby(results["task"].astype(str), sort=True):
        info = infos.setdefault(str(task), TaskSummary())
        for column in ("benchmark", "score_metric", "scale"):
            if column in rows:
                setattr(info, column, ", ".join(sorted({str(v) for v in rows[column] if _none(v) is not None})))
        if "status" in rows and "checkpoint" in rows:
            bad = rows[rows["status"].notna() & (rows["status"].astype(str) != "ok")]
            for rec in bad.sort_values(["checkpoint", "condition"]).to_dict("records"):
                kept = info.statuses.setdefault(str(rec["checkpoint"]), [])
                text = f"{rec.get('condition')}: {rec['status']}"
                if text not in kept:
                    kept.append(text)
    return infos


# ---------------------------------------------------------------------------------------------------------------
# reading the run, writing the pages


def _frame(tables: Any, name: str) -> "pd.DataFrame":
    import pandas as pd

    value = getattr(tables, name, None)
    return value if isinstance(value, pd.DataFrame) else pd.DataFrame()


def _in_memory(tables: Any) -> bool:
    """Whether `tables.items` holds the records (with their texts); else they are read from `tables.path` one
    checkpoint at a time (read_run's tables with `item_columns=[]`)."""
    items = _frame(tables, "items")
    path = getattr(tables, "path", None)
    return path is None or {"item_id", "response"} <= set(items.columns)


def checkpoint_sources(tables: Any, ckpts: Sequence[Ckpt]) -> list[tuple[int, str, Any]]:
    """Where each checkpoint's records are, in the pages' order: (id, name, source), the source being positions
    in `tables.items` where it holds the records, else the items.parquet part files holding them (with whether
    a part holds other checkpoints too)."""
    import numpy as np
    import pandas as pd

    if _in_memory(tables):
        items = _frame(tables, "items")
        if items.empty:
            return []
        codes = pd.Index([c.name for c in ckpts]).get_indexer(items["checkpoint"].astype(str))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(ckpts) + 1))
        return [(k, c.name, order[bounds[k]: bounds[k + 1]]) for k, c in enumerate(ckpts)
                if bounds[k + 1] > bounds[k]]
    from evalsuite.run.records import ITEMS

    folder = Path(tables.path) / ITEMS
    parts: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else [folder] if folder.is_file() else []:
        names = _part_checkpoints(path)
        for name in names:
            parts.setdefault(name, []).append((str(path), len(names) > 1))
    return [(k, c.name, parts[c.name]) for k, c in enumerate(ckpts) if c.name in parts]


def _part_checkpoints(path: Path) -> list[str]:
    """The checkpoints a part file holds: from its statistics where every row group holds one, else read."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    found = set()
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        stats = next((group.column(c).statistics for c in range(group.num_columns)
                      if group.column(c).path_in_schema == "checkpoint"), None)
        if stats is None or not stats.has_min_max or stats.min != stats.max or stats.null_count:
            return sorted(str(v) for v in pc.unique(pq.read_table(path, columns=["checkpoint"]).column(0)).to_pylist()
                          if v is not None)
        found.add(stats.min if isinstance(stats.min, str) else bytes(stats.min).decode())
    return sorted(found)


def load_records(tables: Any, name: str, source: Any, texts: bool = True) -> "pa.Table":
    """One checkpoint's records (all its tasks) as an Arrow table, from its `checkpoint_sources` entry: the
    repeated strings (task, item id, answer…) as dictionaries, read without a string per row; the texts only
    when they are written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = [c for c in RECORD_COLUMNS if texts or c not in TEXTS]
    if not isinstance(source, list):
        items = _frame(tables, "items")
        return arrow_records(items.iloc[source][[c for c in wanted if c in items]])
    from evalsuite.run.records import ITEMS_TYPES

    columns = [c for c in wanted if c in ITEMS_TYPES]
    repeated = [c for c in columns if ITEMS_TYPES[c] == "string" and c not in TEXTS]
    return pa.concat_tables([pq.read_table(path, columns=columns, read_dictionary=repeated,
                                           filters=[("checkpoint", "==", name)] if shared else None)
                             for path, shared in source], promote_options="permissive")


def write_share(tables: Any, pages: Mapping[str, "TaskPage"], share: Sequence[tuple[int, str, Any]]) -> \
        dict[str, "TaskPage"]:
    """The files of the checkpoints in `share` for every task page; returns the pages with what was learnt
    (run in a worker process: `tables` then holds only the run folder's path)."""
    texts = any(page.texts for page in pages.values())
    for ident, name, source in share:
        for task, records in by_task(load_records(tables, name, source, texts)):
            if task in pages:
                pages[task].write_checkpoint(ident, name, records)
    return dict(pages)


@dataclass
class RunPath:
    """All a worker needs of the tables: where the run folder is."""

    path: Path


def write_checkpoints(tables: Any, pages: dict[str, "TaskPage"], sources: list[tuple[int, str, Any]],
                      workers: int) -> None:
    """Every checkpoint's files: here, or shared out over `workers` processes (records read from the run folder;
    checkpoints dealt round-robin, results merged in checkpoint order, so the bytes do not depend on it)."""
    if workers <= 1 or len(sources) < 2 * workers or _in_memory(tables):
        write_share(tables, pages, sources)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    if "fork" not in multiprocessing.get_all_start_methods():
        write_share(tables, pages, sources)
        return
    # fork, not spawn: spawn would run the caller's main script again in each worker. The parent does nothing
    # while the workers run, and Arrow resets its thread pools in a forked child.
    shares = [sources[w::workers] for w in range(workers)]
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            done = list(pool.map(write_share, [RunPath(Path(tables.path))] * workers, [pages] * workers, shares))
    except (BrokenProcessPool, OSError):  # no processes to be had here: the same files, written in this one
        write_share(tables, pages, sources)
        return
    for learnt in done:
        for task, page in learnt.items():
            pages[task].merge(page)


def default_workers() -> int:
    import os

    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def by_task(table: "pa.Table") -> Iterator[tuple[str, "pa.Table"]]:
    """A checkpoint's records split by task, in task order (slices, without a copy, where a task's records are
    together, as the run writes them)."""
    import numpy as np
    import pyarrow.compute as pc

    if not table.num_rows:
        return
    encoded = pc.dictionary_encode(table.column("task")).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    for code in sorted(range(len(names)), key=lambda k: str(names[k])):
        at = np.flatnonzero(codes == code)
        contiguous = at[-1] - at[0] + 1 == len(at)
        yield str(names[code]), table.slice(int(at[0]), len(at)) if contiguous else table.take(at)


def safe_name(task: str, taken: set[str]) -> str:
    """A file name for `task` (letters, digits, `_ . -`), unique among `taken` even on a case-insensitive disk."""
    import hashlib

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", task).strip("._-")[:80] or "task"
    if name.lower() in taken:
        name = f"{name}-{hashlib.sha256(task.encode()).hexdigest()[:8]}"
    taken.add(name.lower())
    return name


def render_page(meta: Mapping[str, Any], data_src: str, back: str) -> str:
    from jinja2 import Environment, PackageLoader

    env = Environment(loader=PackageLoader("evalsuite.report", "templates"), autoescape=True,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("items.html.j2").render(
        task=meta["task"], benchmark=meta["benchmark"], score_metric=meta["score_metric"], scale=meta["scale"],
        n_items=meta["n_items"], n_checkpoints=len(meta["checkpoints"]), conditions=meta["conditions"],
        data_src=data_src, back=back, cap=meta["cap"])


def _task_groups(frame: "pd.DataFrame") -> dict[str, "pd.DataFrame"]:
    if frame.empty or "task" not in frame:
        return {}
    return {str(t): g for t, g in frame.groupby(frame["task"].astype(str), sort=True)}


def all_checkpoints(tables: Any, experiments: Sequence[str] | None) -> list[Ckpt]:
    """Every checkpoint the tables know (checkpoints.parquet first, then the items and results tables)."""
    records = _frame(tables, "checkpoints").to_dict("records")
    for name, columns in (("items", CHECKPOINT_COLUMNS[:5]), ("results", CHECKPOINT_COLUMNS)):
        frame = _frame(tables, name)
        if "checkpoint" in frame and (name == "results" or _in_memory(tables)):
            records += frame[[c for c in columns if c in frame]].drop_duplicates("checkpoint").to_dict("records")
    return checkpoint_list(records, experiments)


def task_pages(tables: Any, target: Path, cap: int, texts: bool) -> dict[str, TaskPage]:
    """A page for every task with prompts (or records in memory), its rows numbered and its prompts written."""
    prompts = _frame(tables, "prompts")
    items = _frame(tables, "items")
    keys = ["task", "item_id", "condition", "variant"]
    prompt_keys = _task_groups(prompts[keys] if set(keys) <= set(prompts) else prompts.iloc[0:0])
    record_keys = _task_groups(items[keys]) if _in_memory(tables) and set(keys) <= set(items) else {}
    task_prompts = _task_groups(prompts)
    taken: set[str] = set()
    pages: dict[str, TaskPage] = {}
    for task in sorted(set(prompt_keys) | set(record_keys)):
        frames = [f for f in (prompt_keys.get(task), record_keys.get(task)) if f is not None]
        slug = safe_name(task, taken)
        page = TaskPage(task, slug, TaskRows.of(frames), target / slug, cap, texts)
        page.write_prompts(task_prompts.get(task, prompts.iloc[0:0]))
        pages[task] = page
    return pages


def write_item_pages(tables: Any, out: Path, *, experiments: Sequence[str] | None = None,
                     folder: str = FOLDER, cap: int = CAP, workers: int | None = None,
                     texts: bool = True) -> dict[str, str]:
    """One item page per task of a run's tables (`.items`, `.prompts`, `.checkpoints`, `.results`, and `.path`,
    the run folder `read_run` read them from) under `out/<folder>/`, replacing what an earlier report wrote
    there. Returns task -> the page's path relative to `out`, for the index's links (`page_link` opens it on
    one checkpoint). With `experiments`, only their cells (and base models) are listed, in that order.

    The records are taken from `tables.items` when it holds them with their texts, else read from the run
    folder one checkpoint at a time (pass `read_run(run, item_columns=[])`: a full grid's responses take
    gigabytes), by `workers` processes (default: the CPUs, at most 4). `texts=False` leaves the responses and
    judgements out (most of the folder's size and time at the paper's scale); the pages then say where they are."""
    import importlib.resources as resources

    target = Path(out) / folder
    if target.exists():
        shutil.rmtree(target)
    ckpts = all_checkpoints(tables, experiments)
    pages = task_pages(tables, target, cap, texts)
    if not pages:
        return {}
    write_checkpoints(tables, pages, checkpoint_sources(tables, ckpts),
                      default_workers() if workers is None else workers)
    static = resources.files("evalsuite.report") / "static"
    for name in STATIC:
        (target / name).write_bytes((static / name).read_bytes())
    infos = task_infos(_frame(tables, "results"))
    links: dict[str, str] = {}
    for task, page in sorted(pages.items()):
        meta = page.index(ckpts, infos.get(task, TaskSummary()))
        meta.write(target / f"{page.slug}.data.js")
        html = render_page(meta.data, f"{page.slug}.data.js", "../index.html")
        (target / f"{page.slug}.html").write_text(html, encoding="utf-8")
        links[task] = f"{folder}/{page.slug}.html"
    return links


def page_link(pages: Mapping[str, str], task: str, checkpoint: str | None = None) -> str | None:
    """The link to a task's page, opened on `checkpoint` (URL-encoded in the fragment)."""
    from urllib.parse import quote

    path = pages.get(task)
    if path is None or checkpoint is None:
        return path
    return f"{path}#cell={quote(checkpoint, safe='')}"


__all__ = ["CAP", "FOLDER", "page_link", "write_item_pages"]
