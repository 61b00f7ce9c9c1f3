"""`evalsuite run`: checkpoint discovery, a run over several checkpoints with a corrupt one among them,
the results table, re-runs from the store, and a SIGKILLed run resumed to the same results."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import EVALSUITE, ROOT, build_tiny_model, write_jsonl

CAIS = [{"question": f"Question {i} about {s}?", "subject": s, "choices": ["red", "green", "blue", "black"], "answer": i % 4}
        for s in ("anatomy", "astronomy") for i in range(3)]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A base model, two WIT cells with manifests (one the (0, 1) reference), a corrupt checkpoint, a
    hidden cell in training and a trainer checkpoint folder that must not be picked up."""
    from evalsuite.manifest import CheckpointManifest, write_manifest

    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / "base", seed=0, max_positions=1024)
    for name, seed, cell in (("sft/lp0_lr1", 1, (0.0, 1.0)), ("sft/lp1_lr1", 2, (1.0, 1.0))):
        path = build_tiny_model(root / name, seed=seed, max_positions=1024)
        manifest = CheckpointManifest(stage="sft", base_model=str(root / "base"), prompt_format="plain", dtype="float32")
        manifest = manifest.model_copy(update={"cell": {"lambda_p": cell[0], "lambda_r": cell[1]}})
        write_manifest(path, manifest)
        shutil.copytree(path, path / "checkpoint-2")  # a trainer checkpoint inside: not a model to evaluate
    (root / "sft" / "broken").mkdir()
    (root / "sft" / "broken" / "config.json").write_text('{"model_type": "llama"}')
    (root / "sft" / "broken" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    build_tiny_model(root / "sft" / ".lp0.5_lr1.work", seed=3, max_positions=1024)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mmlu")
    write_jsonl(folder / "test.jsonl", CAIS)
    return folder


def test_discovery_finds_checkpoints_and_reports_the_corrupt_one(models):
    from evalsuite.run.discovery import discover

    found = {c.name: c for c in discover(models)}
    assert sorted(found) == ["base", "sft/broken", "sft/lp0_lr1", "sft/lp1_lr1"]
    assert found["base"].stage == "hf" and found["sft/lp0_lr1"].cell == (0.0, 1.0) and found["sft/lp1_lr1"].stage == "sft"
    assert found["sft/broken"].problem and not found["sft/lp0_lr1"].problem


def _run(models, data, out, extra=()):
    return subprocess.run(EVALSUITE + ["run", "--models", str(models), "--benchmarks", "mmlu", "--perturb", "typo,format",
                                       "--variants", "2", "--data", str(data), "--dtype", "float32", "--out", str(out), "--no-report",
                                       *extra],
                          capture_output=True, text=True, cwd=ROOT)


def test_run_table_metrics_and_rerun_from_the_store(models, data, tmp_path):
    import pandas as pd

    from evalsuite.run.results import load_results

    out = tmp_path / "run"
    proc = _run(models, data, out)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the corrupt checkpoint failed: recorded, and the exit says so
    assert "failed: sft/broken" in proc.stdout and "1 failed" in proc.stdout
    df = load_results(out)
    scored = df[df.metric != "status"]
    assert set(scored.checkpoint) == {"base", "sft/lp0_lr1", "sft/lp1_lr1"}
    status = df[(df.metric == "status") & (df.condition == "all")].set_index("checkpoint").status
    assert status["sft/broken"].startswith("failed: corrupt weights file") and (status.drop("sft/broken") == "ok").all()
    record = json.loads((out / "run.json").read_text())
    assert record["state"] == "finished" and record["failed"] == 1
    assert [s["status"][:6] for s in record["status"] if s["checkpoint"] == "sft/broken"] == ["failed"]
    clean = df[(df.condition == "clean") & (df.metric == "score")]
    assert len(clean) == 3 and clean.n.eq(6).all() and (clean.low <= clean.value).all() and (clean.value <= clean.high).all()
    for kind in ("typo", "format"):
        rows = df[(df.condition == kind)]
        assert {"score", "agreement", "correct_to_wrong", "wrong_to_correct", "worst_case_perturbed",
                "worst_case_with_clean", "skipped_variants", "unscored", "truncated_requests"} <= set(rows.metric)
    # each cell against the (0, 1) cell of its stage, paired by item
    sig = df[df.metric == "mcnemar_p_vs_0_1"]
    assert list(sig.checkpoint) == ["sft/lp1_lr1"] and 0 <= sig.value.iloc[0] <= 1
    # the samples behind the table, lm-eval-shaped, per checkpoint and condition
    samples = out / "checkpoints" / "sft" / "lp1_lr1" / "samples_mmlu_loglikelihood@typo.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == 12 and {r["perturbation"]["variant"] for r in rows} == {0, 1}
    # agreement recomputed independently from the samples: same predicted option as the clean run
    clean_rows = {r["item_id"]: r for r in map(json.loads, (samples.parent / "samples_mmlu_loglikelihood.jsonl").read_text().splitlines())}
    same = [r["extra"]["prediction"] == clean_rows[r["item_id"]]["extra"]["prediction"] for r in rows]
    got = df[(df.checkpoint == "sft/lp1_lr1") & (df.condition == "typo") & (df.metric == "agreement")].value.iloc[0]
    assert got == pytest.approx(sum(same) / len(same))
    before = (out / "results.csv").read_text()
    again = _run(models, data, out)
    assert again.returncode == 1 and again.stdout.count("0 requests answered by the model") == 3
    assert (out / "results.csv").read_text() == before
    assert isinstance(pd.read_csv(out / "results.csv"), pd.DataFrame)


def test_sigkilled_run_resumes_to_the_same_results(models, data, tmp_path):
    """A real `evalsuite run` SIGKILLed once the store holds some answers (a random point in the run), then
    run again: the results equal an uninterrupted run's and the store has no duplicate rows."""
    import random

    out = tmp_path / "killed"
    db = out / "requests.sqlite"
    args = EVALSUITE + ["run", "--models", str(models), "--benchmarks", "mmlu", "--perturb", "typo,format", "--variants", "2",
                        "--data", str(data), "--dtype", "float32", "--out", str(out), "--batch-size", "4", "--no-report"]
    threshold = random.Random().randint(8, 60)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db, timeout=5) as con:
                if con.execute("SELECT COUNT(*) FROM requests").fetchone()[0] >= threshold:
                    break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before the kill point"
    proc.kill()
    proc.wait()
    resumed = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 1, resumed.stderr[-3000:]  # only the corrupt checkpoint failed
    reference = _run(models, data, tmp_path / "reference")
    assert reference.returncode == 1
    assert (out / "results.csv").read_text() == (tmp_path / "reference" / "results.csv").read_text()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM requests").fetchone()
    with sqlite3.connect(tmp_path / "reference" / "requests.sqlite") as con:
        assert total == distinct == con.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


