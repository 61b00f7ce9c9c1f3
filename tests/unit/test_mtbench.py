"""MT-Bench: FastChat's prompts and rating parser on the real data, two turns, per-category temperatures,
judge retries, failures counted, judgements cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.backends import Generation

WHEELS = Path(__file__).resolve().parents[2] / ".venv" / "evalsuite-wheels"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from evalsuite.benchmarks.prepare import prepare_data

    return prepare_data(tmp_path_factory.mktemp("data") / "prepared", packages_dir=WHEELS, log=lambda _: None)


class ScriptedJudge:
    """A judge backend at the edge of these tests: answers from a script, counts its calls."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def generate(self, requests, progress=False, on_result=None):
        self.calls.extend(requests)
        out = [Generation(self.reply(r), None, "stop") for r in requests]
        for i, g in enumerate(out):
            if on_result is not None:
                on_result(i, g)
        return out

    def close(self):
        pass


@pytest.mark.parametrize("text,rating", [
    ("The answer is fine. Rating: [[8]]", 8.0), ("[[7.5]]", 7.5), ("Rating: [6]", 6.0),
    ("[[3]] then [[9]]", 3.0), ("no rating here", None), ("Rating: [[ten]]", None),
])
def test_fastchat_rating_parser(text, rating):
    from evalsuite.benchmarks.mtbench import parse_rating

    assert parse_rating(text) == rating


def test_judge_prompts_are_fastchats_with_reference_answers(data_dir):
    from evalsuite.benchmarks import get_benchmark

    bench = get_benchmark("mtbench")
    items = bench.load(data_dir)
    assert len(items) == 80 and {i.subset for i in items} == {"writing", "roleplay", "reasoning", "math", "coding",
                                                               "extraction", "stem", "humanities"}
    math = next(i for i in items if i.subset == "math")
    msgs = bench.judge_messages(math, ["A1", "A2"], 2)
    from evalsuite.rows import read_jsonl_rows

    prompts = {p["name"]: p for p in read_jsonl_rows(data_dir / "mtbench" / "judge_prompts.jsonl")}
    refs = {r["question_id"]: r["choices"][0]["turns"]
            for r in read_jsonl_rows(data_dir / "mtbench" / "reference_answer" / "gpt-4.jsonl")}
    template = prompts["single-math-v1-multi-turn"]
    ref = refs[math.doc["question_id"]]
    assert math.target == ref  # the reference answers travel with the item
    assert msgs[0] == {"role": "system", "content": template["system_prompt"]}
    assert msgs[1]["content"] == template["prompt_template"].format(
        question_1=math.doc["turns"][0], question_2=math.doc["turns"][1], answer_1="A1", answer_2="A2",
        ref_answer_1=ref[0], ref_answer_2=ref[1])
    writing = next(i for i in items if i.subset == "writing")
    assert "Reference" not in bench.judge_messages(writing, ["A1"], 1)[1]["content"]


def test_two_turns_temperatures_retries_failures_and_cache(data_dir, tiny_long_model_dir, tmp_path):
    from evalsuite.backends import HFConfig, load_backend
    from evalsuite.benchmarks import Prompter, get_benchmark
    from evalsuite.benchmarks.judge import Judge, JudgeCache
    from evalsuite.benchmarks.runner import run_benchmark

    def reply(req):  # greedy: no rating for writing questions; a sampled retry rates them; math never rated
        content = req.messages[-1]["content"]
        if "Reference" in content:
            return "I cannot decide."
        return "Rating: [[7]]" if req.temperature > 0 or "Compose" not in content else "Hmm."

    scripted = ScriptedJudge(reply)
    cache = JudgeCache(tmp_path / "judge.sqlite")
    judge = Judge(HFConfig(model="judge-model"), cache=cache, backend=scripted, retries=2)
    bench = get_benchmark("mtbench", judge=judge, max_new_tokens=6)
    items = [i for i in bench.load(data_dir) if i.doc["question_id"] in (81, 82, 111)]  # writing, writing, math
    with load_backend(HFConfig(model=str(tiny_long_model_dir), dtype="float32")) as engine:
        prompter = Prompter("chat_template", engine.tokenizer)
        result = run_benchmark(bench, items, engine, prompter)
    by_id = {s.doc["question_id"]: s for s in result.samples}
    s81 = by_id[81]
    turn1, turn2 = (args[0] for args in s81.arguments)
    assert s81.resps[0][0] in turn2 and s81.doc["turns"][1] in turn2 and s81.doc["turns"][0] in turn1
    assert [a[1]["temperature"] for a in s81.arguments] == [0.7, 0.7]  # writing
    assert [a[1]["temperature"] for a in by_id[111].arguments] == [0.0, 0.0]  # math
    # Q81 ("Compose ...") was rated only by a sampled retry; Q82 at once; the math question never.
    assert s81.metrics["score_turn1"] == 7.0 and s81.extra["judgements"][0]["attempts"] == 2
    assert by_id[82].extra["judgements"][0]["attempts"] == 1
    assert by_id[111].metrics["score"] == [] and by_id[111].metrics["judge_failed"] == 2.0
    assert by_id[111].extra["judgements"][0]["attempts"] == 3
    overall = result.results["all"]
    assert overall["judge_failed_count"] == 2 and overall["score,none"] == 7.0 and overall["n"] == 3
    # Judgements are cached: judging the same answers again asks the judge nothing.
    calls = len(scripted.calls)
    again = bench.score(items, [[]] * 3, [[Generation(a[0], None, "stop") for a in by_id[i.doc["question_id"]].resps]
                                         for i in items], prompter)
    assert len(scripted.calls) == calls and [s.metrics["score"] for s in again] == [by_id[i.doc["question_id"]].metrics["score"]
                                                                                    for i in items]


