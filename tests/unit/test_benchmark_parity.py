"""Parity with lm-eval-harness itself: lm-eval 0.4.13 runs here offline on local JSON tasks built from the
same fixture rows, on the same tiny model, and every item's prompt, continuation, log-likelihood,
generation, extracted answer and score must match ours. lm-eval runs once per prompt mode (plain, chat
template with multi-turn few-shot, chat template with single-turn few-shot) over all the tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

MMLU_TEST = {
    "anatomy": [
        ("Which bone is the longest in the human body?", ["Femur", "Tibia", "Humerus", "Radius"], 0),
        ("How many chambers does the human heart have?", ["Two", "Three", "Four", "Five"], 2),
        ("Which organ produces insulin?", ["Liver", "Pancreas", "Kidney", "Spleen"], 1),
    ],
    "astronomy": [
        ("Which planet is closest to the Sun?", ["Venus", "Earth", "Mars", "Mercury"], 3),
        ("What is the largest planet?", ["Jupiter", "Saturn", "Neptune", "Uranus"], 0),
        ("What does a light-year measure?", ["Time", "Distance", "Speed", "Brightness"], 1),
    ],
}
MMLU_DEV = {
    "anatomy": [("Where is the tibia?", ["Arm", "Leg", "Skull", "Spine"], 1),
                ("Which organ pumps blood?", ["Heart", "Lung", "Brain", "Skin"], 0)],
    "astronomy": [("What orbits the Earth?", ["The Sun", "Mars", "The Moon", "Venus"], 2),
                  ("What is the Sun?", ["A planet", "A star", "A moon", "A comet"], 1)],
}


BBH_ROWS = {
    "boolean_expressions": [{"input": "not ( True ) and ( True ) is", "target": "False"},
                            {"input": "True and not not ( not False ) is", "target": "True"}],
    "date_understanding": [{"input": "Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY?\n"
                                     "Options:\n(A) 12/11/1937\n(B) 12/25/1937\n(C) 01/04/1938", "target": "(B)"}],
    "object_counting": [{"input": "I have a chair, two potatoes, a cauliflower, a lettuce head, two tables, and a "
                                  "cabbage. How many vegetables do I have?", "target": "5"}],
    "word_sorting": [{"input": "Sort the following words alphabetically: List: oven costume counterpart",
                      "target": "costume counterpart oven"}],
}




def _rows(table: dict) -> list[dict]:
    return [{"question": q, "subject": s, "choices": c, "answer": a} for s, items in table.items() for q, c, a in items]


# task name -> (our benchmark spec, options, lm-eval YAML to include, num_fewshot); one lm-eval task per subset.
SETTINGS = {
    "mmlu0": ("mmlu", {"num_fewshot": 0}, "mmlu/default/_default_template_yaml", 0),
    "mmlu2": ("mmlu", {"num_fewshot": 2}, "mmlu/default/_default_template_yaml", 2),
    "mmlugen": ("mmlu:generative", {"max_new_tokens": 12}, "mmlu/generative/_default_template_yaml", 0),
    "bbh0": ("bbh:zeroshot", {"tasks": list(BBH_ROWS), "max_new_tokens": 12}, "bbh/zeroshot/{task}.yaml", 0),
    "bbhcot": ("bbh:cot", {"tasks": list(BBH_ROWS), "max_new_tokens": 12}, "bbh/cot_fewshot/{task}.yaml", 3),
}
MODES = {"plain": ("plain", False), "chat": ("chat_template", True), "chat1": ("chat_template", False)}
MODE_SETTINGS = {"plain": list(SETTINGS), "chat": ["mmlu2", "bbh0"], "chat1": ["mmlu2"]}


@pytest.fixture(scope="module")
def parity_data(tmp_path_factory) -> Path:
    """Our data folder (`mmlu/test.jsonl`, `mmlu/dev.jsonl`, `bbh/<task>.json`) and lm-eval task YAMLs over
    per-subset copies of the same rows."""
    from evalsuite.benchmarks.lmeval import tasks_dir

    root = tmp_path_factory.mktemp("parity")
    for sub in ("data/mmlu", "data/bbh", "tasks", "files"):
        (root / sub).mkdir(parents=True)
    write_jsonl(root / "data" / "mmlu" / "test.jsonl", _rows(MMLU_TEST))
    write_jsonl(root / "data" / "mmlu" / "dev.jsonl", _rows(MMLU_DEV))
    for task, rows in BBH_ROWS.items():
        (root / "data" / "bbh" / f"{task}.json").write_text(json.dumps({"canary": "fixture", "examples": rows}))
    for name, (spec, _, template, shots) in SETTINGS.items():
        subsets = list(MMLU_TEST) if spec.startswith("mmlu") else list(BBH_ROWS)
        for subset in subsets:
            if spec.startswith("mmlu"):
                files = {split: str(write_jsonl(root / "files" / f"{subset}_{split}.jsonl", _rows({subset: table[subset]})))
                         for split, table in (("test", MMLU_TEST), ("dev", MMLU_DEV))}
                extra = {"description": f"The following are multiple choice questions (with answers) about {subset}.\n\n"}
            else:
                files = {"test": str(write_jsonl(root / "files" / f"bbh_{subset}.jsonl", BBH_ROWS[subset]))}
                extra = {}
            if name == "mmlugen":  # lm-eval's task plus our flexible-extract filter (lm-eval's multi_choice_regex)
                from evalsuite.benchmarks.lmeval import task_config
                from evalsuite.benchmarks.mmlu import FLEXIBLE

                extra["filter_list"] = task_config(template)["filter_list"] + [
                    {"name": FLEXIBLE.name, "filter": [{"function": f, **kw} for f, kw in FLEXIBLE.steps]}]
            config = {"task": f"parity_{name}__{subset}", "include": str(tasks_dir() / template.format(task=subset)),
                      "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files},
                      "num_fewshot": shots, **extra}
            (root / "tasks" / f"{name}_{subset}.yaml").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def tiny_engine(tiny_long_model_dir):
    from evalsuite.backends import HFConfig, load_backend

    with load_backend(HFConfig(model=str(tiny_long_model_dir), dtype="float32", batch_size=4)) as engine:
        yield engine


@pytest.fixture(scope="module", params=list(MODES))
def both(request, parity_data, tiny_long_model_dir, tiny_engine):
    """(mode, ours, theirs): our samples keyed by (setting, subset, question, filter), lm-eval's by task."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from evalsuite.benchmarks import Prompter, get_benchmark
    from evalsuite.benchmarks.runner import run_benchmark

    mode = request.param
    fmt, multiturn = MODES[mode]
    prompter = Prompter(fmt, tiny_engine.tokenizer, fewshot_as_multiturn=multiturn)
    ours = {}
    for name in MODE_SETTINGS[mode]:
        spec, options, _, _ = SETTINGS[name]
        bench = get_benchmark(spec, **options)
        for s in run_benchmark(bench, bench.load(parity_data / "data"), tiny_engine, prompter).samples:
            ours[(name, s.subset, s.doc.get("question", s.doc.get("input")), s.filter)] = s
    tasks = [f"parity_{name}__{subset}" for name in MODE_SETTINGS[mode]
             for subset in (MMLU_TEST if SETTINGS[name][0].startswith("mmlu") else BBH_ROWS)]
    theirs = simple_evaluate(
        model="hf", model_args=f"pretrained={tiny_long_model_dir},dtype=float32,device=cpu", tasks=tasks,
        batch_size=4, log_samples=True, apply_chat_template=fmt == "chat_template", fewshot_as_multiturn=multiturn,
        task_manager=TaskManager(include_path=str(parity_data / "tasks")), gen_kwargs="max_gen_toks=12",
        random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
    )["samples"]
    return mode, ours, theirs


