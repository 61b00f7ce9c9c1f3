"""Keys, retries, malformed replies, streaming results and token ids of the openai backend, against a real local
HTTP server that misbehaves on purpose. (Its agreement with a real vLLM server is in tests/integration.)"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from evalsuite.backends import GenerationRequest, LoglikelihoodRequest, OpenAIConfig, load_backend
from evalsuite.backends.openai_backend import api_key_for
from evalsuite.errors import BackendUnavailableError, ConfigError, EvalsuiteError

CHAT = [{"role": "user", "content": "hi"}]


@dataclass
class Request:
    n: int  # 0-based arrival order
    path: str
    body: dict[str, Any]


Reply = tuple[int, Any, dict[str, str]]  # status, payload (bytes go out as is, anything else as JSON), headers


def answer(req: Request, **choice: Any) -> Reply:
    """A well-formed 200 reply to `req`, with `choice` fields overriding the defaults."""
    if req.path.endswith("/chat/completions"):
        base = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello back"}}
        kind = "chat.completion"
    else:
        base = {"index": 0, "text": " done", "finish_reason": "length", "logprobs": None}
        kind = "text_completion"
    return 200, {"id": "1", "object": kind, "created": 0, "model": "m", "choices": [{**base, **choice}]}, {}


def fail_first(k: int, status: int, headers: dict[str, str] | None = None) -> Callable[[Request], Reply]:
    """The first `k` requests fail with `status` (and `headers`); later ones are answered."""
    return lambda req: (status, {"error": {"message": "try later"}}, headers or {}) if req.n < k else answer(req)


class ScriptedServer:
    """A real HTTP server on 127.0.0.1; `reply(request)` scripts each answer. Records every request's body,
    Authorization header and arrival time."""

    def __init__(self, reply: Callable[[Request], Reply] = answer) -> None:
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.times: list[float] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    n = len(outer.requests)
                    outer.requests.append(body)
                    outer.auth.append(self.headers.get("Authorization"))
                    outer.times.append(time.monotonic())
                status, payload, headers = reply(Request(n, self.path, body))
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **headers}
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up on this request (its timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(reply: Callable[[Request], Reply] = answer) -> ScriptedServer:
        servers.append(ScriptedServer(reply))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def backend(url, **kw):
    return load_backend(OpenAIConfig(model="m", base_url=url, **{"backoff_s": 0.01, **kw}))


# ---- retries ------------------------------------------------------------------------------------
def test_transient_errors_are_retried_then_succeed(server_factory):
    server = server_factory(fail_first(2, 503))
    gen = backend(server.url, max_retries=3).generate([GenerationRequest(messages=CHAT)])[0]
    assert gen.text == "hello back" and gen.finish_reason == "stop" and gen.token_ids is None
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [408, 409])
def test_request_timeout_and_conflict_are_retried(server_factory, status):
    server = server_factory(fail_first(1, status))
    assert backend(server.url, max_retries=3).generate([GenerationRequest(prompt="x")])[0].text == " done"
    assert len(server.requests) == 2


def test_retries_are_bounded(server_factory):
    server = server_factory(fail_first(100, 503))
    with pytest.raises(BackendUnavailableError, match=r"failed after 3 attempts in [\d.]+ s: HTTP 503: try later"):
        backend(server.url, max_retries=2).generate([GenerationRequest(prompt="x")])
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server_factory):
    server = server_factory(fail_first(1, 400))
    with pytest.raises(EvalsuiteError, match="rejected the request: HTTP 400") as info:
        backend(server.url, max_retries=3).generate([GenerationRequest(prompt="x")])
    assert not isinstance(info.value, BackendUnavailableError) and len(server.requests) == 1


@pytest.mark.parametrize("header,at_least", [
    ({"Retry-After": "1"}, 0.95),
    ({"retry-after-ms": "400"}, 0.38),
    ({"Retry-After": "HTTP-DATE+2"}, 0.9),  # an HTTP date has whole seconds: 2 s ahead is 1-2 s away
])
def test_the_servers_retry_after_is_honoured(server_factory, header, at_least):
    if header.get("Retry-After") == "HTTP-DATE+2":
        header = {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)}
    server = server_factory(fail_first(1, 429, header))
    backend(server.url, max_retries=1).generate([GenerationRequest(prompt="x")])  # backoff alone: ~0.01 s
    assert len(server.times) == 2 and server.times[1] - server.times[0] >= at_least


def test_the_deadline_stops_retries_that_would_pass_it(server_factory):
    server = server_factory(fail_first(100, 429, {"Retry-After": "30"}))
    b = backend(server.url, max_retries=5, retry_deadline_s=1.0)
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="failed after 1 attempt in .*HTTP 429"):
        b.generate([GenerationRequest(prompt="x")])
    assert len(server.requests) == 1 and time.monotonic() - start < 1.0  # no 30 s sleep that ends past it


def test_the_deadline_bounds_an_attempt_that_hangs(server_factory):
    released = threading.Event()
    server = server_factory(lambda req: (released.wait(5), answer(req))[1])
    b = backend(server.url, timeout_s=60, retry_deadline_s=0.5)
    start = time.monotonic()
    try:
        with pytest.raises(BackendUnavailableError, match="APITimeoutError"):
            b.generate([GenerationRequest(prompt="x")])
        assert time.monotonic() - start < 2.0
    finally:
        released.set()


def test_unreachable_endpoint_is_a_one_line_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:\d+/v1 failed after 2 attempts in [\d.]+ s: "
                                                      r"APIConnectionError") as info:
        backend(f"http://127.0.0.1:{port}/v1", max_retries=1).generate([GenerationRequest(prompt="x")])
    assert "\n" not in str(info.value)


# ---- malformed replies --------------------------------------------------------------------------
NO_CONTENT = {"id": "1", "choices": [{"index": 0, "finish_reason": "stop"}]}  # neither `message` nor `text`
GARBAGE = {
    "non-JSON body, JSON content type": lambda req: (200, b"<html>oops</html>", {}),
    "non-JSON body, HTML content type": lambda req: (200, b"<html>oops</html>", {"Content-Type": "text/html"}),
    "JSON without choices": lambda req: (200, {"id": "1", "object": "text_completion"}, {}),
    "empty choices": lambda req: (200, {"id": "1", "choices": []}, {}),
    "chat choice without message": lambda req: (200, NO_CONTENT, {}),
    "completion without text": lambda req: (200, NO_CONTENT, {}),
}


@pytest.mark.parametrize("shape", GARBAGE)
def test_a_malformed_reply_is_a_failed_request(server_factory, shape):
    server = server_factory(GARBAGE[shape])
    req = GenerationRequest(messages=CHAT) if shape.startswith("chat") else GenerationRequest(prompt="x")
    with pytest.raises(BackendUnavailableError, match="failed after 2 attempts .*returned a malformed reply") as info:
        backend(server.url, max_retries=1).generate([req])
    assert "\n" not in str(info.value) and len(server.requests) == 2


def test_a_malformed_reply_is_retried_like_any_failure(server_factory):
    server = server_factory(lambda req: GARBAGE["chat choice without message"](req) if req.n == 0 else answer(req))
    assert backend(server.url, max_retries=1).generate([GenerationRequest(messages=CHAT)])[0].text == "hello back"
    assert len(server.requests) == 2


# ---- results as they arrive ---------------------------------------------------------------------
def test_answers_are_reported_as_they_arrive_even_when_another_request_fails(server_factory):
    def reply(req: Request) -> Reply:
        if req.body["prompt"] == "p1":  # fails for good (2 attempts), at ~0.1 s: all three are in flight by then
            time.sleep(0.05)
            return 503, {"error": {"message": "down"}}, {}
        time.sleep(0.5 if req.body["prompt"] == "p0" else 0.3)
        return answer(req, text=req.body["prompt"].upper())

    server = server_factory(reply)
    seen: list[tuple[int, str]] = []
    with pytest.raises(BackendUnavailableError, match="HTTP 503"):
        backend(server.url, max_retries=1, concurrency=3).generate(
            [GenerationRequest(prompt=f"p{i}") for i in range(3)], on_result=lambda i, g: seen.append((i, g.text))
        )
    assert seen == [(2, "P2"), (0, "P0")]  # both paid answers, in arrival order, before the error
    assert len(server.requests) == 4


def test_after_a_failure_no_new_request_starts(server_factory):
    server = server_factory(fail_first(100, 400))
    with pytest.raises(EvalsuiteError, match="HTTP 400"):
        backend(server.url, concurrency=1).generate([GenerationRequest(prompt=f"p{i}") for i in range(4)])
    assert len(server.requests) == 1


def test_request_fields_and_concurrency_keep_order(server_factory):
    server = server_factory()
    reqs = [GenerationRequest(prompt=f"p{i}", max_new_tokens=5, stop=("\n",), seed=i) for i in range(12)]
    gens = backend(server.url, concurrency=4).generate(reqs)
    assert [g.text for g in gens] == [" done"] * 12 and all(g.finish_reason == "length" for g in gens)
    sent = sorted(server.requests, key=lambda r: r["seed"])
    assert [r["prompt"] for r in sent] == [f"p{i}" for i in range(12)]
    assert sent[0]["max_tokens"] == 5 and sent[0]["stop"] == ["\n"] and sent[0]["temperature"] == 0.0
    assert "return_token_ids" not in sent[0] and "ignore_eos" not in sent[0]  # no vendor fields unless asked


# ---- token ids and scores -----------------------------------------------------------------------
def test_server_token_ids_end_where_the_text_ends(server_factory, tiny_model_dir, tiny_tok, caplog):
    def enc(text: str) -> list[int]:
        return tiny_tok(text, add_special_tokens=False)["input_ids"]

    answer_text = "Paris is the capital"
    replies = {  # seed -> (token ids sent, finish reason, text sent)
        0: (enc(answer_text) + enc("\n\nQuestion:"), "stop", answer_text),  # the stop string's tokens come along
        1: (enc(answer_text) + [tiny_tok.eos_token_id], "stop", answer_text),
        2: (enc(answer_text + " of"), "length", answer_text + " of"),
        3: (enc("The quick brown fox"), "stop", answer_text),  # ids that are not the text: kept, with a warning
    }
    server = server_factory(lambda req: answer(req, token_ids=replies[req.body["seed"]][0],
                                               finish_reason=replies[req.body["seed"]][1],
                                               text=replies[req.body["seed"]][2]))
    b = backend(server.url, tokenizer=str(tiny_model_dir), server_token_ids=True)
    gens = b.generate([GenerationRequest(prompt="Q: capital of France?\nA:", seed=s, stop=("\n\n",)) for s in range(4)])
    assert server.requests[0]["return_token_ids"] is True
    assert [g.token_ids for g in gens[:3]] == [enc(answer_text), enc(answer_text), enc(answer_text + " of")]
    assert gens[3].token_ids == enc("The quick brown fox") and "do not decode to the answer" in caplog.text


def test_scores_come_from_the_echoed_prompt_and_a_reply_without_it_is_refused(server_factory, tiny_model_dir):
    echo = {"tokens": ["a", "b", "c", "x"], "token_logprobs": [None, -1.0, -2.0, -0.5],
            "top_logprobs": [None, {"b": -1.0}, {"z": -0.1}, {"x": -0.5}]}
    short = {"tokens": ["x"], "token_logprobs": [-0.5], "top_logprobs": [{"x": -0.5}]}
    server = server_factory(lambda req: answer(req, logprobs=echo if req.n == 0 else short))
    b = backend(server.url, tokenizer=str(tiny_model_dir))
    scores = b.score_ids([([1, 2], [3])])[0]
    assert scores.logprobs == (-2.0,) and scores.is_greedy is False
    with pytest.raises(EvalsuiteError, match="does not support echo scoring"):
        b.score_ids([([1, 2], [3])])


def test_scoring_without_a_tokenizer_is_a_clear_error(server_factory):
    server = server_factory()
    with pytest.raises(EvalsuiteError, match="needs a local tokenizer"):
        backend(server.url).loglikelihood([LoglikelihoodRequest("a", " b")])


# ---- API keys -----------------------------------------------------------------------------------
def test_no_key_is_sent_unless_its_variable_is_named(server_factory, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "Authorization: Bearer sk-secret")  # newer SDKs read this too
    server = server_factory()
    backend(server.url).generate([GenerationRequest(prompt="x")])
    assert server.auth == ["Bearer EMPTY"]


def test_api_key_comes_from_the_named_env_var_and_is_never_logged(server_factory, monkeypatch, caplog):
    secret = "sk-test-" + "x" * 20
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    server = server_factory(fail_first(1, 503))
    caplog.set_level(logging.DEBUG)
    b = backend(server.url, api_key_env="MY_JUDGE_KEY", max_retries=1)
    b.generate([GenerationRequest(prompt="x")])
    assert server.auth == [f"Bearer {secret}"] * 2
    assert secret not in caplog.text and secret not in repr(b) and secret not in repr(b.config)
    assert "MY_JUDGE_KEY" in b.config.model_dump_json() and secret not in b.config.model_dump_json()


@pytest.mark.parametrize("value", [None, ""])
def test_a_named_key_variable_that_is_unset_is_a_config_error(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("MY_KEY", raising=False)
    else:
        monkeypatch.setenv("MY_KEY", value)
    with pytest.raises(ConfigError, match="MY_KEY") as info:
        backend("http://127.0.0.1:1/v1", api_key_env="MY_KEY")
    assert "\n" not in str(info.value)


def test_key_policy_openai_gets_its_key_others_none_and_http_off_machine_is_warned(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("MY_KEY", "sk-mine")
    assert api_key_for("https://api.openai.com/v1", None) == "sk-secret"
    assert api_key_for("https://example.com/v1", None) is None and api_key_for("http://example.com/v1", None) is None
    for quiet in ("http://127.0.0.2:8000/v1", "http://[::1]:8000/v1", "http://localhost/v1", "https://example.com"):
        assert api_key_for(quiet, "MY_KEY") == "sk-mine"  # loopback, or encrypted: nothing to warn about
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="evalsuite.backends.openai_backend"):
        assert api_key_for("http://10.0.0.5:8000/v1", "MY_KEY") == "sk-mine"
    assert "MY_KEY" in caplog.text and "10.0.0.5" in caplog.text and "plain http" in caplog.text
    assert "sk-mine" not in caplog.text


def test_the_standalone_paraphrasers_key_policy_agrees_with_the_backends(monkeypatch):
    """`perturbations.llm` cannot import evalsuite, so it holds its own copy of the key policy: the two agree."""
    from perturbations.llm import api_key

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("MY_KEY", "sk-mine")
    monkeypatch.delenv("UNSET_KEY", raising=False)
    for url in ("https://api.openai.com/v1", "http://api.openai.com/v1", "https://example.com/v1",
                "http://127.0.0.1:8000/v1", "http://10.0.0.5/v1"):
        for env in (None, "MY_KEY"):
            assert api_key(url, env) == api_key_for(url, env), (url, env)
        with pytest.raises(ValueError):
            api_key(url, "UNSET_KEY")
        with pytest.raises(ConfigError):
            api_key_for(url, "UNSET_KEY")
