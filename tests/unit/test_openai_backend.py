"""Retry, timeout and key handling of the openai backend against a real local HTTP server that
misbehaves on purpose. (Its agreement with a real vLLM server is in tests/integration.)"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evalsuite.backends import GenerationRequest, OpenAIConfig, load_backend
from evalsuite.errors import BackendUnavailableError, EvalsuiteError


class FlakyServer:
    """Fails the first `failures` requests with `status`, then answers like an OpenAI server."""

    def __init__(self, failures: int = 0, status: int = 503) -> None:
        self.failures, self.status = failures, status
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.auth.append(self.headers.get("Authorization"))
                if len(outer.requests) <= outer.failures:
                    self._send(outer.status, {"error": {"message": "try later"}})
                elif self.path.endswith("/chat/completions"):
                    self._send(200, {"id": "1", "object": "chat.completion", "created": 0, "model": body["model"],
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": "hello back"}}]})
                else:
                    self._send(200, {"id": "1", "object": "text_completion", "created": 0, "model": body["model"],
                                     "choices": [{"index": 0, "text": " done", "finish_reason": "length", "logprobs": None}]})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(**kw):
        servers.append(FlakyServer(**kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def backend(url, **kw):
    return load_backend(OpenAIConfig(model="m", base_url=url, backoff_s=0.01, **kw))


def test_transient_errors_are_retried_then_succeed(server_factory):
    server = server_factory(failures=2, status=503)
    gen = backend(server.url, max_retries=3).generate([GenerationRequest(messages=[{"role": "user", "content": "hi"}])])[0]
    assert gen.text == "hello back" and gen.finish_reason == "stop" and gen.token_ids is None
    assert len(server.requests) == 3


def test_retries_are_bounded(server_factory):
    server = server_factory(failures=100, status=503)
    with pytest.raises(BackendUnavailableError, match="after 3 attempts"):
        backend(server.url, max_retries=2).generate([GenerationRequest(prompt="x")])
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server_factory):
    server = server_factory(failures=1, status=400)
    with pytest.raises(EvalsuiteError, match="HTTP 400"):
        backend(server.url, max_retries=3).generate([GenerationRequest(prompt="x")])
    assert len(server.requests) == 1


def test_unreachable_endpoint_is_a_one_line_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:\d+/v1 failed after 2 attempts: APIConnectionError") as info:
        backend(f"http://127.0.0.1:{port}/v1", max_retries=1).generate([GenerationRequest(prompt="x")])
    assert "\n" not in str(info.value)


def test_request_fields_and_concurrency_keep_order(server_factory):
    server = server_factory()
    reqs = [GenerationRequest(prompt=f"p{i}", max_new_tokens=5, stop=("\n",), seed=i) for i in range(12)]
    gens = backend(server.url, concurrency=4).generate(reqs)
    assert [g.text for g in gens] == [" done"] * 12 and all(g.finish_reason == "length" for g in gens)
    sent = sorted(server.requests, key=lambda r: r["seed"])
    assert [r["prompt"] for r in sent] == [f"p{i}" for i in range(12)]
    assert sent[0]["max_tokens"] == 5 and sent[0]["stop"] == ["\n"] and sent[0]["temperature"] == 0.0
    assert "return_token_ids" not in sent[0] and "ignore_eos" not in sent[0]  # no vendor fields unless asked


def test_api_key_comes_from_the_named_env_var_and_is_never_logged(server_factory, monkeypatch, caplog):
    secret = "sk-test-" + "x" * 20
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    server = server_factory(failures=1, status=503)
    caplog.set_level(logging.DEBUG)
    b = backend(server.url, api_key_env="MY_JUDGE_KEY", max_retries=1)
    b.generate([GenerationRequest(prompt="x")])
    assert server.auth[-1] == f"Bearer {secret}"
    assert secret not in caplog.text and secret not in repr(b) and secret not in repr(b.config)
    assert "MY_JUDGE_KEY" in b.config.model_dump_json() and secret not in b.config.model_dump_json()


def test_scoring_without_a_tokenizer_is_a_clear_error(server_factory):
    from evalsuite.backends import LoglikelihoodRequest

    server = server_factory()
    with pytest.raises(EvalsuiteError, match="needs a local tokenizer"):
        backend(server.url).loglikelihood([LoglikelihoodRequest("a", " b")])
