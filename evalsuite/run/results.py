"""From conditions to the run's table: one row per (checkpoint, task, condition, metric), with bootstrap
intervals for scores, the robustness metrics per perturbation kind, POSIX, and each cell's paired test
against the (0, 1) cell of its stage. Loads as a pandas DataFrame; written as CSV, Parquet and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from evalsuite.run.discovery import Checkpoint
from evalsuite.run.pipeline import Condition

COLUMNS = ["checkpoint", "stage", "lambda_p", "lambda_r", "task", "condition", "metric", "value", "low", "high", "n"]


def _per_item(item_results: dict[tuple[str, int | None], tuple[Any, float | None]]) -> dict[str, float]:
    """Each item's score (averaged over its variants), failed ones left out."""
    acc: dict[str, list[float]] = {}
    for (item_id, _), (_, score) in item_results.items():
        if score is not None:
            acc.setdefault(item_id, []).append(score)
    return {k: sum(v) / len(v) for k, v in acc.items()}


def condition_rows(ckpt: Checkpoint, conditions: Sequence[Condition], seed: int = 0) -> list[dict[str, Any]]:
    from evalsuite.metrics import bootstrap_ci, robustness

    rows = []
    base = ckpt.info()
    clean = {c.task: c for c in conditions if c.condition == "clean"}
    for c in conditions:
        def add(metric: str, value: Any, low: Any = None, high: Any = None, n: Any = None) -> None:
            rows.append({**base, "task": c.task, "condition": c.condition, "metric": metric, "value": value,
                         "low": low, "high": high, "n": n})

        scores = list(_per_item(c.item_results).values())
        if scores:
            est = bootstrap_ci(scores, seed=seed)
            add("score", est.value, est.low, est.high, est.n)
        if c.condition == "clean":
            continue
        add("skipped_variants", float(c.skipped))
        ref = clean[c.task]
        clean_items = {i: r for (i, v), r in ref.item_results.items() if r[1] is not None}
        perturbed: dict[str, list[tuple[Any, float]]] = {}
        for (i, _), r in sorted(c.item_results.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            if r[1] is not None and i in clean_items:
                perturbed.setdefault(i, []).append(r)  # type: ignore[arg-type]
        if perturbed:
            rob = robustness(clean_items, perturbed)  # type: ignore[arg-type]
            # the clean score of exactly the items this kind could perturb: what `score` compares against
            add("clean_score_same_items", rob.clean_score, n=rob.items)
            for metric in ("agreement", "correct_to_wrong", "wrong_to_correct", "performance_drop_rate", "worst_case_score"):
                value = getattr(rob, metric)
                if value is not None:
                    add(metric, float(value), n=rob.pairs)
        if c.posix is not None:
            add("posix", c.posix, n=c.posix_sets)
    return rows


def significance_rows(by_checkpoint: dict[str, tuple[Checkpoint, list[Condition]]], seed: int = 0) -> list[dict[str, Any]]:
    """Each WIT cell's clean scores against the (0, 1) cell of the same stage, paired by item: McNemar for
    0/1 scores, a paired bootstrap otherwise."""
    from evalsuite.metrics import mcnemar, paired_bootstrap

    rows = []
    refs = {ck.stage: (ck, conds) for ck, conds in by_checkpoint.values() if ck.cell == (0.0, 1.0)}
    for ck, conds in by_checkpoint.values():
        if ck.cell is None or ck.cell == (0.0, 1.0) or ck.stage not in refs:
            continue
        ref_conds = {c.task: c for c in refs[ck.stage][1] if c.condition == "clean"}
        for c in conds:
            if c.condition != "clean" or c.task not in ref_conds:
                continue
            mine, theirs = _per_item(c.item_results), _per_item(ref_conds[c.task].item_results)
            common = sorted(set(mine) & set(theirs))
            if not common:
                continue
            a, b = [theirs[i] for i in common], [mine[i] for i in common]
            row = {**ck.info(), "task": c.task, "condition": "clean", "n": len(common)}
            if all(x in (0.0, 1.0) for x in a + b):
                test = mcnemar([x == 1.0 for x in a], [x == 1.0 for x in b])
                rows.append({**row, "metric": "mcnemar_p_vs_0_1", "value": test.p_value, "low": None, "high": None})
            else:
                boot = paired_bootstrap(a, b, seed=seed)
                rows.append({**row, "metric": "paired_bootstrap_p_vs_0_1", "value": boot.p_value, "low": None, "high": None})
            rows.append({**row, "metric": "diff_vs_0_1", "value": sum(b) / len(b) - sum(a) / len(a), "low": None, "high": None})
    return rows


def write_table(rows: list[dict[str, Any]], out: Path) -> "Any":
    """`results.csv`, `results.parquet` and `results.json` in `out`; returns the DataFrame."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=COLUMNS)
    out.mkdir(parents=True, exist_ok=True)
    for name, write in (("results.csv", lambda p: df.to_csv(p, index=False)),
                        ("results.parquet", lambda p: df.to_parquet(p, index=False)),
                        ("results.json", lambda p: p.write_text(json.dumps(rows, indent=1, default=str) + "\n"))):
        tmp = out / f".{name}.tmp"
        write(tmp)
        tmp.replace(out / name)
    return df


def load_results(out: Path) -> "Any":
    """A finished run's table as a DataFrame."""
    import pandas as pd

    return pd.read_parquet(Path(out) / "results.parquet")
