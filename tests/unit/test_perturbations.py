"""The `perturbations` package on real benchmark items: determinism, per-item seeding, protected spans,
severity, options, BBH symbols, multi-turn consistency, the LLM paraphrase checks, and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EVALSUITE

WHEELS = Path(__file__).resolve().parents[2] / ".venv" / "evalsuite-wheels"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from evalsuite.benchmarks.prepare import prepare_data

    return prepare_data(tmp_path_factory.mktemp("data") / "prepared", bbh_source="lm-eval-exemplars",
                        packages_dir=WHEELS, log=lambda _: None)


@pytest.fixture(scope="module")
def ifeval_rows(data_dir):
    return [json.loads(line) for line in (data_dir / "ifeval" / "test.jsonl").read_text().splitlines()]


def items_of(spec, data_dir, limit=None):
    from evalsuite.benchmarks import get_benchmark

    bench = get_benchmark(spec)
    return [bench.perturbation_item(it) for it in bench.load(data_dir, limit=limit)], bench


def test_default_rendering_is_the_benchmarks_own_prompt(data_dir, ifeval_rows):
    """Unperturbed, every item renders exactly lm-eval's doc_to_text (MMLU, BBH zero-shot and CoT), the IFEval
    prompt, the AlpacaEval instruction and both MT-Bench turns, so a variant differs only by its change."""
    from evalsuite.benchmarks.bbh import task_names
    from evalsuite.benchmarks.lmeval import render, task_config

    mmlu_items, mmlu = items_of("mmlu", data_dir, limit=1)
    template = task_config("mmlu/generative/_default_template_yaml")["doc_to_text"]
    for item, src in zip(mmlu_items, mmlu.load(data_dir, limit=1)):
        assert item.turns[0].render() == render(template, src.doc)
    for spec, folder in (("bbh", "zeroshot"), ("bbh:cot", "cot_fewshot")):
        source = data_dir / "bbh"  # the task files alone: bbh:cot refuses the exemplar source by name
        items, bench = items_of(spec, source)
        assert len(items) == 81
        for item, src in zip(items, bench.load(source)):
            assert item.turns[0].render() == render(task_config(f"bbh/{folder}/{src.subset}.yaml")["doc_to_text"], src.doc)
    with_options = [i for i in items if i.turns[0].options is not None]
    assert len(with_options) > 30 and len({i.id.split("/")[0] for i in with_options}) < len(task_names())
    ifeval, _ = items_of("ifeval", data_dir)
    assert [i.turns[0].render() for i in ifeval] == [r["prompt"] for r in ifeval_rows]
    mt, mt_bench = items_of("mtbench", data_dir)
    assert all([d.render() for d in i.turns] == src.doc["turns"] for i, src in zip(mt, mt_bench.load(data_dir)))


def _variant_texts(item, kind_name, seed=7, severity=0.3, variants=2):
    from perturbations import get_kind, perturb

    return [perturb(item, get_kind(kind_name), v, seed, severity).to_row() for v in range(variants)]


def test_variants_depend_only_on_the_item_not_on_order_or_process(data_dir):
    """The same (item, kind, variant, seed, severity) gives the same row alone, after other items, in reverse
    order, and in another process with a different hash seed."""
    items, _ = items_of("ifeval", data_dir, limit=None)
    items = items[:12]
    for kind in ("typo", "rephrase", "format"):
        forward = [_variant_texts(i, kind) for i in items]
        backward = [_variant_texts(i, kind) for i in reversed(items)][::-1]
        assert forward == backward
        assert _variant_texts(items[5], kind) == forward[5]
        assert len({json.dumps(r[0]["text"]) for r in forward}) == len(items)  # not one text for all
        assert any(r[0]["text"] != r[1]["text"] for r in forward)  # variant index matters
    code = ("import json,sys; from tests.unit.test_perturbations import items_of, _variant_texts; from pathlib import Path;"
            "items,_=items_of('ifeval', Path(sys.argv[1])); print(json.dumps([_variant_texts(i,'typo') for i in items[:12]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONHASHSEED": "987"}, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [_variant_texts(i, "typo") for i in items]


def _kwarg_strings(kwargs_list):
    """What IFEval's checkers read from the prompt's kwargs, computed here independently of the package."""
    from lm_eval.tasks.ifeval.instructions_util import LANGUAGE_CODES

    out = []
    for kwargs in kwargs_list:
        for key, value in kwargs.items():
            if value is None or key in ("num_words", "num_sentences", "num_highlights", "frequency", "num_paragraphs",
                                        "let_frequency", "num_bullets", "num_placeholders", "capital_frequency",
                                        "num_sections", "nth_paragraph"):
                continue
            if key == "language":
                out.append((key, LANGUAGE_CODES[value]))
            elif isinstance(value, list):
                out += [(key, v) for v in value]
            else:
                out.append((key, str(value)))
    return out


def _occurrences(text, s):
    """Case-insensitive occurrences of `s` not inside a longer word (the letter "o" as a word, not in "for")."""
    return len(re.findall(rf"(?<![A-Za-z]){re.escape(s)}(?![A-Za-z])", text, re.IGNORECASE))


@pytest.mark.parametrize("kind", ["typo", "rephrase", "format"])
def test_ifeval_protected_spans_survive_on_every_real_prompt(data_dir, ifeval_rows, kind):
    """Every IFEval prompt, severity 0.5: each string a checker reads (keywords, forbidden words, end phrase,
    postscript marker, section splitter, first word, relation, text to repeat, language name), every number,
    quoted string and placeholder occurs in the variant at least as often as in the prompt."""
    from perturbations import get_kind, perturb
    from perturbations.benchmarks import ifeval_item

    k = get_kind(kind)
    seen_keys, changed = set(), 0
    number_or_quote = re.compile(r"\d+|\"[^\"\n]*\"|\[[^\]\n]*\]")
    for row in ifeval_rows:
        v = perturb(ifeval_item(f"ifeval/{row['key']}", row), k, 0, 3, 0.5)
        if v.skipped_reason:
            continue
        changed += v.text != row["prompt"]
        for key, s in _kwarg_strings(row["kwargs"]):
            seen_keys.add(key)
            assert _occurrences(v.text, s) >= _occurrences(row["prompt"], s), (key, s, v.text)
        for piece in set(number_or_quote.findall(row["prompt"])):
            assert v.text.count(piece) >= row["prompt"].count(piece), (piece, v.text)
    assert seen_keys >= {"keywords", "forbidden_words", "end_phrase", "postscript_marker", "section_spliter",
                         "first_word", "relation", "prompt_to_repeat", "language", "keyword", "letter"}
    assert changed > 0.6 * len(ifeval_rows)


def test_severity_raises_mean_edit_distance(data_dir):
    from perturbations import get_kind, perturb

    items, _ = items_of("ifeval", data_dir)
    items = items[:60]
    for kind, levels in (("typo", (0.05, 0.1, 0.2, 0.4, 0.8)), ("rephrase", (0.1, 0.5, 1.0)), ("format", (0.1, 1.0))):
        k = get_kind(kind)
        means = []
        for sev in levels:
            rows = [perturb(i, k, 0, 11, sev) for i in items]
            means.append(sum(r.edit_distance for r in rows) / len(rows))
        assert means == sorted(means) and len(set(means)) == len(means), (kind, means)


def test_mcq_options_untouched_and_labels_reported(data_dir):
    """MMLU: every option text is in every variant; typo and rephrase keep the labels, a format change of the
    option style reports the new ones, and they are what the variant shows."""
    from perturbations import get_kind, perturb

    items, _ = items_of("mmlu", data_dir, limit=1)
    styles = set()
    for kind in ("typo", "rephrase", "format"):
        for item in items:
            choices = item.turns[0].options.texts
            v = perturb(item, get_kind(kind), 0, 5, 0.5)
            if v.skipped_reason:
                assert kind == "rephrase"
                continue
            if kind != "format":
                assert all(f"\n{label}. {c}" in v.text for label, c in zip("ABCD", choices)), v.text
                assert v.choice_labels == ["A", "B", "C", "D"]
            else:
                assert all(c in v.text for c in choices)
                styles.add(tuple(v.choice_labels))
                for label, choice in zip(v.choice_labels, choices):  # "B" shows as "B." or "B)", "(B)" as itself
                    assert re.search(re.escape(label) + r"[.)]? " + re.escape(choice), v.text), (label, v.text)
    assert len(styles) > 3


def _all_items(data_dir):
    """A few items of every benchmark, MT-Bench's two turns included."""
    out = []
    for spec, limit in (("mmlu", 1), ("bbh", 1), ("ifeval", 20), ("mtbench", 1), ("alpacaeval", 20)):
        out += items_of(spec, data_dir, limit=limit)[0]
    return out


