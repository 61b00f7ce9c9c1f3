"""Benchmarks asked in perturbed text: a variant replaces the prompt body only, relabelled options are
answered and read back in the variant's labels, a variant's own prompt format is honoured."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from evalsuite.backends import Generation
from evalsuite.benchmarks import Prompter, get_benchmark
from evalsuite.benchmarks.base import Perturbed

WHEELS = Path(__file__).resolve().parents[2] / ".venv" / "evalsuite-wheels"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from evalsuite.benchmarks.prepare import prepare_data

    return prepare_data(tmp_path_factory.mktemp("data") / "prepared", bbh_source="lm-eval-exemplars",
                        packages_dir=WHEELS, log=lambda _: None)


def as_variant(item, text=None, turns=None, **kw):
    return replace(item, perturbed=Perturbed("format", 0, 0.1, text, turns, **kw))


@pytest.mark.parametrize("spec", ["mmlu", "mmlu:generative", "bbh", "ifeval", "alpacaeval", "mtbench"])
def test_a_variant_with_the_clean_text_asks_exactly_the_clean_requests(spec, data_dir, tiny_tok):
    bench = get_benchmark(spec)
    items = bench.load(data_dir, limit=1)[:5]
    for fmt in ("plain", "chat_template"):
        prompter = Prompter(fmt, tiny_tok)
        for item in items:
            source = bench.perturbation_item(item)
            texts = [d.render() for d in source.turns]
            same = as_variant(item, turns=tuple(texts)) if spec == "mtbench" else as_variant(item, texts[0])
            assert bench.requests(same, prompter) == bench.requests(item, prompter)
            changed = as_variant(item, turns=("ZZZ one", "ZZZ two")) if spec == "mtbench" else as_variant(item, "ZZZ body")
            reqs = bench.requests(changed, prompter)
            prompt = reqs[0].context if hasattr(reqs[0], "context") else reqs[0].prompt
            assert "ZZZ" in prompt and texts[0] not in prompt


def test_relabelled_mcq_variants_are_answered_and_read_back_in_their_labels(data_dir, tiny_tok):
    prompter = Prompter("plain", tiny_tok)
    mmlu = get_benchmark("mmlu")
    item = mmlu.load(data_dir, limit=1)[0]
    reqs = mmlu.requests(as_variant(item, "Q?\n(a) x\n(b) y\n(c) z\n(d) w\nAnswer:", option_style="(a)"), prompter)
    assert [r.continuation for r in reqs] == [" (a)", " (b)", " (c)", " (d)"]
    assert [r.continuation for r in mmlu.requests(as_variant(item, "Q", option_style="1."), prompter)] == [" 1", " 2", " 3", " 4"]
    gen = get_benchmark("mmlu:generative")
    target = item.target  # e.g. "B"
    k = "ABCD".index(target)
    v = as_variant(item, "Q", option_style="1.")
    samples = gen.score([v], [gen.requests(v, prompter)], [[Generation(f"{k + 1}", None, "stop")]], prompter)
    assert {s.filter: s.metrics["exact_match"] for s in samples}["get_response"] == 1.0
    bbh = get_benchmark("bbh", tasks=["date_understanding"])
    b = bbh.load(data_dir)[0]
    letter = b.target.strip("()")  # "(D)" -> "D"
    bv = as_variant(b, "Q: relabelled\nA:", option_style="a)")
    samples = bbh.score([bv], [bbh.requests(bv, prompter)], [[Generation(f"The answer is {letter.lower()})", None, "stop")]],
                        prompter)
    assert {s.filter: s.metrics["exact_match"] for s in samples}["flexible-extract"] == 1.0


def test_a_format_variant_is_asked_in_its_own_prompt_format(data_dir, tiny_long_model_dir):
    from evalsuite.backends import HFConfig, load_backend
    from evalsuite.benchmarks.runner import run_benchmark

    bench = get_benchmark("ifeval")
    item = bench.load(data_dir, limit=1)[0]
    variants = [as_variant(item, "Say hi.", prompt_format="chat_template"), as_variant(item, "Say hi.")]
    with load_backend(HFConfig(model=str(tiny_long_model_dir), dtype="float32")) as engine:
        result = run_benchmark(get_benchmark("ifeval", max_new_tokens=4), variants, engine, Prompter("plain", engine.tokenizer))
    by_format = {s.prompt_format: s.arguments[0][0] for s in result.samples}
    assert by_format["plain"] == "Say hi." and by_format["chat_template"] != "Say hi." and "Say hi." in by_format["chat_template"]


def test_eval_cli_on_perturb_output(data_dir, tiny_long_model_dir, tmp_path):
    """`evalsuite perturb` rows fed to `evalsuite eval --perturbed`: results per variant kind, skips counted."""
    import subprocess

    from tests.conftest import EVALSUITE, ROOT

    rows = tmp_path / "typo.jsonl"
    base = ["--data", str(data_dir)]
    proc = subprocess.run(EVALSUITE + ["perturb", "--benchmark", "mmlu", "--kind", "typo", "--variants", "2", "--limit", "1",
                                       "--out", str(rows), *base], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    proc = subprocess.run(EVALSUITE + ["eval", "--model", str(tiny_long_model_dir), "--benchmarks", "mmlu", "--limit", "1",
                                       "--perturbed", str(rows), "--out", str(out), *base], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results_mmlu_loglikelihood@typo.json").read_text())
    assert results["results"]["mmlu_loglikelihood@typo"]["n"] == 114 and results["config"]["perturbed"]["kind"] == "typo"
    samples = [json.loads(line) for line in (out / "samples_mmlu_loglikelihood@typo.jsonl").read_text().splitlines()]
    typo_rows = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [s["arguments"][0][0].endswith(r["text"]) for s, r in zip(samples, typo_rows)].count(True) == len(samples)