def test_posix_through_the_backend_matches_the_formula_by_hand(tiny_long_model_dir, tmp_path):
    """`posix_of` on one IFEval item and two variants equals ψ computed here from the model directly:
    greedy answers, each scored after every prompt of the set, |Δ log P| / L averaged over i ≠ j."""
    from dataclasses import replace

    from evalsuite.backends import HFConfig, ScoreRequest, load_backend
    from evalsuite.store.backend import StoredBackend
    from evalsuite.benchmarks import Prompter, get_benchmark
    from evalsuite.benchmarks.base import Perturbed, Item
    from evalsuite.run.pipeline import posix_of
    from evalsuite.store import RequestStore

    bench = get_benchmark("ifeval", max_new_tokens=5)
    item = Item("ifeval/1", "ifeval", {"key": 1, "prompt": "Write a short poem.", "instruction_id_list": [], "kwargs": []}, 0)
    variants = [replace(item, perturbed=Perturbed("typo", v, 0.1, text)) for v, text in
                enumerate(["Write a shrot poem.", "Wirte a short poem."])]
    with load_backend(HFConfig(model=str(tiny_long_model_dir), dtype="float32")) as engine:
        prompter = Prompter("plain", engine.tokenizer)
        value, sets = posix_of(bench, [item], variants, StoredBackend(engine, RequestStore(tmp_path / "s.sqlite")), prompter)
        prompts = ["Write a short poem.", "Write a shrot poem.", "Wirte a short poem."]
        reqs = [bench.requests(x, prompter)[0] for x in [item, *variants]]
        assert [r.prompt for r in reqs] == prompts
        ids = [g.token_ids for g in engine.generate(reqs)]
        logp = [[engine.score([ScoreRequest(prompts[i], tuple(ids[j]))])[0].total for j in range(3)] for i in range(3)]
    by_hand = sum(abs(logp[i][j] - logp[j][j]) / len(ids[j]) for i in range(3) for j in range(3) if i != j) / 6
    assert sets == 1 and value == pytest.approx(by_hand, rel=1e-5) and value > 0
    # the released library's normaliser: max_new_tokens (5) instead of each response's own length
    with load_backend(HFConfig(model=str(tiny_long_model_dir), dtype="float32")) as engine:
        library, _ = posix_of(bench, [item], variants, StoredBackend(engine, RequestStore(tmp_path / "s.sqlite")),
                              Prompter("plain", engine.tokenizer), normalization="max_new_tokens")
    assert library == pytest.approx(sum(abs(logp[i][j] - logp[j][j]) / 5 for i in range(3) for j in range(3) if i != j) / 6)


