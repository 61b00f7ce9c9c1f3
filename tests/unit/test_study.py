"""`evalsuite study`: the graph SFT -> DPO -> evaluation -> report of a 3-cell study on a tiny model, run by the
`local` executor, a real local Ray cluster (2 CPUs, 4 fake GPUs; one worker SIGKILLed mid-unit) and submitit's
local executor; each gives the local table. A driver killed mid-study resumes: the dry-run before the re-run names
exactly the units left, and the re-run does only those."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from evalsuite.errors import ConfigError
from tests.conftest import EVALSUITE, ROOT, build_tiny_model, run_and_kill_at, write_jsonl

QUESTIONS = [{"question": f"Which colour is item {i} about {s}?", "subject": s,
              "choices": ["red", "green", "blue", "black"], "answer": (i + k) % 4}
             for k, s in enumerate(("anatomy", "virology")) for i in range(3)]
UNITS = 15  # base, 3 SFT, 3 DPO, 7 evaluations, report


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study-inputs")
    build_tiny_model(root / "tiny", seed=0, max_positions=512)
    write_jsonl(root / "sft.jsonl", [{"prompt": q["question"], "response": q["choices"][q["answer"]]} for q in QUESTIONS])
    write_jsonl(root / "prefs.jsonl", [{"prompt": q["question"], "chosen": q["choices"][q["answer"]],
                                        "rejected": q["choices"][q["answer"] - 1]} for q in QUESTIONS])
    (root / "mmlu").mkdir()
    write_jsonl(root / "mmlu" / "test.jsonl", QUESTIONS)
    return root


def study_file(inputs: Path, path: Path, **extra) -> Path:
    training = {"per_device_train_batch_size": 2, "max_steps": 2, "save_steps": 1, "learning_rate": 1.0e-2}
    study = {
        "name": "tiny", "models": [str(inputs / "tiny")],
        "sft": {"datasets": [str(inputs / "sft.jsonl")], "cells": "0:1,0.5:1,1:1", "global_batch_size": 2,
                "max_length": 128, "precision": "fp32", "training": training},
        "dpo": {"dataset": {"path": str(inputs / "prefs.jsonl")}, "global_batch_size": 2, "max_length": 128,
                "precision": "fp32", "training": {"per_device_train_batch_size": 2, "max_steps": 2, "save_steps": 1}},
        "eval": {"backend": {"kind": "hf", "dtype": "float32"},
                 "run": {"benchmarks": ["mmlu"], "perturb": ["typo"], "variants": 2, "data": str(inputs / "mmlu")}},
        # evaluation asks for a GPU: the Ray cluster's are declared, not real (torch stays on the CPU)
        "resources": {"sft": {"cpus": 1, "gpus": 0}, "dpo": {"cpus": 1, "gpus": 0}, "eval": {"cpus": 1, "gpus": 1},
                      "report": {"cpus": 1}},
        **extra,
    }
    path.write_text(yaml.safe_dump(study))
    return path


def study(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(EVALSUITE + ["study", *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=timeout)


def table(folder: Path) -> pd.DataFrame:
    """The merged results, with the study folder taken out of the parents' paths (the one thing that differs)."""
    frame = pd.read_parquet(folder / "run" / "results.parquet")
    frame["parent"] = frame.parent.str.replace(str(folder.resolve()), "STUDY", regex=False)
    return frame


def done_units(folder: Path) -> dict[str, float]:
    """unit id -> the modification time of its done record."""
    return {json.loads(p.read_text())["unit"]: p.stat().st_mtime for p in (folder / "units").glob("*.json")}


def stored_keys(folder: Path) -> list[str]:
    keys = []
    for store in sorted((folder / "eval").glob("*/requests.sqlite")):
        keys += [k for (k,) in sqlite3.connect(store).execute("SELECT key FROM requests")]
    return keys


