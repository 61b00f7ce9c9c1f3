"""Where benchmark rows come from, and which of them an evaluation uses.

A source is one of:
- a data folder written by `evalsuite data prepare` (it has `evalsuite-data.json`): `<folder>/<benchmark>/<split>.jsonl`;
- a folder of split files: `<folder>/<split>.jsonl` (or `.json`, `.parquet`);
- a single JSON/JSONL/Parquet file: the evaluation split itself;
- a Hugging Face hub id (with the benchmark's config name).

`limit` keeps N items per subset: the first N (what lm-eval's `--limit` does) or, with a `seed`, a seeded
sample that depends only on the seed and the item ids, so it is the same on every machine and for every
checkpoint.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from evalsuite.errors import ConfigError
from evalsuite.rows import FILE_BUILDERS, read_rows

PREPARED_MANIFEST = "evalsuite-data.json"
T = TypeVar("T")


def split_file(folder: Path, split: str) -> Path | None:
    for suffix in FILE_BUILDERS:
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    return None


def load_split(source: str | Path, benchmark: str, split: str, *, hub_name: str | None = None,
               required: bool = True) -> list[dict[str, Any]] | None:
    """Rows of `split` from `source` (see the module doc); None when not required and absent."""
    path = Path(source).expanduser()
    if path.is_dir():
        folder = path / benchmark if (path / PREPARED_MANIFEST).is_file() or (path / benchmark).is_dir() else path
        found = split_file(folder, split)
        if found is None:
            if required:
                raise ConfigError(f"no {split} split for {benchmark} in {folder} (expected {split}.jsonl)")
            return None
        return read_rows(str(found))
    if path.is_file():
        if split in ("test", "train", "eval"):
            return read_rows(str(path))
        if required:
            raise ConfigError(f"{benchmark}: {path} is one file; the {split} split needs a folder or hub id")
        return None
    if path.is_absolute() or str(source).startswith((".", "~")):
        raise ConfigError(f"benchmark data {source} does not exist")
    try:
        return read_rows(str(source), split, name=hub_name)
    except ConfigError:
        if required:
            raise
        return None


def subsample(items: Sequence[T], key: Callable[[T], str], group: Callable[[T], str], limit: int | None,
              seed: int | None) -> list[T]:
    """At most `limit` items per group, order kept: the first ones, or with `seed` the ones with the smallest
    hash(seed, id)."""
    if limit is None:
        return list(items)
    if limit < 1:
        raise ConfigError("limit must be >= 1")
    by_group: dict[str, list[T]] = defaultdict(list)
    for item in items:
        by_group[group(item)].append(item)
    keep: set[int] = set()
    for members in by_group.values():
        chosen = members[:limit] if seed is None else sorted(
            members, key=lambda it: hashlib.sha256(f"{seed}:{key(it)}".encode()).hexdigest())[:limit]
        keep.update(id(it) for it in chosen)
    return [it for it in items if id(it) in keep]