def test_format_is_layout_only(data_dir):
    """`format` never changes the prompt format, at any severity (it used to switch plain / chat template with
    probability = severity, i.e. on every variant at severity 1)."""
    from perturbations import get_kind, perturb

    kind, changed = get_kind("format"), 0
    for item in _all_items(data_dir):
        for severity in (0.3, 1.0):
            v = perturb(item, kind, 0, 8, severity)
            assert v.prompt_format is None and v.to_row().get("prompt_format") is None, (item.id, v.changes)
            assert all(c.op != "prompt_format" for c in v.changes)
            changed += v.skipped_reason is None
    assert changed > 0


def test_template_asks_the_clean_text_in_the_other_prompt_format(data_dir):
    """`template` on every benchmark: the clean text (every turn) with prompt_format "other", one recorded
    change and nothing else; the same rows in any order; one variant per item; severity 0 skips."""
    from perturbations import OTHER_PROMPT_FORMAT, get_kind, perturb, perturb_items

    items = _all_items(data_dir)
    kind = get_kind("template")
    rows = [r.to_row() for r in perturb_items(items, kind, variants=2, seed=3, severity=0.1)]
    assert [r["id"] for r in rows] == [i.id for i in items]  # one variant each, though two were asked for
    assert rows == [perturb(i, kind, 0, 3, 0.1).to_row() for i in reversed(items)][::-1]
    for item, row in zip(items, rows):
        clean = [d.render() for d in item.turns]
        assert row.get("turns", [row.get("text")]) == clean and row["edit_distance"] == 0
        assert row["prompt_format"] == OTHER_PROMPT_FORMAT and row["skipped_reason"] is None
        assert row["changes"] == [{"turn": 0, "field": "layout", "op": "prompt_format", "before": "'run'",
                                   "after": "'other'", "start": -1}]
        assert row.get("choice_labels") == perturb(item, get_kind("typo"), 0, 3, 0.1).choice_labels
        assert {k: v for k, v in perturb(item, kind, 0, 3, 1.0).to_row().items() if k != "severity"} == \
            {k: v for k, v in row.items() if k != "severity"}  # severity does not apply
        assert perturb(item, kind, 0, 3, 0.0).skipped_reason == "severity 0"