@pytest.fixture(scope="module")
def local_study(inputs, tmp_path_factory) -> Path:
    """The study run by the local executor after its driver was SIGKILLed mid-study; checks the resume on the way."""
    root = tmp_path_factory.mktemp("study-local")
    config = study_file(inputs, root / "study.yaml")
    folder = root / "local"
    env = {**os.environ}
    # killed the moment the (0.5, 1) SFT cell is done: the base, two SFT cells and a DPO cell are done by then
    run_and_kill_at(EVALSUITE + ["study", "-c", str(config), "-o", str(folder)],
                    folder / "units" / "sft__tiny_sft__lp0.5_lr1.json", env)
    before = done_units(folder)
    dry = study("-c", str(config), "-o", str(folder), "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    listed = dict(re.findall(r"│ (\S+)\s+│ \w+\s+│ (done|to do|partial|running|changed)", dry.stdout))
    assert len(listed) == UNITS, dry.stdout
    assert {u for u, s in listed.items() if s == "done"} == set(before)
    left = {u for u, s in listed.items() if s != "done"}
    assert "sft/tiny_sft/lp1_lr1" in left and "sft/tiny_sft/lp0_lr1" not in left
    proc = study("-c", str(config), "-o", str(folder))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{len(left)} of {UNITS} units to run" in proc.stdout
    after = done_units(folder)
    assert set(after) == set(listed) and all(after[u] == t for u, t in before.items())  # nothing done was redone
    assert (folder / "report" / "index.html").is_file() and "Report:" in proc.stdout
    again = study("-c", str(config), "-o", str(folder))
    assert again.returncode == 0 and "every unit" in again.stdout and done_units(folder) == after
    return folder


def test_unit_names_are_unique_and_do_not_depend_on_the_order_of_the_file(inputs, tmp_path):
    from evalsuite.study.config import load_study
    from evalsuite.study.driver import prepare

    for name in ("a", "b"):
        (tmp_path / name / "tiny").mkdir(parents=True)
    data = yaml.safe_load(study_file(inputs, tmp_path / "s.yaml").read_text())
    ids = []
    for models in ([str(tmp_path / "a" / "tiny"), str(tmp_path / "b" / "tiny")],
                   [str(tmp_path / "b" / "tiny"), str(tmp_path / "a" / "tiny")]):
        data["models"] = models
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
        plan = prepare(load_study(tmp_path / "s.yaml"), tmp_path / "x")
        assert len({u.id for u in plan.units}) == len(plan.units) == 2 * 14 + 1
        ids.append({u.id: u.spec.get("model") for u in plan.units if u.kind == "base"})
    assert ids[0] == ids[1] and all(i.startswith("base/tiny-") for i in ids[0])
    # a study that had one of them keeps its names when the other joins: nothing is renamed, nothing retrained
    from evalsuite.study.graph import build, names_of

    data["models"] = [str(tmp_path / "a" / "tiny")]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    first = prepare(load_study(tmp_path / "s.yaml"), tmp_path / "x")
    data["models"] = [str(tmp_path / "b" / "tiny"), str(tmp_path / "a" / "tiny")]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    grown = build(tmp_path / "x", load_study(tmp_path / "s.yaml"), names_of(first))
    assert {u.id for u in first.units} - {"report"} < {u.id for u in grown.units}
    assert {g for g in grown.grids if g != "tiny_sft"} and all(g.startswith("tiny_sft-") for g in grown.grids
                                                                if g != "tiny_sft")


def test_local_study_resumes_after_its_driver_is_killed_and_tests_against_0_1_after_the_merge(local_study):
    frame = table(local_study)
    assert set(frame.checkpoint) == {"base/tiny", *(f"tiny_sft/{s}/{c}" for s in ("sft", "dpo")
                                                    for c in ("lp0_lr1", "lp0.5_lr1", "lp1_lr1"))}
    assert (frame.metric == "mcnemar_p_vs_0_1").sum() == 4  # two cells against (0, 1), SFT and DPO
    status = study("status", str(local_study))
    assert status.returncode == 0 and "15 done" in status.stdout


@pytest.mark.cluster
def test_ray_study_equals_local_with_a_worker_killed_mid_unit(inputs, local_study, tmp_path):
    ray = Path(sys.executable).with_name("ray")
    port = free_port()
    head = subprocess.run([str(ray), "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=4",
                           "--include-dashboard=false", "--disable-usage-stats"], capture_output=True, text=True)
    env = {**os.environ}
    try:
        assert head.returncode == 0, head.stderr[-2000:]
        address = re.search(r"ray start --address='([^']+)'", head.stdout + head.stderr).group(1)
        folder = tmp_path / "ray"
        config = study_file(inputs, tmp_path / "study.yaml")
        victim = folder / "units" / "dpo__tiny_sft__lp0.5_lr1.running"
        proc = subprocess.Popen(EVALSUITE + ["study", "-c", str(config), "-o", str(folder), "--executor", "ray",
                                             "--ray-address", address], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline, pid = time.time() + 300, None
        while pid is None and proc.poll() is None and time.time() < deadline:
            try:
                pid = json.loads(victim.read_text())["pid"]
            except (OSError, ValueError):
                time.sleep(0.02)
        assert pid is not None, "the unit never started:\n" + (proc.communicate()[0] or "")[-4000:]
        os.kill(pid, signal.SIGKILL)  # the Ray worker running the unit
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-4000:]
        record = json.loads((folder / "units" / "dpo__tiny_sft__lp0.5_lr1.json").read_text())
        assert record["attempts"] == 2  # Ray ran the unit again, and it finished
        pd.testing.assert_frame_equal(table(local_study), table(folder))
        keys = stored_keys(folder)
        # every request once (the keys name the backend's model path, which differs between the two studies)
        assert len(keys) == len(set(keys)) == len(stored_keys(local_study))
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True)