def test_alpacaeval_win_rate_through_alpaca_eval(data_dir, tmp_path, monkeypatch):
    """alpaca-eval's annotator (prompt, seeded output order, parser) and win rate with our cached judge: a
    judge that prefers the answer containing GOOD (else the longer one, here the reference) gives the model
    exactly the items where its answer has it, whichever order alpaca-eval showed the two answers in."""
    from evalsuite.backends import HFConfig
    from evalsuite.benchmarks import Prompter, get_benchmark
    from evalsuite.benchmarks.judge import Judge, JudgeCache

    def reply(req):
        text = req.messages[-1]["content"]
        first = text.index('"model": "model_1"')
        second = text.index('"model": "model_2"')
        one, two = text[first:second], text[second:]
        good_first = "GOOD" in one or ("GOOD" not in two and len(one) > len(two))  # GOOD, else the longer
        if "UNSURE" in text:
            return "I am not sure."
        return str([{"model": "model_1", "rank": 1 if good_first else 2}, {"model": "model_2", "rank": 2 if good_first else 1}])

    downloads = []  # scoring never reaches for the hub (alpaca-eval's length-controlled GLM wants df_gamed.csv)
    monkeypatch.setattr("alpaca_eval.metrics.glm_winrate.hf_hub_download", lambda *a, **k: downloads.append(k))
    scripted = ScriptedJudge(reply)
    judge = Judge(HFConfig(model="judge-model"), cache=JudgeCache(tmp_path / "j.sqlite"), backend=scripted, retries=1)
    bench = get_benchmark("alpacaeval", judge=judge)
    items = bench.load(data_dir, limit=8)
    assert len(items) == 8 and all(i.doc["generator"] == "gpt4_1106_preview" for i in items)
    answers = ["GOOD answer", "meh", "GOOD", "meh", "GOOD", "GOOD", "meh", "UNSURE"]
    prompter = Prompter("plain")
    requests = [bench.requests(it, prompter) for it in items]
    samples = bench.score(items, requests, [[Generation(a, None, "stop")] for a in answers], prompter)
    results = bench.aggregate(samples)["all"]
    assert [s.metrics["win"] for s in samples] == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, None]
    assert results["judge_failed_count"] == 1 and results["n_total,none"] == 7
    assert results["win_rate,none"] == pytest.approx(100 * 4 / 7)
    assert results["reported"] == "win_rate" and "length_controlled_winrate,none" not in results and not downloads
    # alpaca-eval really shuffled the order: the model's winning answers were shown first for some items
    # and second for others, so the judge's rankings differ.
    raw = {s.extra["raw_completion"] for s in samples if s.metrics["win"] == 1.0}
    assert len(raw) == 2