def test_bbh_symbolic_content_is_protected(data_dir):
    from perturbations import get_kind, perturb

    items, bench = items_of("bbh", data_dir)
    by_task = {}
    for item, src in zip(items, bench.load(data_dir)):
        by_task.setdefault(src.subset, []).append((item, src.doc["input"]))
    for kind in ("typo", "rephrase"):
        for task in ("boolean_expressions", "multistep_arithmetic_two", "web_of_lies", "object_counting"):
            assert all(perturb(i, get_kind(kind), 0, 1, 1.0).skipped_reason for i, _ in by_task[task])
    for task, marker in (("dyck_languages", "Input:"), ("word_sorting", "List:")):
        for item, text in by_task[task]:
            v = perturb(item, get_kind("typo"), 0, 1, 1.0)
            assert text[text.index(marker):] in (v.text or ""), v.text
    for item, text in by_task["tracking_shuffled_objects_three_objects"]:
        v = perturb(item, get_kind("typo"), 0, 1, 1.0)
        capitalised = re.findall(r"\b[A-Z][a-z]+\b", text)
        names = {n for n in capitalised if capitalised.count(n) >= 2}  # the players recur; "Then" does not
        assert len(names) >= 3
        assert all(v.text.count(n) == f"Q: {text}\nA:".count(n) for n in names) if v.text else True


