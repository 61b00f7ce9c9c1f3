"""Rows of a dataset wherever it lives: a JSON/JSONL/Parquet file, a `save_to_disk` folder, or a hub id.
Shared by training data and benchmark data, with one error style."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalsuite.errors import ConfigError

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def read_rows(source: str, split: str = "train", name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The raw rows of `source` (`split` and config `name` apply to folders and hub datasets)."""
    return read_located_rows(source, split, name, limit)[0]


def read_located_rows(source: str, split: str = "train", name: str | None = None,
                      limit: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The raw rows of `source` and where each is, for error messages: `line N` in a JSONL file (the line a
    user opens in an editor), else `row i` (0-based, as `datasets` indexes)."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".jsonl":
        located = read_jsonl(path)
        for n, row in located:
            if not isinstance(row, dict):
                raise ConfigError(f"{path}:{n}: expected a JSON object per line, got {type(row).__name__}")
        located = located[:limit] if limit is not None else located
        if not located:
            raise ConfigError(f"dataset file {path} is empty")
        return [row for _, row in located], [f"line {n}" for n, _ in located]
    rows = _read_with_datasets(source, path, split, name, limit)
    return rows, [f"row {i}" for i in range(len(rows))]


def _read_with_datasets(source: str, path: Path, split: str, name: str | None, limit: int | None) -> list[dict[str, Any]]:
    import datasets

    try:
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise ConfigError(f"dataset file {path}: expected .json, .jsonl or .parquet")
            if path.stat().st_size == 0:
                raise ConfigError(f"dataset file {path} is empty")
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        elif path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            ds = datasets.load_dataset(str(source), name, split=split)
    except ConfigError:
        raise
    except Exception as exc:  # datasets raises many types; all mean "cannot read this dataset"
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot load dataset {source!r} (split {split!r}): {first_line}") from exc
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.to_list()


def jsonl_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) for each non-blank line. JSONL separates records by "\n" only: `str.splitlines()`
    would also split on U+2028, U+2029, U+0085 and other characters that JSON strings may hold unescaped
    (files written with `ensure_ascii=False`)."""
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line of a JSONL file; errors name the line. The one JSONL
    reader of the project (see `jsonl_lines`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    rows = []
    for n, line in jsonl_lines(text):
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    return rows


def read_jsonl_rows(path: Path) -> list[Any]:
    """The parsed values of a JSONL file (see `read_jsonl`), without line numbers."""
    return [row for _, row in read_jsonl(path)]