@pytest.mark.cluster
def test_submitit_local_executor_runs_the_same_study(inputs, local_study, tmp_path):
    config = study_file(inputs, tmp_path / "study.yaml", slurm={"cluster": "local", "poll_s": 0.5})
    proc = study("-c", str(config), "-o", str(tmp_path / "sl"), "--executor", "slurm")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pd.testing.assert_frame_equal(table(local_study), table(tmp_path / "sl"))
    assert len(list((tmp_path / "sl" / "logs" / "submitit").glob("*/*_log.out"))) == UNITS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ configs

def test_bad_study_files_fail_in_one_line_before_anything_runs(inputs, tmp_path):
    from evalsuite.study.config import load_study

    cases = {
        "sft.training.learning_rat": ({"sft": {"training": {"learning_rat": 1}}}, "learning_rat"),
        "sft.lambda_p": ({"sft": {"lambda_p": 0.2}}, "set by the study"),
        "dpo.output_dir": ({"dpo": {"output_dir": "x"}}, "set by the study"),
        "cells": ({"sft": {"cells": "0:0"}}, "trains no token"),
        "benchmark": ({"eval": {"run": {"benchmarks": ["mmlux"]}}}, "mmlux"),
        "models": ({"models": []}, "models"),
        "resources": ({"resources": {"sft": {"gpu": 1}}}, "gpu"),
    }
    for name, (change, expected) in cases.items():
        data = yaml.safe_load(study_file(inputs, tmp_path / "s.yaml").read_text())
        for key, value in change.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match=re.escape(expected)) as error:
            load_study(tmp_path / "bad.yaml")
        assert "\n" not in str(error.value), name
    proc = study("-c", str(study_file(inputs, tmp_path / "s.yaml")), "-o", str(tmp_path / "x"), "--executor", "sge")
    assert proc.returncode == 2 and "unknown executor 'sge'" in proc.stderr and len(proc.stderr.splitlines()) == 1
    if shutil.which("sbatch") is None:  # no SLURM here: said, rather than every job quietly run on this machine
        proc = study("-c", str(study_file(inputs, tmp_path / "s.yaml")), "-o", str(tmp_path / "x"), "--executor", "slurm")
        assert proc.returncode == 2 and "no sbatch on PATH" in proc.stderr
    assert not (tmp_path / "x").exists()  # nothing written


def test_states_from_the_records_a_unit_leaves(inputs, tmp_path):
    """done only with the settings' key; an evaluation with failed benchmarks is partial (a re-run retries it); an
    attempt started with other settings makes a unit changed; the report is to do again, never changed."""
    from evalsuite.paths import write_json
    from evalsuite.study.config import load_study
    from evalsuite.study.driver import prepare, rows
    from evalsuite.study.graph import state

    plan = prepare(load_study(study_file(inputs, tmp_path / "s.yaml")), tmp_path / "st")
    by_id = {u.id: u for u in plan.units}
    sft, ev, report = by_id["sft/tiny_sft/lp0_lr1"], by_id["eval/tiny_sft/sft/lp0_lr1"], by_id["report"]
    assert state(plan, sft) == "to do"
    write_json(plan.record(sft), {"unit": sft.id, "key": sft.key})
    assert state(plan, sft) == "done"
    write_json(plan.record(ev), {"unit": ev.id, "key": ev.key, "failed": 1})
    assert state(plan, ev) == "partial"
    write_json(plan.record(ev), {"unit": ev.id, "key": "other"})
    assert state(plan, ev) == "changed"
    plan.record(ev).unlink()
    plan.record(ev, ".attempts").write_text(json.dumps({"key": "other"}) + "\n")
    assert state(plan, ev) == "changed"
    write_json(plan.record(report), {"unit": "report", "key": "other"})
    assert state(plan, report) == "to do"
    write_json(plan.record(report), {"unit": "report", "key": report.key})
    assert state(plan, report) == "done" and dict((r.unit.id, r.state) for r in rows(plan))["report"] == "to do"