def test_mtbench_turns_share_one_stream_and_one_layout(data_dir):
    from perturbations import get_kind, perturb

    items, _ = items_of("mtbench", data_dir)
    for item in items[:10]:
        fmt = perturb(item, get_kind("format"), 0, 2, 0.5)
        assert len(fmt.turns) == 2
        label = fmt.turns[0].split(":")[0]
        if fmt.turns[0] != item.turns[0].render():
            assert fmt.turns[1].startswith(label) or fmt.turns[1] != item.turns[1].render()
        typo = perturb(item, get_kind("typo"), 0, 2, 0.3)
        assert all(a != b for a, b in zip(typo.turns, [d.render() for d in item.turns]))
        assert {c["turn"] for c in typo.to_row()["changes"]} == {0, 1}
    # one stream: turn 2's typos depend on turn 1 (a different first turn shifts the draws for the second)
    from dataclasses import replace

    item = items[0]
    other = replace(item, turns=(item.turns[0].with_texts([item.turns[0].fields[0].text + " Extra words here now."]),
                                 item.turns[1]))
    assert perturb(item, get_kind("typo"), 0, 2, 0.5).turns[1] != perturb(other, get_kind("typo"), 0, 2, 0.5).turns[1]


def test_llm_paraphrase_checks_cache_and_skip(tmp_path):
    """The paraphrase checks reject an answer, a dropped number, a dropped keyword; the accepted paraphrase is
    cached per (prompt, seed) and a rerun asks nothing; all rejected → a recorded skip."""
    from perturbations import Document, Field, Item, get_kind, perturb
    from perturbations.llm import Cache, Paraphraser

    replies = iter(["Sure! Here is a poem about the sea.", "Write a poem on the ocean using the word blue.",
                    "Compose 3 lines about the ocean without using the word blue.", "never used"])
    calls = []

    def complete(messages, seed, temperature):
        calls.append((messages[-1]["content"], seed))
        return next(replies)

    item = Item("x/1", (Document((Field("prompt", "Write 3 lines about the sea without using the word blue.",
                                        protected=("blue",)),)),))
    para = Paraphraser(complete, "scripted", Cache(tmp_path / "c.sqlite"))
    v = perturb(item, get_kind("rephrase", paraphraser=para), 0, 9, 0.5)
    assert v.text == "Compose 3 lines about the ocean without using the word blue." and len(calls) == 3
    assert perturb(item, get_kind("rephrase", paraphraser=para), 0, 9, 0.5).text == v.text and len(calls) == 3
    stubborn = Paraphraser(lambda m, s, t: "The answer is 42.", "stubborn", None)
    skipped = perturb(item, get_kind("rephrase", paraphraser=stubborn), 0, 9, 0.5)
    assert skipped.text is None and "all 3 paraphrases rejected" in skipped.skipped_reason
    from perturbations.llm import rejection

    assert rejection("What is 2+2?", "4", ()) == "no longer a question (answers it?)"
    assert rejection("Use the word 'blue' at least twice.", "Include the word 'blue' at least twice.", ()) is None
    assert rejection("List 5 fruits.", "List 6 fruits.", ()) == "changed the numbers"
    assert "dropped protected" in rejection("End with 'Is there anything else?'", "Finish with a question.", ())


