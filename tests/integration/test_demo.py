"""`make demo` is `evalsuite demo`: the packaged demo study end to end on SmolLM2 (shrunk by `--set` overrides:
fewer steps, items and tokens; the same grid, stages, benchmarks, kinds, report and notebook), then a re-run
that redoes nothing."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import demo_cli

pytestmark = pytest.mark.integration

CELLS = {(0.0, 1.0), (0.4, 1.0), (1.0, 1.0), (0.4, 0.6)}


def test_demo_runs_the_study_and_prints_the_report_and_a_table(demo_study):
    import pandas as pd

    out, proc = demo_study
    stdout = proc.stdout
    assert f"Report: {out / 'report' / 'index.html'}" in stdout.replace("\n", "")
    assert f"Notebook: {out / 'report' / 'notebook' / 'dpo_plasticity.html'}" in stdout.replace("\n", "")
    # the short table: one line per checkpoint, each benchmark's clean score with its interval and n
    assert all(f"{task} (clean)" in stdout for task in ("mmlu_loglikelihood", "bbh_zeroshot", "ifeval_default"))
    assert "sft/lp0.4_lr0.6" in stdout and "dpo/lp1_lr1" in stdout and "base/smollm2-135m-instruct" in stdout

    results = pd.read_parquet(out / "run" / "results.parquet")
    checkpoints = pd.read_parquet(out / "run" / "checkpoints.parquet")
    assert len(checkpoints) == 9  # base + 4 SFT + 4 DPO
    for stage in ("sft", "dpo"):
        cells = checkpoints[checkpoints.stage == stage]
        assert set(zip(cells.lambda_p, cells.lambda_r)) == CELLS
    assert set(results.benchmark.dropna()) == {"mmlu", "bbh", "ifeval"}  # no judged benchmark without a judge
    assert set(results.condition) >= {"clean", "typo", "rephrase", "format"}
    assert (results.metric == "posix").any() and (results.metric == "agreement").any()
    status = results[results.metric == "status"]
    assert (status.status == "ok").all(), status[status.status != "ok"]
    # every checkpoint scored on every benchmark, clean, with n beside the score
    clean = results[(results.metric == "score") & (results.condition == "clean")]
    assert len(clean) == 9 * 3 and (clean.n > 0).all()
    assert clean[clean.benchmark == "mmlu"].n.eq(2).all()  # 2 subjects × limit 1: the overrides reached the run

    # LoRA cells kept as adapters: no model copy per cell (the demo's disk footprint)
    cells = [p for p in out.glob("checkpoints/*/sft/lp*") if p.is_dir()]
    assert len(cells) == 4
    for cell in cells:
        assert (cell / "adapter_model.safetensors").is_file() and not (cell / "model.safetensors").exists()
    dpo = next(out.glob("checkpoints/*/dpo/lp0_lr1"))
    assert json.loads((dpo / "evalsuite.json").read_text())["parent"].endswith("sft/lp0_lr1")

    # the report says what the demo leaves out and how to add it; the notebook ran on the demo's run
    index = " ".join((out / "report" / "index.html").read_text().split())
    assert "AlpacaEval and MT-Bench are not in this run" in index and "--judge-base-url" in index
    assert "at most 1 item per subset" in index
    notebook = (out / "report" / "notebook" / "dpo_plasticity.html").read_text()
    assert "Part 2" in notebook and "Traceback" not in notebook


def test_demo_rerun_redoes_nothing(demo_study):
    out, _ = demo_study
    records = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "units" in p.relative_to(out).parts[:1]}
    report = (out / "report" / "index.html").read_bytes()
    proc = demo_cli(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert records and {p: p.stat().st_mtime_ns for p in records} == records  # no unit ran again
    assert (out / "report" / "index.html").read_bytes() == report
    assert "to do" not in proc.stdout