def test_shipped_configs_build_the_papers_graph():
    from evalsuite.study.config import load_study
    from evalsuite.study.driver import prepare

    files = sorted((ROOT / "configs").rglob("*.yaml"))
    assert ROOT / "configs" / "demo.yaml" in files and len(files) >= 4
    for path in files:
        plan = prepare(load_study(path), Path("/nonexistent/study"))
        kinds = [u.kind for u in plan.units]
        grids = len(plan.grids)
        if path.parent.name == "paper":
            # per grid: 35 SFT cells, 35 DPO cells, their 70 evaluations; per model its base evaluation
            assert kinds.count("sft") == kinds.count("dpo") == 35 * grids
            assert kinds.count("eval") == 70 * grids + kinds.count("base")
            assert set(plan.config.eval.run.benchmarks) >= {"mmlu:generative", "bbh", "ifeval", "mtbench", "alpacaeval"}
            assert plan.config.eval.judge is not None and plan.config.eval.judge.api_key_env
        if path.name == "gpu_check.yaml":  # LoRA cells kept as adapters, evaluated by vLLM: one unit per grid
            evals = [u for u in plan.units if u.kind == "eval"]
            assert [u.id for u in evals] == ["eval/base/smollm2-135m-instruct", f"eval/{plan.units[2].spec['grid']}/adapters"]
            assert len(evals[1].spec["checkpoints"]) == 6 and set(evals[1].deps) >= {u.id for u in plan.units
                                                                                      if u.kind in ("sft", "dpo")}
        assert kinds[-1] == "report" and len(set(u.id for u in plan.units)) == len(kinds)
        seen: set[str] = set()
        for unit in plan.units:  # every unit after its inputs
            assert set(unit.deps) <= seen, unit.id
            seen.add(unit.id)


def test_the_packaged_demo_is_the_repositorys_demo_study_and_covers_the_whole_pipeline():
    """`evalsuite demo` (an installed package) and `make demo` (configs/demo.yaml) run one file: four cells as the
    issue asks ((0, 1), (1, 1), 0 < λp < 1, λr < 1), LoRA adapters kept alone, DPO, three judge-free benchmarks
    clean and under every kind, the notebook; overrides reach the config."""
    from evalsuite.study.config import demo_config, load_study
    from evalsuite.study.driver import prepare

    assert demo_config().resolve() == (ROOT / "configs" / "demo.yaml").resolve()
    config = load_study(demo_config())
    cells = set(config.sft.cells)
    assert {(0.0, 1.0), (1.0, 1.0)} <= cells and any(0 < p < 1 for p, _ in cells) and any(r < 1 for _, r in cells)
    assert config.sft.settings()["lora"]["merged"] is False and config.dpo["lora"]["merged"] is False
    assert set(config.eval.run.benchmarks) == {"mmlu", "bbh", "ifeval"} and config.eval.judge is None
    assert set(config.eval.run.perturb) == {"typo", "rephrase", "format"} and config.report.notebook
    kinds = [u.kind for u in prepare(config, Path("/nonexistent/demo")).units]
    assert kinds.count("sft") == kinds.count("dpo") == 4 and kinds.count("eval") == 9 and kinds[-1] == "report"
    shrunk = load_study(demo_config(), ["eval.run.limit=1", "sft.training.max_steps=2", "sft.cells=0:1,1:1"])
    assert shrunk.eval.run.limit == 1 and shrunk.sft.settings()["training"]["max_steps"] == 2
    assert shrunk.sft.settings()["training"]["learning_rate"] == config.sft.settings()["training"]["learning_rate"]
    assert shrunk.sft.cells == [(0.0, 1.0), (1.0, 1.0)]
    with pytest.raises(ConfigError, match="eval.run.limt: Extra inputs"):
        load_study(demo_config(), ["eval.run.limt=1"])
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_study(demo_config(), ["eval.run.limit"])
    with pytest.raises(ConfigError, match="not valid YAML"):  # one line from the CLI, not a traceback
        load_study(demo_config(), ["eval.run.benchmarks=[mmlu"])