def test_scoring_outside_mtbench_answers_in_fastchat_format(data_dir, tmp_path):
    """FastChat `model_answer` rows: both turns judged, turn 2 with both of the file's answers; the turn-2
    request is the one our own run would have sent (it contains the given turn-1 answer)."""
    from evalsuite.backends import HFConfig
    from evalsuite.benchmarks import get_benchmark, scoring
    from evalsuite.benchmarks.judge import Judge, JudgeCache
    from evalsuite.errors import ConfigError

    seen = []

    def reply(req):
        seen.append(req.messages[-1]["content"])
        return "Rating: [[9]]" if "SECOND-81" in seen[-1] else "[[4]]"

    judge = Judge(HFConfig(model="judge-model"), cache=JudgeCache(tmp_path / "j.sqlite"), backend=ScriptedJudge(reply))
    bench = get_benchmark("mtbench", judge=judge)
    rows = [{"question_id": 81, "model_id": "x", "choices": [{"index": 0, "turns": ["FIRST-81", "SECOND-81"]}]},
            {"question_id": 111, "model_id": "x", "choices": [{"index": 0, "turns": ["FIRST-111", "SECOND-111"]}]}]
    items, answers = scoring.mtbench_items(rows, bench, data_dir)
    result = scoring.score_generated(bench, items, answers)
    s81, s111 = result.samples
    assert s81.metrics["score_turn1"] == 4.0 and s81.metrics["score_turn2"] == 9.0 and s111.metrics["score"] == [4.0, 4.0]
    assert "FIRST-81" in s81.arguments[1][0] and s81.doc["turns"][1] in s81.arguments[1][0]
    assert any("FIRST-81" in m and "SECOND-81" in m for m in seen)
    assert any("FIRST-111" in m and items[1].target[0] in m for m in seen)  # math: reference answer shown
    assert result.results["all"]["score,none"] == pytest.approx((4 + 9 + 4 + 4) / 4)
    with pytest.raises(ConfigError, match="1 answer"):
        scoring.score_generated(bench, *scoring.mtbench_items([{**rows[0], "choices": [{"turns": ["only one"]}]}], bench, data_dir))
    with pytest.raises(ConfigError, match="question_id 9999"):
        scoring.mtbench_items([{**rows[0], "question_id": 9999}], bench, data_dir)
    with pytest.raises(ConfigError, match="row 1: MT-Bench rows are FastChat"):
        scoring.mtbench_items([{"question_id": 81, "response": "x"}], bench, data_dir)


