"""The records a run folder holds for analysis and reports: the table's new columns (experiment, lineage,
benchmark, which metric `score` is and its scale), items.parquet (the paired unit), prompts.parquet,
checkpoints.parquet (training metrics from the manifests), `records_version`, the judge as plain data, and
`read_run`, which refuses what is not a run of this version with a message saying what to do."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import build_tiny_model, write_jsonl

CAIS = [{"question": f"Question {i} about {s}?", "subject": s, "choices": ["red", "green", "blue", "black"], "answer": i % 4}
        for s in ("anatomy", "astronomy") for i in range(3)]
LIMA = {"path": "/data/lima.jsonl", "completion_split": "all"}


def _manifest(path: Path, stage: str, base: str, cell, source: dict, metrics: dict, parent: str | None = None) -> None:
    from evalsuite.manifest import CheckpointManifest, write_manifest

    manifest = CheckpointManifest(stage=stage, base_model=base, parent=parent, prompt_format="plain", dtype="float32",
                                  source=source, metrics=metrics)
    write_manifest(path, manifest.model_copy(update={"cell": {"lambda_p": cell[0], "lambda_r": cell[1]}}))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Two grids trained from one base model on other data (lima: two SFT cells and a DPO cell on one of them;
    alpaca: one SFT cell), the base model itself (a plain Hugging Face folder) and a corrupt checkpoint."""
    root = tmp_path_factory.mktemp("models")
    base = str(build_tiny_model(root / "base", seed=0, max_positions=1024))
    for seed, (name, cell, data, fp) in enumerate([("lima/sft/lp0_lr1", (0.0, 1.0), LIMA, "fp-lima"),
                                                   ("lima/sft/lp1_lr1", (1.0, 1.0), LIMA, "fp-lima"),
                                                   ("alpaca/sft/lp0_lr1", (0.0, 1.0), {"path": "yahma/alpaca-cleaned"},
                                                    "fp-alpaca")], 1):
        path = build_tiny_model(root / name, seed=seed, max_positions=1024)
        _manifest(path, "sft", base, cell, {"dataset": data, "dataset_fingerprint": fp},
                  {"final_loss": 1.0 + seed, "train_loss": 2.0 + seed, "steps": 3}, parent=base)
    dpo = build_tiny_model(root / "lima" / "dpo" / "lp1_lr1", seed=7, max_positions=1024)
    _manifest(dpo, "dpo", base, (1.0, 1.0), {"dataset": {"path": "ultrafeedback.jsonl"}, "dataset_fingerprint": "fp-uf"},
              {"final_loss": 0.6, "train_loss": 0.7, "reward_accuracy": 0.75, "reward_margin": 0.5},
              parent=str(root / "lima" / "sft" / "lp1_lr1"))
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text('{"model_type": "llama"}')
    (root / "broken" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mmlu")
    write_jsonl(folder / "test.jsonl", CAIS)
    return folder


def _settings(data, **kw):
    from evalsuite.run.pipeline import RunSettings

    return RunSettings(**{"benchmarks": ["mmlu", "mmlu:generative"], "kinds": ["typo", "format"], "variants": 2,
                          "data": str(data), "backend": {"kind": "hf", "dtype": "float32"},
                          "options": {"mmlu": {"max_new_tokens": 4}}, **kw})


@pytest.fixture(scope="module")
def run(models, data, tmp_path_factory):
    from evalsuite.run.pipeline import run_models
    from evalsuite.run.records import read_run

    out = tmp_path_factory.mktemp("run") / "out"
    outcome = run_models(models, _settings(data), out)
    assert [s.checkpoint for s in outcome.failed] == ["broken"] * 2
    return read_run(out)


def test_results_say_which_grid_metric_and_scale_each_row_is(run, models):
    from evalsuite.run.records import RESULTS_COLUMNS

    df = run.results
    assert list(df.columns) == RESULTS_COLUMNS == [
        "experiment", "checkpoint", "stage", "lambda_p", "lambda_r", "parent", "base_model", "prompt_format", "task",
        "benchmark", "condition", "metric", "score_metric", "scale", "value", "low", "high", "n", "status"]
    assert run.run["records_version"] == 2
    scores = df[df.metric == "score"]
    assert dict(zip(scores.task, scores.score_metric)) == {"mmlu_loglikelihood": "acc,none",
                                                           "mmlu_generative": "exact_match,flexible-extract"}
    assert set(df.benchmark) == {"mmlu"} and set(df.scale) == {"proportion"}
    assert set(scores.prompt_format) == {"plain"}
    key = df.drop_duplicates("checkpoint").set_index("checkpoint").experiment
    lima, alpaca = key["lima/sft/lp0_lr1"], key["alpaca/sft/lp0_lr1"]
    assert re.fullmatch(r"base\w*/lima#[0-9a-f]{8}", lima) and re.fullmatch(r"base\w*/alpaca-cleaned#[0-9a-f]{8}", alpaca)
    # one grid per (base model, data): the other data's cells never share the key; DPO takes its SFT parent's
    assert key["lima/sft/lp1_lr1"] == key["lima/dpo/lp1_lr1"] == lima != alpaca
    assert key["base"] == "" and key["broken"] == ""
    lineage = df.drop_duplicates("checkpoint").set_index("checkpoint")
    assert lineage.parent["lima/dpo/lp1_lr1"] == str(models / "lima" / "sft" / "lp1_lr1")
    # the plain base folder takes the base model its cells name, so it can be every grid's (0, 0) cell
    assert lineage.base_model["base"] == lineage.base_model["lima/sft/lp0_lr1"] == str(models / "base")
    # the other data is another grid for the paired tests too: its (0, 1) cell is not lima's reference
    sig = df[df.metric == "mcnemar_p_vs_0_1"]
    assert sorted(sig.checkpoint.unique()) == ["lima/sft/lp1_lr1"]
    status = df[(df.metric == "status") & (df.checkpoint == "broken")]
    assert set(status.benchmark) == {"mmlu"} and set(status.score_metric) == {"acc,none", "exact_match,flexible-extract"}


def test_items_pair_clean_and_perturbed_rows_and_add_up_to_the_table(run):
    from evalsuite.run.records import ITEMS_COLUMNS

    items, df = run.items, run.results
    assert list(items.columns) == ITEMS_COLUMNS
    assert set(items.checkpoint) == set(df.checkpoint) - {"broken"}
    assert str(items.variant.dtype) == "Int64" and str(items.correct.dtype) == "boolean"
    assert items.duplicated(["checkpoint", "task", "condition", "item_id", "variant"]).sum() == 0
    for (ckpt, task), rows in items.groupby(["checkpoint", "task"]):
        clean = rows[rows.condition == "clean"]
        assert len(clean) == 6 and clean.variant.isna().all()
        for kind in ("typo", "format"):
            perturbed = rows[rows.condition == kind]
            assert set(perturbed.item_id) <= set(clean.item_id) and set(perturbed.variant.dropna()) <= {0, 1}
        for condition, group in rows.groupby("condition"):
            table = df[(df.checkpoint == ckpt) & (df.task == task) & (df.condition == condition) & (df.metric == "score")]
            assert group.groupby("item_id").score.mean().mean() == pytest.approx(table.value.iloc[0])
        # agreement recomputed from the paired rows: the same answer as the item's clean one
        typo = rows[rows.condition == "typo"].merge(clean[["item_id", "answer"]], on="item_id", suffixes=("", "_clean"))
        agreement = df[(df.checkpoint == ckpt) & (df.task == task) & (df.condition == "typo") & (df.metric == "agreement")]
        assert (typo.answer == typo.answer_clean).mean() == pytest.approx(agreement.value.iloc[0])
    assert (items.correct == (items.score == 1.0)).all()
    ll, gen = items[items.task == "mmlu_loglikelihood"], items[items.task == "mmlu_generative"]
    assert set(ll.answer) <= set("ABCD") and ll.response.isna().all()
    assert gen.response.notna().all() and items.judgement.isna().all() and (items.truncated == 0).all()
    assert set(items.experiment[items.checkpoint == "lima/dpo/lp1_lr1"]) == set(df.experiment[df.checkpoint == "lima/sft/lp0_lr1"])


def test_items_show_the_models_own_text(run):
    """The response is what the model generated, as the sample record has it (`resps`)."""
    items = run.items
    row = items[(items.task == "mmlu_generative") & (items.condition == "clean") & (items.checkpoint == "base")].iloc[0]
    samples = run.path / "checkpoints" / "base" / "samples_mmlu_generative.jsonl"
    record = next(r for r in map(json.loads, samples.read_text().splitlines()) if r["item_id"] == row.item_id)
    assert row.response == record["resps"][0][0]


def test_prompts_are_what_each_item_and_variant_asked(run):
    from evalsuite.run.records import PROMPTS_COLUMNS

    prompts, items = run.prompts, run.items
    assert list(prompts.columns) == PROMPTS_COLUMNS
    keys = ["task", "condition", "item_id", "variant"]
    one = items[items.checkpoint == "base"][keys]
    assert sorted(map(str, prompts[keys].itertuples(index=False))) == sorted(map(str, one.itertuples(index=False)))
    clean = prompts[prompts.condition == "clean"].set_index("item_id")
    question = CAIS[0]
    first = clean[clean.prompt.str.startswith(question["question"])]
    assert set(first.prompt) == {f"{question['question']}\nA. red\nB. green\nC. blue\nD. black\nAnswer:"}
    assert set(first.target) == {"A"} and first.prompt_format.isna().all()
    typo = prompts[prompts.condition == "typo"]
    assert (typo.prompt != typo.item_id.map(clean.prompt[clean.task == "mmlu_generative"])).any()
    # each prompt is in the request the model was asked (after the subject's header)
    samples = run.path / "checkpoints" / "base" / "samples_mmlu_generative@typo.jsonl"
    asked = {(r["item_id"], r["perturbation"]["variant"]): r["arguments"][0][0]
             for r in map(json.loads, samples.read_text().splitlines())}
    gen = typo[typo.task == "mmlu_generative"]
    assert len(gen) == len(asked) and all(p in asked[(i, v)] for i, v, p in zip(gen.item_id, gen.variant, gen.prompt))


def test_checkpoints_carry_the_manifests_training_metrics(run, models):
    from evalsuite.run.records import CHECKPOINTS_COLUMNS

    ck = run.checkpoints.set_index("checkpoint")
    assert list(run.checkpoints.columns) == CHECKPOINTS_COLUMNS
    assert sorted(ck.index) == ["alpaca/sft/lp0_lr1", "base", "broken", "lima/dpo/lp1_lr1", "lima/sft/lp0_lr1",
                                "lima/sft/lp1_lr1"]
    sft, dpo = ck.loc["lima/sft/lp1_lr1"], ck.loc["lima/dpo/lp1_lr1"]
    assert (sft.final_loss, sft.train_loss, sft.dataset, sft.dataset_fingerprint) == (3.0, 4.0, "/data/lima.jsonl", "fp-lima")
    assert pd_isna(sft.reward_accuracy) and pd_isna(sft.reward_margin)
    assert (dpo.reward_accuracy, dpo.reward_margin, dpo.final_loss, dpo.dataset_fingerprint) == (0.75, 0.5, 0.6, "fp-uf")
    assert dpo.experiment == sft.experiment and (dpo.lambda_p, dpo.lambda_r) == (1.0, 1.0)
    evaluated = ck.drop("broken")
    assert evaluated.fingerprint.str.fullmatch(r"[0-9a-f]{16}").all() and evaluated.problem.isna().all()
    assert evaluated.fingerprint.nunique() == len(evaluated)  # other weights, other fingerprint
    assert pd_isna(ck.fingerprint["broken"]) and ck.problem["broken"].startswith("corrupt weights file")
    assert set(evaluated.prompt_format) == {"plain"}


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_a_rerun_into_the_folder_keeps_items_to_its_own_checkpoints(run, models, data, tmp_path):
    """Re-running into a run folder with fewer checkpoints: the items left by the earlier run are removed with
    the rest of its rows, never mixed with this run's."""
    from evalsuite.run.pipeline import run_models
    from evalsuite.run.records import read_run

    out = tmp_path / "out"
    shutil.copytree(run.path, out)
    subset = tmp_path / "subset"
    subset.mkdir()
    (subset / "base").symlink_to(models / "base")
    run_models(subset, _settings(data, kinds=["typo"]), out)
    again = read_run(out)
    assert set(again.items.checkpoint) == set(again.results.checkpoint) == set(again.checkpoints.checkpoint) == {"base"}
    assert set(again.items.condition) == {"clean", "typo"} and set(again.prompts.condition) == {"clean", "typo"}


def test_read_run_refuses_other_folders_and_older_runs_with_what_to_do(run, tmp_path):
    from evalsuite.errors import ConfigError
    from evalsuite.run.records import read_items, read_run

    with pytest.raises(ConfigError, match="is not an evalsuite run folder .no results.parquet."):
        read_run(tmp_path)
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(run.path / "results.parquet", old / "results.parquet")
    record = {k: v for k, v in run.run.items() if k != "records_version"}  # what runs wrote before version 2
    (old / "run.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError) as err:
        read_run(old)
    assert "was written by an older evalsuite run (records version 1" in str(err.value)
    assert "re-run `evalsuite run` (answers come from its request store, so it is quick)" in str(err.value)
    (old / "run.json").write_text(json.dumps({**record, "records_version": 3}))
    with pytest.raises(ConfigError, match="newer evalsuite"):
        read_run(old)
    # per-task reads load only what a page needs
    part = read_items(run.path, columns=["checkpoint", "item_id", "score"], tasks=["mmlu_generative"])
    assert list(part.columns) == ["checkpoint", "item_id", "score"]
    assert len(part) == (run.items.task == "mmlu_generative").sum()
    assert list(read_run(run.path, item_columns=["item_id"]).items.columns) == ["item_id"]


def test_experiment_keys_tell_grids_apart(tmp_path):
    """Other base model, other data or other prompt format: another key; a DPO cell whose SFT parent moved with
    it finds the parent where `evalsuite train` put it; with no parent to read it still gets a key of its own."""
    from evalsuite.manifest import CheckpointManifest, write_manifest
    from evalsuite.run.discovery import experiment_key, inspect

    key = experiment_key("org/Llama-3-8B", "lima", "fp1", "plain")
    assert re.fullmatch(r"Llama-3-8B/lima#[0-9a-f]{8}", key)
    others = {experiment_key("org/Mistral-7B", "lima", "fp1", "plain"), experiment_key("other/Llama-3-8B", "lima", "fp1", "plain"),
              experiment_key("org/Llama-3-8B", "lima", "fp2", "plain"), experiment_key("org/Llama-3-8B", "lima", "fp1", "chat_template")}
    assert key not in others and len(others) == 4
    tree = tmp_path / "moved"
    sft = tree / "sft" / "lp0_lr1"
    sft.mkdir(parents=True)
    spec = {"dataset": {"path": "GAIR/lima", "completion_split": "short"}, "dataset_fingerprint": "fp-short"}
    write_manifest(sft, CheckpointManifest(stage="sft", base_model="org/Llama-3-8B", prompt_format="plain",
                                           dtype="float32", source=spec))
    dpo = tree / "dpo" / "lp0_lr1"
    dpo.mkdir(parents=True)
    write_manifest(dpo, CheckpointManifest(stage="dpo", base_model="org/Llama-3-8B", prompt_format="plain", dtype="float32",
                                           parent="/elsewhere/before/the/move/sft/lp0_lr1", source={"dataset_fingerprint": "x"}))
    assert inspect(tree, sft).experiment == inspect(tree, dpo).experiment == experiment_key(
        "org/Llama-3-8B", "lima-short", "fp-short", "plain")
    shutil.rmtree(sft)
    orphan = inspect(tree, dpo).experiment
    assert orphan.startswith("Llama-3-8B/sft-grid-sft#") and orphan != experiment_key("org/Llama-3-8B", "lima-short",
                                                                                      "fp-short", "plain")
    assert inspect(tree, dpo).grid == ("dpo", orphan, "x")


class ScriptedJudge:
    """A judge endpoint at the edge of the test: rates every answer 7 (turn 1) or 4 (turn 2)."""

    def __init__(self):
        self.calls = 0

    def generate(self, requests, progress=False, on_result=None):
        from evalsuite.backends import Generation

        self.calls += len(requests)
        out = [Generation(f"Fine. Rating: [[{4 if 'second turn' in r.messages[-1]['content'] else 7}]]", None, "stop")
               for r in requests]
        for i, g in enumerate(out):
            if on_result is not None:
                on_result(i, g)
        return out

    def close(self):
        pass


def _mtbench_data(folder: Path) -> Path:
    """Two MT-Bench questions (one with reference answers) and FastChat-shaped judge prompts."""
    bench = folder / "mtbench"
    (bench / "reference_answer").mkdir(parents=True)
    write_jsonl(bench / "question.jsonl", [
        {"question_id": 81, "category": "writing", "turns": ["Write a short poem about the sea.", "Now make it rhyme."]},
        {"question_id": 111, "category": "math", "turns": ["What is two plus two?", "And three plus three?"]}])
    write_jsonl(bench / "reference_answer" / "gpt-4.jsonl", [{"question_id": 111, "choices": [{"turns": ["4", "6"]}]}])
    single = "[Question]\n{question}\n[Answer]\n{answer}"
    multi = "second turn\n{question_1}\n{answer_1}\n{question_2}\n{answer_2}"
    write_jsonl(bench / "judge_prompts.jsonl", [
        {"name": "single-v1", "system_prompt": "Rate it.", "prompt_template": single},
        {"name": "single-v1-multi-turn", "system_prompt": "Rate it.", "prompt_template": multi},
        {"name": "single-math-v1", "system_prompt": "Rate it.", "prompt_template": single + "\n{ref_answer_1}"},
        {"name": "single-math-v1-multi-turn", "system_prompt": "Rate it.",
         "prompt_template": multi + "\n{ref_answer_1}\n{ref_answer_2}"}])
    return folder


def test_judged_benchmark_records_ratings_judgements_and_the_judge_as_data(tmp_path, tiny_long_model_dir):
    from evalsuite.backends.config import OpenAIConfig
    from evalsuite.benchmarks.judge import Judge, JudgeCache
    from evalsuite.run.pipeline import RunSettings, run_models
    from evalsuite.run.records import read_run

    models = tmp_path / "models"
    models.mkdir()
    (models / "base").symlink_to(tiny_long_model_dir)
    judge = Judge(OpenAIConfig(model="judge-llm", base_url="http://127.0.0.1:9/v1"), cache=JudgeCache(tmp_path / "j.sqlite"),
                  backend=ScriptedJudge(), max_new_tokens=64, retries=1)
    settings = RunSettings(benchmarks=["mtbench"], kinds=["typo"], variants=1, data=str(_mtbench_data(tmp_path / "data")),
                           backend={"kind": "hf", "dtype": "float32"},
                           options={"mtbench": {"judge": judge, "max_new_tokens": 3}})
    run_models(models, settings, tmp_path / "out")
    tables = read_run(tmp_path / "out")
    described = {"model": "judge-llm", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "max_new_tokens": 64,
                 "temperature": 0.0, "retries": 1, "retry_temperature": 0.7}
    recorded = tables.run["settings"]["options"]["mtbench"]["judge"]
    assert isinstance(recorded, dict) and described.items() <= recorded.items()
    result = json.loads((tmp_path / "out" / "checkpoints" / "base" / "results_mtbench_single.json").read_text())
    assert described.items() <= result["config"]["benchmark"]["judge"].items()
    score = tables.results[(tables.results.metric == "score") & (tables.results.condition == "clean")]
    assert (score.score_metric.iloc[0], score.scale.iloc[0], score.benchmark.iloc[0]) == ("score,none", "rating_1_10", "mtbench")
    assert score.value.iloc[0] == pytest.approx(5.5)  # the mean over both turns' ratings
    items = tables.items
    assert (items.score == 5.5).all() and items.correct.isna().all() and items.answer.isna().all()
    assert items.judgement.str.contains(r"^Fine\. Rating: \[\[7\]\]\n\n\[turn 2\]\nFine\. Rating: \[\[4\]\]$").all()
    assert items.response.str.contains("\n\n[turn 2]\n", regex=False).all()
    prompts = tables.prompts.set_index(["item_id", "condition"])
    assert prompts.prompt[("mtbench/81", "clean")] == "Write a short poem about the sea.\n\n[turn 2]\nNow make it rhyme."
    assert prompts.target[("mtbench/111", "clean")] == "4\n\n[turn 2]\n6" and pd_isna(prompts.target[("mtbench/81", "clean")])


@pytest.mark.parametrize("spec,metric,scale", [
    ("mmlu", "acc,none", "proportion"), ("mmlu:generative", "exact_match,flexible-extract", "proportion"),
    ("bbh", "exact_match,flexible-extract", "proportion"), ("bbh:cot", "exact_match,get-answer", "proportion"),
    ("ifeval", "prompt_level_strict_acc,none", "proportion"), ("mtbench", "score,none", "rating_1_10"),
    ("alpacaeval", "win,none", "proportion")])
def test_each_benchmark_declares_its_score_metric_and_scale(spec, metric, scale):
    from evalsuite.benchmarks import get_benchmark

    bench = get_benchmark(spec)
    assert (bench.score_metric, bench.scale) == (metric, scale)
    assert bench.score_metric == ",".join(bench.primary_for())


def test_the_response_is_the_models_own_text_before_options_are_read_back():
    """An answer to a variant that labels options "(1)".."(4)" is scored in MMLU's labels, and recorded as said."""
    from dataclasses import replace

    from evalsuite.backends import Generation
    from evalsuite.benchmarks import Prompter, get_benchmark
    from evalsuite.benchmarks.base import Item, Perturbed

    bench = get_benchmark("mmlu:generative")
    doc = {"question": "Which colour?", "subject": "art", "choices": ["red", "green", "blue", "black"], "answer": 1}
    clean = Item("art/1", "art", doc, "B")
    variant = replace(clean, perturbed=Perturbed("format", 0, 0.1, "Which colour?\n(1) red\n(2) green\n(3) blue\n(4) black\nAnswer:",
                                                   option_style="(1)"))
    prompter = Prompter("plain")
    items = [clean, variant]
    samples = bench.score(items, [bench.requests(i, prompter) for i in items],
                          [[Generation("(B) green", None, "stop")], [Generation("(2) green", None, "stop")]], prompter)
    flexible = [s for s in samples if s.filter == "flexible-extract"]
    assert [s.metrics["exact_match"] for s in flexible] == [1.0, 1.0]  # the variant's answer read back as (B)
    assert [bench.response(s) for s in flexible] == ["(B) green", "(2) green"]
    assert "raw_response" not in flexible[0].extra and flexible[1].resps[0][0] != "(2) green"
    assert bench.prompt_turns(variant) == [variant.perturbed.text] and bench.prompt_turns(clean) == [
        "Which colour?\nA. red\nB. green\nC. blue\nD. black\nAnswer:"]