def test_the_overview_lists_every_checkpoint_with_its_scores_and_what_they_leave_out():
    """`evalsuite study`'s closing table: base, then SFT, then DPO; a checkpoint that failed whole still has its row
    and says so; n and the interval beside each clean score."""
    from rich.console import Console

    from evalsuite.cli.study import overview_table

    def row(checkpoint, stage, cell, metric, condition="clean", value=None, status=None, n=None):
        return {"experiment": "m/d", "checkpoint": checkpoint, "stage": stage, "lambda_p": cell[0], "lambda_r": cell[1],
                "task": "mmlu_loglikelihood", "benchmark": "mmlu", "condition": condition, "metric": metric,
                "value": value, "low": None if value is None else value - 0.1, "high": None if value is None else value + 0.1,
                "n": n, "status": status}

    df = pd.DataFrame([
        row("m/d/dpo/lp0_lr1", "dpo", (0, 1), "score", value=0.5, n=16),
        row("m/d/sft/lp0_lr1", "sft", (0, 1), "score", value=0.25, n=16),
        row("m/d/sft/lp0_lr1", "sft", (0, 1), "agreement", condition="typo", value=0.75),
        row("m/d/sft/lp0_lr1", "sft", (0, 1), "skipped_variants", condition="typo", value=3),
        row("m/d/sft/lp1_lr1", "sft", (1, 1), "status", condition="all", status="failed: cannot load"),
        row("base/m", "base", (None, None), "score", value=0.4, n=16),
    ])
    console = Console(width=200, record=True)
    console.print(overview_table(df))
    lines = [l for l in console.export_text().splitlines() if "/" in l and "│" in l]
    assert [l.split("│")[1].strip() for l in lines] == ["base/m", "sft/lp0_lr1", "sft/lp1_lr1", "dpo/lp0_lr1"]
    assert "0.25 [0.15, 0.35] 16" in lines[1] and "0.75" in lines[1] and "3 variants skipped" in lines[1]
    assert "1 failed" in lines[2] and "0." not in lines[2]


def test_a_training_unit_with_two_gpus_runs_two_data_parallel_processes(inputs, tmp_path):
    """resources.sft.gpus: 2 -> `accelerate launch` with 2 processes (gloo on this CPU machine: the same launch a
    GPU node makes with NCCL); the cell's manifest says it trained on 2 processes."""
    config = study_file(inputs, tmp_path / "study.yaml")
    data = yaml.safe_load(config.read_text())
    data["sft"].update(cells="0:1", global_batch_size=4)
    data["dpo"] = None
    data["eval"]["run"]["perturb"] = []
    data["resources"]["sft"]["gpus"] = 2
    config.write_text(yaml.safe_dump(data))
    proc = study("-c", str(config), "-o", str(tmp_path / "ddp"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "ddp" / "checkpoints" / "tiny_sft" / "sft" / "lp0_lr1" / "evalsuite.json").read_text())
    assert manifest["metrics"]["world_size"] == 2
    record = json.loads((tmp_path / "ddp" / "units" / "sft__tiny_sft__lp0_lr1.json").read_text())
    assert record["processes"] == 2


def test_a_study_grows_without_redoing_anything(inputs, local_study, tmp_path):
    """A cell added to a finished study: its SFT, DPO and two evaluations run, and the report again (it is derived
    data, never "changed"); nothing else is redone. A changed training setting is refused until --redo-changed.
    (Last in this file: it grows the module's local study, which the tests above compare against.)"""
    folder = local_study
    # an evaluation that recorded a failed benchmark (say its judge was down) is retried, and the report rebuilt
    record = folder / "units" / "eval__tiny_sft__sft__lp1_lr1.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "failed": 1}))
    before = done_units(folder)
    retry = study("-c", str(study_file(inputs, tmp_path / "study.yaml")), "-o", str(folder))
    assert retry.returncode == 0 and f"2 of {UNITS} units to run" in retry.stdout, retry.stdout[-2000:]
    after = done_units(folder)
    assert {u for u in after if after[u] != before[u]} == {"eval/tiny_sft/sft/lp1_lr1", "report"}
    assert not json.loads(record.read_text()).get("failed")
    before = after
    config = study_file(inputs, tmp_path / "study.yaml")
    data = yaml.safe_load(config.read_text())
    data["sft"]["cells"] = "0:1,0.5:1,1:1,0.2:1"
    config.write_text(yaml.safe_dump(data))
    proc = study("-c", str(config), "-o", str(folder))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"5 of {UNITS + 4} units to run" in proc.stdout
    after = done_units(folder)
    assert {u for u in after if after[u] != before.get(u)} == {
        "sft/tiny_sft/lp0.2_lr1", "dpo/tiny_sft/lp0.2_lr1", "eval/tiny_sft/sft/lp0.2_lr1", "eval/tiny_sft/dpo/lp0.2_lr1",
        "report"}
    assert "tiny_sft/sft/lp0.2_lr1" in set(pd.read_parquet(folder / "run" / "results.parquet").checkpoint)
    data["dpo"]["beta"] = 0.2
    config.write_text(yaml.safe_dump(data))
    refused = study("-c", str(config), "-o", str(folder))
    assert refused.returncode == 2 and "8 unit(s) were done with other settings" in refused.stderr
    assert "--redo-changed" in refused.stderr and done_units(folder) == after