def test_score_cli_mtbench_and_alpacaeval_with_a_local_judge(data_dir, tiny_long_model_dir, tmp_path):
    """`evalsuite score mtbench|alpacaeval` end to end with a local checkpoint as judge. The tiny random judge
    never gives a rating, so every judgement must come back failed and counted, never scored."""
    import json
    import os
    import subprocess

    from tests.conftest import EVALSUITE

    env = {**os.environ, "EVALSUITE_CACHE_DIR": str(tmp_path / "cache")}
    judge = ["--judge-model", str(tiny_long_model_dir), "--judge-max-new-tokens", "4", "--data", str(data_dir)]
    mt = tmp_path / "mt.jsonl"
    mt.write_text(json.dumps({"question_id": 82, "choices": [{"turns": ["one", "two"]}]}) + "\n")
    refs = json.loads((data_dir / "alpacaeval" / "test.json").read_text())[:2]
    alpaca = tmp_path / "model_outputs.json"
    alpaca.write_text(json.dumps([{"instruction": r["instruction"], "output": "short", "generator": "mine"} for r in refs]))
    for bench, task, responses, n in (("mtbench", "mtbench_single", mt, 2), ("alpacaeval", "alpacaeval_winrate", alpaca, 2)):
        proc = subprocess.run(EVALSUITE + ["score", bench, "--responses", str(responses), "--out", str(tmp_path / bench), *judge],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads((tmp_path / bench / f"results_{task}.json").read_text())["results"][task]
        assert results["judge_failed_count"] == n and results["n"] == (1 if bench == "mtbench" else 2)
        samples = (tmp_path / bench / f"samples_{task}.jsonl").read_text().splitlines()
        assert len(samples) == results["n"]
    proc = subprocess.run(EVALSUITE + ["score", "mtbench", "--responses", str(mt), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "needs a judge" in proc.stderr + proc.stdout


class ScriptedModel:
    """The model under evaluation, at the edge of the AlpacaEval tests: answers GOOD to prompts that contain
    `good`, else a poor answer; remembers the prompts."""

    def __init__(self, tokenizer):
        self.tokenizer, self.prompts = tokenizer, []

    def generate(self, requests, progress=False, on_result=None):
        self.prompts += [r.prompt for r in requests]
        return [Generation("GOOD answer" if "good" in r.prompt else "meh", None, "stop") for r in requests]


def _prefers_good(req):
    text = req.messages[-1]["content"]
    one, two = text.split('"model": "model_2"')
    good_first = "GOOD" in one
    return str([{"model": "model_1", "rank": 1 if good_first else 2}, {"model": "model_2", "rank": 2 if good_first else 1}])


def test_alpacaeval_variants_of_one_item_each_get_their_own_verdict(data_dir, tmp_path):
    """Two variants of one item share its instruction (the judge sees the original): each must get the verdict
    on its own answer, not one variant's verdict for both (annotations are joined by position, not by
    instruction)."""
    from dataclasses import replace

    from evalsuite.backends import HFConfig
    from evalsuite.benchmarks import Perturbed, Prompter, get_benchmark
    from evalsuite.benchmarks.judge import Judge, JudgeCache

    judge = Judge(HFConfig(model="judge-model"), cache=JudgeCache(tmp_path / "j.sqlite"), backend=ScriptedJudge(_prefers_good))
    bench = get_benchmark("alpacaeval", judge=judge)
    item = bench.load(data_dir, limit=1)[0]
    variants = [replace(item, perturbed=Perturbed("typo", v, 0.1, text)) for v, text in enumerate(["x good", "x bad"])]
    prompter = Prompter("plain")
    samples = bench.score(variants, [bench.requests(v, prompter) for v in variants],
                          [[Generation("GOOD answer", None, "stop")], [Generation("meh", None, "stop")]], prompter)
    assert [s.metrics["win"] for s in samples] == [1.0, 0.0]
    assert [s.variant for s in samples] == [0, 1]


def test_alpacaeval_win_rate_covers_every_prompt_format_group(data_dir, tmp_path, tiny_tok):
    """`run_benchmark` scores each prompt-format group separately (a `template` variant is asked in the other
    format); the win rate must cover all of them, computed from the samples, not the last group's."""
    from dataclasses import replace

    from evalsuite.backends import HFConfig
    from evalsuite.benchmarks import Perturbed, Prompter, get_benchmark
    from evalsuite.benchmarks.judge import Judge, JudgeCache
    from evalsuite.benchmarks.runner import run_benchmark

    judge = Judge(HFConfig(model="judge-model"), cache=JudgeCache(tmp_path / "j.sqlite"), backend=ScriptedJudge(_prefers_good))
    bench = get_benchmark("alpacaeval", judge=judge, max_new_tokens=4)
    items = bench.load(data_dir, limit=2)
    asked = [replace(it, perturbed=Perturbed("format", v, 0.1, f"{it.doc['instruction']} {word}", prompt_format=fmt))
             for it, word in zip(items, ("good", "bad")) for v, fmt in enumerate(("plain", "chat_template"))]
    model = ScriptedModel(tiny_tok)
    result = run_benchmark(bench, asked, model, Prompter("plain", tiny_tok))
    assert any("<|im_start|>" in p for p in model.prompts) and any("<|im_start|>" not in p for p in model.prompts)
    overall = result.results["all"]
    assert overall["n"] == 4 and overall["n_total,none"] == 4 and overall["win_rate,none"] == pytest.approx(50.0)
    assert sorted(s.metrics["win"] for s in result.samples) == [0.0, 0.0, 1.0, 1.0]


def test_each_judgement_is_kept_as_it_arrives_even_when_a_later_one_fails(tmp_path):
    """An API failure half-way through a batch must not lose the judgements already paid for: each is cached
    the moment the backend hands it over, and a re-run asks only for the rest."""
    from evalsuite.backends import HFConfig
    from evalsuite.benchmarks.judge import Judge, JudgeCache
    from evalsuite.errors import BackendUnavailableError

    class FailsAfterOne(ScriptedJudge):
        def generate(self, requests, progress=False, on_result=None):
            self.calls.extend(requests)
            on_result(0, Generation("[[8]]", None, "stop"))
            raise BackendUnavailableError("endpoint went away")

    convs = [[{"role": "user", "content": f"rate answer {i}"}] for i in range(3)]
    failing = FailsAfterOne(lambda r: "[[8]]")
    judge = Judge(HFConfig(model="judge-model"), cache=JudgeCache(tmp_path / "j.sqlite"), backend=failing)
    with pytest.raises(BackendUnavailableError):
        judge.complete(convs, parse_rating_for_test)
    working = ScriptedJudge(lambda r: "[[5]]")
    judge = Judge(HFConfig(model="judge-model"), cache=JudgeCache(tmp_path / "j.sqlite"), backend=working)
    verdicts = judge.complete(convs, parse_rating_for_test)
    assert [v.value for v in verdicts] == [8.0, 5.0, 5.0] and len(working.calls) == 2  # the paid one was kept


def parse_rating_for_test(text):
    from evalsuite.benchmarks.mtbench import parse_rating

    return parse_rating(text)


def test_results_json_writes_nan_as_null(tmp_path):
    """A standard error over one item is NaN (alpaca-eval's): JSON has no NaN, so it is written as null instead
    of crashing the run (`allow_nan=False`)."""
    import json
    import math

    from evalsuite.benchmarks import BenchmarkResult
    from evalsuite.benchmarks.runner import write_result

    result = BenchmarkResult("alpacaeval_winrate", [], {"all": {"win_rate,none": 100.0, "standard_error,none": math.nan,
                                                               "n": 1}})
    _, path = write_result(result, tmp_path, {"x": float("inf")})
    payload = json.loads(path.read_text())
    assert payload["results"]["alpacaeval_winrate"]["standard_error,none"] is None and payload["config"]["x"] is None