def test_tracker_sees_every_checkpoint_and_step_in_order(models, data, tmp_path):
    from evalsuite.run.pipeline import RunSettings, Tracker, run_models

    events: list = []
    track = Tracker(start=lambda n: events.append(("start", n)), checkpoint=lambda name, steps: events.append((name, steps)),
                    step=lambda label: events.append(label), done=lambda: events.append("done"),
                    checkpoint_done=lambda: events.append("end"))
    settings = RunSettings(benchmarks=["mmlu"], kinds=["format"], variants=1, data=str(data),
                           backend={"kind": "hf", "dtype": "float32"})
    run_models(models, settings, tmp_path / "out", track)
    task = events[2].split()[0]
    per_checkpoint = [f"{task} clean", "done", f"{task}@format", "done", "end"]
    assert events == [("start", 3), ("base", 2), *per_checkpoint, ("sft/lp0_lr1", 2), *per_checkpoint,
                      ("sft/lp1_lr1", 2), *per_checkpoint]


def test_a_tasks_clean_and_perturbed_requests_reach_the_engine_in_one_call(models, data, tmp_path, monkeypatch):
    """Every condition of a task is asked together (one engine call per request kind and checkpoint, the answers
    then read from the store), so an engine batches across conditions; the table is the one made condition by
    condition."""
    import pandas as pd

    import evalsuite.benchmarks.runner as runner
    from evalsuite.backends.hf_backend import HFBackend
    from evalsuite.run.pipeline import RunSettings, Tracker, run_models
    from evalsuite.run.results import load_results

    calls: list[int] = []
    original = HFBackend.loglikelihood

    def counting(self, requests, **kwargs):  # the real backend, its calls counted
        calls.append(len(requests))
        return original(self, requests, **kwargs)

    monkeypatch.setattr(HFBackend, "loglikelihood", counting)
    settings = RunSettings(benchmarks=["mmlu"], kinds=["typo", "format"], variants=1, data=str(data),
                           backend={"kind": "hf", "dtype": "float32"})
    run_models(models, settings, tmp_path / "together", Tracker())
    assert len(calls) == 3  # base and two cells (the broken checkpoint never loads): one call each
    asked = sum(calls)
    calls.clear()
    monkeypatch.setattr(runner, "prefetch", lambda *args, **kwargs: None)
    run_models(models, settings, tmp_path / "apart", Tracker())
    assert len(calls) == 9 and sum(calls) == asked  # clean, typo, format one by one: the same requests
    columns = ["checkpoint", "task", "condition", "metric", "value", "low", "high", "n", "status"]
    together, apart = (load_results(tmp_path / name)[columns] for name in ("together", "apart"))
    pd.testing.assert_frame_equal(together, apart)


