"""Parity with lm-eval-harness itself: lm-eval 0.4.13 runs here offline on local JSON tasks built from the
same fixture rows, on the same tiny model, and every item's prompt, continuation, log-likelihood and
prediction must match ours."""

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


def _rows(table: dict) -> list[dict]:
    return [{"question": q, "subject": s, "choices": c, "answer": a} for s, items in table.items() for q, c, a in items]


@pytest.fixture(scope="module")
def mmlu_data(tmp_path_factory) -> Path:
    """Our data folder (all subjects) and one lm-eval task per subject on per-subject files."""
    root = tmp_path_factory.mktemp("mmlu")
    (root / "data").mkdir()
    write_jsonl(root / "data" / "test.jsonl", _rows(MMLU_TEST))
    write_jsonl(root / "data" / "dev.jsonl", _rows(MMLU_DEV))
    from evalsuite.benchmarks.lmeval import tasks_dir

    tasks = root / "tasks"
    tasks.mkdir()
    for subject in MMLU_TEST:
        files = {}
        for split, table in (("test", MMLU_TEST), ("dev", MMLU_DEV)):
            files[split] = str(write_jsonl(root / f"{subject}_{split}.jsonl", _rows({subject: table[subject]})))
        for variant, template in (("ll", "default/_default_template_yaml"), ("gen", "generative/_default_template_yaml")):
            config = {
                "task": f"parity_mmlu_{variant}_{subject}", "include": str(tasks_dir() / "mmlu" / template),
                "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files},
                "description": f"The following are multiple choice questions (with answers) about {subject}.\n\n",
            }
            (tasks / f"{variant}_{subject}.yaml").write_text(json.dumps(config))
    return root


def run_lm_eval(model_dir: Path, tasks_path: Path, tasks: list[str], *, num_fewshot: int, chat: bool,
                multiturn: bool = True, gen_kwargs: str | None = None) -> dict[str, list[dict]]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    out = simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32,device=cpu", tasks=tasks,
        num_fewshot=num_fewshot, batch_size=4, log_samples=True, apply_chat_template=chat,
        fewshot_as_multiturn=chat and multiturn,
        task_manager=TaskManager(include_path=str(tasks_path)), gen_kwargs=gen_kwargs, random_seed=0,
        numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
    )
    return out["samples"]


@pytest.fixture(scope="module")
def tiny_engine(tiny_long_model_dir):
    from evalsuite.backends import HFConfig, load_backend

    with load_backend(HFConfig(model=str(tiny_long_model_dir), dtype="float32", batch_size=4)) as engine:
        yield engine


@pytest.mark.parametrize("num_fewshot,chat,multiturn", [(0, False, False), (2, False, False), (2, True, True),
                                                        (2, True, False)])
def test_mmlu_loglikelihood_matches_lm_eval_per_item(mmlu_data, tiny_long_model_dir, tiny_engine, num_fewshot, chat,
                                                     multiturn):
    from evalsuite.benchmarks import Prompter, get_benchmark
    from evalsuite.benchmarks.runner import run_benchmark

    bench = get_benchmark("mmlu", num_fewshot=num_fewshot)
    items = bench.load(mmlu_data / "data")
    prompter = Prompter("chat_template" if chat else "plain", tiny_engine.tokenizer, fewshot_as_multiturn=multiturn)
    ours = {(s.subset, s.doc["question"]): s for s in run_benchmark(bench, items, tiny_engine, prompter).samples}
    theirs = run_lm_eval(tiny_long_model_dir, mmlu_data / "tasks", [f"parity_mmlu_ll_{s}" for s in MMLU_TEST],
                         num_fewshot=num_fewshot, chat=chat, multiturn=multiturn)
    compared = 0
    for task, samples in theirs.items():
        subject = task.rsplit("_", 1)[-1]
        for ref in samples:
            mine = ours[(subject, ref["doc"]["question"])]
            assert [list(a) for a in ref["arguments"]] == mine.arguments  # prompt and continuations, exactly
            ref_ll = [r[0] for r in ref["filtered_resps"]]
            assert [r[0] for r in mine.filtered_resps] == pytest.approx(ref_ll, abs=1e-4)
            assert mine.metrics["acc"] == ref["acc"]
            compared += 1
    assert compared == 6


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


@pytest.fixture(scope="module")
def bbh_data(tmp_path_factory) -> Path:
    """Our folder of `<task>.json` files in BIG-Bench-Hard's layout, and lm-eval tasks over the same rows."""
    from evalsuite.benchmarks.lmeval import tasks_dir

    root = tmp_path_factory.mktemp("bbh")
    (root / "data").mkdir()
    (root / "tasks").mkdir()
    for task, rows in BBH_ROWS.items():
        (root / "data" / f"{task}.json").write_text(json.dumps({"canary": "fixture", "examples": rows}))
        data = str(write_jsonl(root / f"{task}.jsonl", rows))
        for variant, folder in (("zeroshot", "zeroshot"), ("cot", "cot_fewshot")):
            config = {"task": f"parity_bbh_{variant}_{task}", "include": str(tasks_dir() / "bbh" / folder / f"{task}.yaml"),
                      "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": {"test": data}}}
            (root / "tasks" / f"{variant}_{task}.yaml").write_text(json.dumps(config))
    return root


@pytest.mark.parametrize("variant,chat", [("zeroshot", False), ("zeroshot", True), ("cot", False)])
def test_bbh_generations_and_extracted_answers_match_lm_eval(bbh_data, tiny_long_model_dir, tiny_engine, variant, chat):
    from evalsuite.benchmarks import Prompter, get_benchmark
    from evalsuite.benchmarks.runner import run_benchmark

    bench = get_benchmark(f"bbh:{variant}", tasks=list(BBH_ROWS), max_new_tokens=12)
    items = bench.load(bbh_data / "data")
    prompter = Prompter("chat_template" if chat else "plain", tiny_engine.tokenizer)
    ours = {(s.subset, s.doc["input"], s.filter): s for s in run_benchmark(bench, items, tiny_engine, prompter).samples}
    theirs = run_lm_eval(tiny_long_model_dir, bbh_data / "tasks", [f"parity_bbh_{variant}_{t}" for t in BBH_ROWS],
                         num_fewshot=3 if variant == "cot" else 0, chat=chat, gen_kwargs="max_gen_toks=12")
    compared = set()
    for task, samples in theirs.items():
        subset = task.removeprefix(f"parity_bbh_{variant}_")
        for ref in samples:
            mine = ours[(subset, ref["doc"]["input"], ref["filter"])]
            assert mine.arguments[0][0] == ref["arguments"][0][0]  # the prompt, exactly
            assert mine.resps == ref["resps"]  # the same greedy text
            assert mine.filtered_resps == [ref["filtered_resps"]] or mine.filtered_resps == ref["filtered_resps"]
            assert mine.metrics["exact_match"] == ref["exact_match"]
            compared.add((subset, ref["doc"]["input"], ref["filter"]))
    filters = {"zeroshot": 2, "cot": 1}[variant]
    assert len(compared) == 5 * filters == len(ours)