def test_every_item_matches_lm_eval(both):
    mode, ours, theirs = both
    compared = set()
    for task, samples in theirs.items():
        name, subset = task.removeprefix("parity_").split("__")
        for ref in samples:
            key = (name, subset, ref["doc"].get("question", ref["doc"].get("input")), ref["filter"])
            mine = ours[key]
            # The prompt and (log-likelihood tasks) every continuation, character for character.
            assert [a[0] for a in mine.arguments] == [a[0] for a in ref["arguments"]]
            if name.startswith("mmlu") and name != "mmlugen":
                assert [a[1] for a in mine.arguments] == [a[1] for a in ref["arguments"]]
                assert [r[0] for r in mine.filtered_resps] == pytest.approx([r[0] for r in ref["filtered_resps"]], abs=1e-4)
                assert mine.metrics["acc"] == ref["acc"]
            else:
                assert mine.resps == ref["resps"]  # the same greedy text
                assert mine.filtered_resps == ref["filtered_resps"]  # the same extracted answer
                assert mine.metrics["exact_match"] == ref["exact_match"]
            compared.add(key)
    assert compared == set(ours) and len(compared) > 0
    # Each setting was compared on every item and filter it has.
    expected = {"mmlu0": 6, "mmlu2": 6, "mmlugen": 12, "bbh0": 10, "bbhcot": 5}  # items × filters
    assert {n: sum(k[0] == n for k in compared) for n in MODE_SETTINGS[mode]} == {n: expected[n] for n in MODE_SETTINGS[mode]}