def test_perturb_all_benchmarks_and_kinds_identical_reruns(data_dir):
    """Every benchmark × kind: rows for every item and variant, the same rows when run again."""
    from evalsuite.perturb import variant_rows

    for bench in ("mmlu", "bbh", "ifeval", "mtbench", "alpacaeval"):
        for kind in ("typo", "rephrase", "format"):
            runs = [list(variant_rows(bench, kind, data=str(data_dir), variants=2, seed=5, severity=0.2,
                                      limit=4 if bench in ("ifeval", "alpacaeval") else 1))
                    for _ in range(2)]
            rows = runs[0]
            assert rows == runs[1] and rows
            assert all(r["kind"] == kind and r["variant"] in (0, 1) for r in rows)
            assert all(("turns" in r) == (bench == "mtbench") for r in rows)
            assert all((r["skipped_reason"] is None) == (r.get("text", r.get("turns")) is not None) for r in rows)
            # BBH's inputs are mostly protected (names, option words, sentence starts) and its few free words
            # rarely hold a phrase whose rewrite is safe in every context: offline rephrase covers less there
            share = 1 / 10 if (bench, kind) == ("bbh", "rephrase") else 1 / 4
            assert sum(r["skipped_reason"] is None for r in rows) > len(rows) * share, (bench, kind)


def test_perturb_cli_writes_identical_files(data_dir, tmp_path):
    import os

    env = {**os.environ, "EVALSUITE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["perturb", "--benchmark", "mtbench", "--kind", "typo", "--variants", "2", "--seed", "5", "--limit", "1",
            "--data", str(data_dir)]
    outs = []
    for run in (1, 2):
        out = tmp_path / f"run{run}.jsonl"
        proc = subprocess.run(EVALSUITE + args + ["--out", str(out)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and len(outs[0].decode().splitlines()) == 16  # 8 categories × 2 variants
    proc = subprocess.run(EVALSUITE + ["perturb", "--benchmark", "ifeval", "--kind", "shout", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "unknown perturbation kind" in proc.stderr


def test_offline_rewording_rules_on_real_prompts(data_dir, ifeval_rows):
    """Each recorded change is a rule's rewrite of text that was in the prompt, the variant is the prompt
    with exactly those rewrites, and the rules keep case and grammar on known cases."""
    from perturbations import Document, Field, Item, get_kind, perturb

    kind = get_kind("rephrase")
    rules_used = set()
    for row in ifeval_rows[:200]:
        item = Item("r", (Document((Field("prompt", row["prompt"]),)),))
        v = perturb(item, kind, 0, 4, 1.0)
        if v.skipped_reason:
            continue
        rebuilt = row["prompt"]
        for c in sorted(v.changes, key=lambda c: -c.start):  # right to left: earlier offsets stay valid
            rules_used.add(c.op.split(":")[1])
            assert rebuilt[c.start:c.start + len(c.before)] == c.before and c.after != c.before
            rebuilt = rebuilt[:c.start] + c.after + rebuilt[c.start + len(c.before):]
        assert rebuilt == v.text
    assert rules_used >= {"contraction", "instruction", "framing"}

    def reword(text):
        return perturb(Item("k", (Document((Field("prompt", text),)),)), kind, 0, 1, 1.0).text

    assert reword("Do not use commas.") == "Don't use commas."
    assert reword("Please write a haiku.") == "Write a haiku."
    assert reword("Write a haiku.") in {"Please write a haiku.", "I would like you to write a haiku.",
                                        "Kindly write a haiku.", "I'd like you to write a haiku."}
    assert reword("What is the capital of France?") in {"I have a question. What is the capital of France?",
                                                        "Quick question: What is the capital of France?"}


def test_perturb_cli_llm_rephrase_through_a_local_checkpoint(data_dir, tiny_long_model_dir, tmp_path):
    """`--paraphrase-model DIR` paraphrases through our own backend; the tiny random model's outputs are all
    rejected, so the rows are skips that give the reasons; completions land in the cache."""
    import os

    env = {**os.environ, "EVALSUITE_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "llm.jsonl"
    proc = subprocess.run(EVALSUITE + ["perturb", "--benchmark", "ifeval", "--kind", "rephrase", "--limit", "1",
                                       "--data", str(data_dir), "--paraphrase-model", str(tiny_long_model_dir),
                                       "--out", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["skipped_reason"].startswith("all 3 paraphrases rejected") for r in rows)
    assert (tmp_path / "cache" / "paraphrase-cache.sqlite").is_file()