def test_rephrase_by_an_llm_paraphraser_reaches_the_model(models, data, tmp_path):
    """With a paraphraser in the settings, `rephrase` variants are the LLM's (here a scripted completer that
    passes the paraphrase checks) and those prompts are what the model is asked."""
    import re

    from perturbations.llm import Paraphraser

    from evalsuite.run.pipeline import RunSettings, run_models

    def complete(messages, seed, temperature):
        found = re.search(r"Question (\d+) about (\w+)\?", messages[-1]["content"])
        return f"What is question {found.group(1)} on {found.group(2)}?"

    settings = RunSettings(benchmarks=["mmlu"], kinds=["rephrase"], variants=1, data=str(data),
                           backend={"kind": "hf", "dtype": "float32"}, paraphraser=Paraphraser(complete, "scripted", None))
    run_models(models, settings, tmp_path / "out", None)
    (samples,) = (tmp_path / "out" / "checkpoints" / "base").glob("samples_*@rephrase.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert rows and all(re.search(r"What is question \d+ on \w+\?", r["arguments"][0][0]) for r in rows)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["settings"]["paraphraser"].startswith("llm:scripted:")


def _settings(data, **kw):
    from evalsuite.run.pipeline import RunSettings

    return RunSettings(**{"benchmarks": ["mmlu"], "kinds": [], "variants": 1, "data": str(data),
                          "backend": {"kind": "hf", "dtype": "float32"}, **kw})


def test_a_missing_judge_is_refused_before_any_generation(models, data, tmp_path):
    proc = _run(models, data, tmp_path / "out", ["--benchmarks", "mmlu,mtbench"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "mtbench need(s) a judge" in proc.stderr
    assert not (tmp_path / "out" / "requests.sqlite").exists() and not (tmp_path / "out" / "results.csv").exists()


def test_the_table_and_run_json_are_written_after_every_checkpoint(models, data, tmp_path):
    """A long run has partial results: when the second checkpoint starts, the first one's rows are on disk and
    run.json says the run is still going."""
    from evalsuite.run.pipeline import Tracker, run_models
    from evalsuite.run.results import load_results

    out = tmp_path / "out"
    seen = []

    def started(name, steps):
        if name != "base":
            seen.append((set(load_results(out).checkpoint), json.loads((out / "run.json").read_text())["state"]))

    outcome = run_models(models, _settings(data), out, Tracker(checkpoint=started))
    assert seen[0] == ({"base", "sft/broken"}, "running")  # base evaluated; broken recorded as failed up front
    assert len(outcome.failed) == 1 and json.loads((out / "run.json").read_text())["state"] == "finished"


def test_two_runs_into_one_folder_are_refused(models, data, tmp_path):
    from evalsuite.run.pipeline import run_lock

    out = tmp_path / "out"
    out.mkdir()
    with run_lock(out):
        proc = _run(models, data, out)
    assert proc.returncode == 2 and "another evalsuite run" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (out / "results.csv").exists()


def test_a_missing_0_1_cell_is_said_not_silently_dropped(tmp_path, data):
    """Without the (0, 1) cell of a stage there is nothing to test the other cells against: each says so."""
    from evalsuite.manifest import CheckpointManifest, write_manifest
    from evalsuite.run.pipeline import run_models

    root = tmp_path / "models"
    path = build_tiny_model(root / "sft" / "lp1_lr1", seed=2, max_positions=1024)
    manifest = CheckpointManifest(stage="sft", base_model="b", prompt_format="plain", dtype="float32")
    write_manifest(path, manifest.model_copy(update={"cell": {"lambda_p": 1.0, "lambda_r": 1.0}}))
    outcome = run_models(root, _settings(data), tmp_path / "out")
    note = outcome.table[outcome.table.condition == "significance_vs_0_1"]
    assert list(note.status) == ["skipped: no (0, 1) cell of stage sft in this grid and run to test against"]
    assert not outcome.failed


def test_cells_are_tested_against_the_0_1_cell_of_their_own_grid(tmp_path, data):
    """Two grids gathered under one folder (other base model): each cell's test uses its own grid's (0, 1) cell;
    a grid with two candidate references is not guessed at, it says so."""
    from evalsuite.manifest import CheckpointManifest, write_manifest
    from evalsuite.run.pipeline import run_models

    root = tmp_path / "models"
    cells = [("a/lp0_lr1", "A", (0.0, 1.0)), ("a/lp1_lr1", "A", (1.0, 1.0)), ("b/lp0_lr1", "B", (0.0, 1.0)),
             ("b/copy_lp0_lr1", "B", (0.0, 1.0)), ("b/lp1_lr1", "B", (1.0, 1.0))]
    for seed, (name, base, cell) in enumerate(cells):
        path = build_tiny_model(root / name, seed=seed, max_positions=1024)
        manifest = CheckpointManifest(stage="sft", base_model=base, prompt_format="plain", dtype="float32")
        write_manifest(path, manifest.model_copy(update={"cell": {"lambda_p": cell[0], "lambda_r": cell[1]}}))
    table = run_models(root, _settings(data), tmp_path / "out").table
    tested = table[table.metric == "mcnemar_p_vs_0_1"]
    assert list(tested.checkpoint) == ["a/lp1_lr1"]
    note = table[(table.condition == "significance_vs_0_1")]
    assert list(note.checkpoint) == ["b/lp1_lr1"] and note.status.iloc[0].startswith("skipped: 2 (0, 1) cells")


def test_checkpoint_folders_behind_symbolic_links_are_found_once(models, tmp_path):
    from evalsuite.run.discovery import discover

    gathered = tmp_path / "gathered"
    gathered.mkdir()
    (gathered / "a").symlink_to(models / "sft" / "lp0_lr1")
    (gathered / "b").symlink_to(models / "sft" / "lp0_lr1")  # the same checkpoint twice: once
    (gathered / "runs").symlink_to(models / "sft")
    (gathered / "loop").symlink_to(gathered)  # a loop: not followed again
    names = [c.name for c in discover(gathered)]
    assert sorted(names) == ["a", "runs/broken", "runs/lp1_lr1"]


def test_plain_cells_are_evaluated_with_the_bos_their_training_used(tmp_path, data):
    """A plain-format cell trained with a BOS-adding tokenizer (Llama, Mistral) records `add_bos_token: true`;
    `run` evaluates it the same way (an older manifest without the field: inferred from its tokenizer), unless
    the user says otherwise. Neither the shared tiny tokenizer nor SmolLM2's adds a BOS, so this model's does."""
    from evalsuite.backends import HFConfig, LoglikelihoodRequest, load_backend
    from evalsuite.manifest import CheckpointManifest, write_manifest
    from evalsuite.run.pipeline import run_models
    from tests.conftest import bos_model_dir

    root = tmp_path / "models"
    for name, recorded in (("recorded", True), ("older", None)):
        path = bos_model_dir(root / name)
        manifest = CheckpointManifest(stage="sft", base_model="b", prompt_format="plain", dtype="float32")
        write_manifest(path, manifest.model_copy(update={"add_bos_token": recorded}))
    out = tmp_path / "out"
    run_models(root, _settings(data), out)
    results = json.loads((out / "checkpoints" / "recorded" / "results_mmlu_loglikelihood.json").read_text())
    assert results["config"]["backend"]["add_bos_token"] is True
    sample = json.loads((out / "checkpoints" / "older" / "samples_mmlu_loglikelihood.jsonl").read_text().split("\n")[0])
    context, continuation = sample["arguments"][0]
    with load_backend(HFConfig(model=str(root / "older"), dtype="float32", add_bos_token=True)) as bos:
        expected = bos.loglikelihood([LoglikelihoodRequest(context, continuation)])[0].logprob
    assert sample["resps"][0][0][0] == pytest.approx(expected)
    run_models(root, _settings(data, backend={"kind": "hf", "dtype": "float32", "add_bos_token": False}), tmp_path / "o2")
    told = json.loads((tmp_path / "o2" / "checkpoints" / "recorded" / "results_mmlu_loglikelihood.json").read_text())
    assert told["config"]["backend"]["add_bos_token"] is False


def test_names_from_disk_reach_the_terminal_with_control_characters_escaped(tmp_path, data, tiny_model_dir):
    """A checkpoint folder named with a terminal escape sequence is shown, not obeyed (model text is printed the
    same way, through `evalsuite.cli.common.shown`)."""
    import shutil

    from evalsuite.cli.common import shown

    assert shown("ok\x1b[2J\x07[bold]x") == "ok\\x1b[2J\\x07\\[bold]x"
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "evil\x1b[2Jname")
    proc = subprocess.run(EVALSUITE + ["run", "--models", str(root), "--benchmarks", "mmlu", "--perturb", "", "--data",
                                       str(data), "--out", str(tmp_path / "out"), "--no-report"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\x1b" not in proc.stdout and "evil\\x1b[2Jname" in proc.stdout


def test_template_kind_asks_each_checkpoint_in_its_other_format(models, data, tmp_path):
    """`template` variants are asked in the format the checkpoint does not use (plain cells: the chat template);
    one variant per item, whatever --variants says."""
    from evalsuite.run.pipeline import run_models

    outcome = run_models(models, _settings(data, kinds=["template"], variants=3), tmp_path / "out")
    rows = [json.loads(x) for x in (tmp_path / "out" / "checkpoints" / "sft" / "lp0_lr1" /
                                    "samples_mmlu_loglikelihood@template.jsonl").read_text().split("\n") if x]
    assert len(rows) == 6 and all(r["prompt_format"] == "chat_template" for r in rows)
    assert all("<|im_start|>" in r["arguments"][0][0] for r in rows)
    table = outcome.table
    assert set(table[(table.condition == "template") & (table.metric == "agreement")].checkpoint) == {
        "base", "sft/lp0_lr1", "sft/lp1_lr1"}


def test_adapters_of_one_base_and_the_base_share_one_engine_in_evaluation_order():
    """Under vLLM the adapters of one base, and that base itself, are evaluated one after the other on one
    engine; a full checkpoint, an hf backend or `enable_lora: false` keeps its own engine."""
    from evalsuite.backends.config import HFConfig, VLLMConfig
    from evalsuite.run.engines import engine_groups, shared_engine_config

    v = dict(kind="vllm", dtype="float32")
    configs = [VLLMConfig(model="/m/base", **v),  # the base: joins its adapters' engine
               VLLMConfig(model="/m/full_cell", **v),  # full weights: its own engine
               VLLMConfig(model="/m/base", adapter="/c/a", **v, add_bos_token=True),
               VLLMConfig(model="/m/other", adapter="/c/x", **v),
               VLLMConfig(model="/m/base", adapter="/c/b", **v),
               HFConfig(model="/m/base", adapter="/c/h"),
               VLLMConfig(model="/m/base", adapter="/c/n", enable_lora=False, **v),
               None]  # a checkpoint whose config could not be made: evaluated (and failed) on its own
    order, shares = engine_groups(configs)
    assert order == [0, 2, 4, 1, 3, 5, 6, 7]
    assert shares == [True, False, True, True, True, False, False, False]
    assert shared_engine_config(configs[2]) == shared_engine_config(configs[4]) == shared_engine_config(configs[0])
    assert shared_engine_config(configs[2]).enable_lora and shared_engine_config(configs[2]).adapter is None
