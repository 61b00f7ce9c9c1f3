"""Benchmark items in, perturbation variant rows out (and back: the items asked in their variants' text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from evalsuite.errors import ConfigError


def variant_rows(spec: str, kind_name: str, *, data: str | None, variants: int, seed: int, severity: float,
                 limit: int | None = None, paraphraser: Any = None) -> Iterator[dict[str, Any]]:
    """One row per (item, variant) of benchmark `spec` under `kind_name`, in item order."""
    from perturbations import kind_names

    from evalsuite.benchmarks.registry import get_benchmark

    if kind_name not in kind_names():
        raise ConfigError(f"unknown perturbation kind {kind_name!r} (choose from {', '.join(kind_names())})")
    if not 0 < severity <= 1:
        raise ConfigError(f"--severity must be in (0, 1], not {severity} (0 changes nothing)")
    bench = get_benchmark(spec)
    items = bench.load(data, limit=limit) if data else bench.load(limit=limit)
    yield from item_variant_rows(bench, items, kind_with(kind_name, paraphraser), variants, seed, severity)


def kind_with(kind_name: str, paraphraser: Any = None) -> Any:
    """The perturbation kind; `rephrase` uses the LLM paraphraser when one is given (else its offline rules)."""
    from perturbations import get_kind

    return get_kind(kind_name, **({"paraphraser": paraphraser} if kind_name == "rephrase" else {}))


def item_variant_rows(bench: Any, items: Any, kind: Any, variants: int, seed: int, severity: float) -> Iterator[dict[str, Any]]:
    """Rows for variants 0..n-1 of each of `items` under `kind`, item by item (n = `variants`, capped at what the
    kind can make distinct: `template` has one variant per item)."""
    from perturbations import perturb

    for item in items:
        source = bench.perturbation_item(item)
        for v in range(kind.variant_count(variants)):
            yield perturb(source, kind, v, seed, severity).to_row()


def write_rows(rows: Iterator[dict[str, Any]], out: Path) -> int:
    """All rows to `out` (JSONL), written atomically: a file is complete or absent."""
    from evalsuite.paths import atomic_output

    n = 0
    with atomic_output(out) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_variant_rows(path: Path) -> list[dict[str, Any]]:
    """Rows written by `evalsuite perturb` (checked for the fields the runner needs)."""
    from evalsuite.rows import read_jsonl

    rows = []
    for n, row in read_jsonl(path):
        if not isinstance(row, dict) or not {"id", "kind", "variant", "severity", "skipped_reason"} <= set(row):
            raise ConfigError(f"{path}:{n}: not a row of `evalsuite perturb` (needs id, kind, variant, severity, skipped_reason)")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path} has no rows")
    return rows


def perturbed_items(items: Any, rows: Any) -> tuple[list[Any], int]:
    """The items asked in their variants' text (rows for items outside `items` are ignored); skipped
    variants are left out and counted."""
    from dataclasses import replace

    from evalsuite.benchmarks.base import Perturbed

    by_id = {it.id: it for it in items}
    out, skipped = [], 0
    for row in rows:
        item = by_id.get(row["id"])
        if item is None:
            continue
        if row["skipped_reason"]:
            skipped += 1
            continue
        out.append(replace(item, perturbed=Perturbed.from_row(row)))
    return out, skipped
