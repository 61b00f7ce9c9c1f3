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
    import datasets

    path = Path(source).expanduser()
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


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line of a JSONL file; errors name the line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    return rows
