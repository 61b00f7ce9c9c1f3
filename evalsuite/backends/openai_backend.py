"""Any OpenAI-compatible HTTP server (vLLM's api_server, llama.cpp, hosted APIs).

Chat messages go to /v1/chat/completions (the server applies its chat template); raw prompts and all
scoring go to /v1/completions with locally tokenised prompts (token-id lists), as lm-eval's
local-completions model does, so the prompt/continuation boundary is identical to the other backends.

Keys: only from the environment variable the user names (`api_key_env`), or OPENAI_API_KEY for OpenAI's own
endpoint (https://api.openai.com); any other server gets a placeholder, never the user's key. A key going over
plain http to a host that is not loopback is warned about.
Retries (tenacity): connection errors, timeouts, HTTP 408/409/429/5xx and malformed replies (a 200 that is not
a completion), with jittered exponential backoff or the server's Retry-After, bounded by `max_retries` and by
`retry_deadline_s`; other 4xx fail at once. Each answer is reported (`on_result`) as its reply arrives.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import openai
import tenacity
from pydantic import BaseModel, Field, ValidationError
from tqdm.auto import tqdm

from evalsuite.backends.base import Backend, OnResult, TokenPair
from evalsuite.backends.config import OpenAIConfig
from evalsuite.backends.loading import load_tokenizer
from evalsuite.backends.tokenization import ids_of_text
from evalsuite.backends.types import Generation, GenerationRequest, TokenScores
from evalsuite.errors import BackendUnavailableError, ConfigError, EvalsuiteError

log = logging.getLogger(__name__)
T = TypeVar("T")

OPENAI_HOST = "api.openai.com"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "EMPTY"  # local servers accept any key; the client library insists on one
RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx
BACKOFF_MAX_S = 30.0
SERVER_WAIT_MAX_S = 60.0  # a longer Retry-After is cut to this (the deadline still bounds the total)


# ---- API key policy ---------------------------------------------------------------------------
def api_key_for(base_url: str, api_key_env: str | None) -> str | None:
    """The key to send to `base_url`, or None for none: the value of the variable the user named, or
    OPENAI_API_KEY when the endpoint is OpenAI's own, so a user's OpenAI key never reaches another server
    unasked. A named variable that is unset is a ConfigError; a key over plain http off this machine is warned
    about (the key itself is never logged)."""
    url = urlsplit(base_url)
    env = api_key_env or (OPENAI_KEY_ENV if url.scheme == "https" and url.hostname == OPENAI_HOST else None)
    if env is None:
        return None
    key = os.environ.get(env, "")
    if not key:
        raise ConfigError(f"environment variable {env} (the API key for {base_url}) is not set or empty")
    if url.scheme == "http" and not _is_loopback(url.hostname):
        log.warning("the API key from %s goes to %s over plain http, readable on the way: use https",
                    env, url.hostname)
    return key


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:  # a host name
        return False


# ---- reply shapes: the fields we read, checked in one place -----------------------------------
class MalformedReply(Exception):
    """A reply without the shape of an OpenAI completion: handled like a failed request."""


class _Choice(BaseModel):
    finish_reason: str | None = None
    token_ids: list[int] | None = None  # vLLM's `return_token_ids`


class _Message(BaseModel):
    content: str | None = None


class ChatChoice(_Choice):
    message: _Message


class TextChoice(_Choice):
    text: str


class _Logprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]  # the first prompt token has none
    top_logprobs: list[dict[str, float] | None] | None = None


class ScoreChoice(BaseModel):
    logprobs: _Logprobs | None = None  # None: the server cannot echo logprobs


ChoiceT = TypeVar("ChoiceT", bound=BaseModel)


class _Reply(BaseModel, Generic[ChoiceT]):
    choices: list[ChoiceT] = Field(min_length=1)


# Parametrised once at import, not concurrently by the worker threads.
_REPLY_OF = {shape: _Reply[shape] for shape in (ChatChoice, TextChoice, ScoreChoice)}  # type: ignore[valid-type]


def first_choice(reply: object, shape: type[ChoiceT]) -> ChoiceT:
    """The reply's first choice as `shape`: garbage (a string, JSON without `choices`, a chat choice without a
    `message`, a completion without `text`) is a MalformedReply, retried like a failed request, instead of
    an AttributeError deep inside an evaluation."""
    try:
        return _REPLY_OF[shape].model_validate(reply, from_attributes=True).choices[0]
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "reply"
        raise MalformedReply(f"{where}: {err['msg']} (reply: {repr(reply)[:120]})") from None


# ---- retry policy -----------------------------------------------------------------------------
def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, MalformedReply))  # timeouts are connection errors


def _server_wait(exc: BaseException | None) -> float | None:
    """Seconds an error reply asks us to wait (`retry-after-ms`, else `Retry-After`), capped; None if it doesn't."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    seconds = _header_seconds(headers.get("retry-after-ms"), unit=1e-3)
    if seconds is None:
        seconds = _header_seconds(headers.get("retry-after"), unit=1.0)
    return None if seconds is None else min(max(seconds, 0.0), SERVER_WAIT_MAX_S)


def _header_seconds(value: str | None, unit: float) -> float | None:
    """A delay header in seconds: a number of `unit`s or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value) * unit
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # "-0000" dates parse naive
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return seconds if math.isfinite(seconds) else None


def _describe(exc: BaseException | None) -> str:
    """One line on a failure: the status and the server's own message, or the error type and message."""
    if isinstance(exc, MalformedReply):
        return f"returned a malformed reply: {exc}"
    if isinstance(exc, openai.APIStatusError):  # `body` is the reply's `error` object, or its text
        detail = exc.body.get("message") if isinstance(exc.body, dict) else exc.body
        return f"HTTP {exc.status_code}: {_first_line(str(detail or ''))}"
    return f"{type(exc).__name__}: {_first_line(str(getattr(exc, 'message', None) or exc))}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else "(no message)"


class _NotSent(Exception):
    """A request skipped because another one of its batch failed for good."""


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        key = api_key_for(config.base_url, config.api_key_env) or NO_KEY
        tokenizer = load_tokenizer(config.tokenizer, config.trust_remote_code) if config.tokenizer else None
        super().__init__(config, tokenizer)
        # max_retries=0: the retry policy below is ours. The explicit header wins over any credential the SDK
        # would pick up from the environment itself (OPENAI_API_KEY, OPENAI_CUSTOM_HEADERS).
        self.client = openai.OpenAI(
            base_url=config.base_url, api_key=key, default_headers={"Authorization": f"Bearer {key}"},
            timeout=config.timeout_s, max_retries=0,
        )
        b = config.backoff_s
        self._backoff = tenacity.wait_exponential(multiplier=b, max=BACKOFF_MAX_S) + tenacity.wait_random(0, b)

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"OpenAIBackend(base_url={self.config.base_url!r}, model={self.config.model!r})"

    def _model_max_length(self) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, int) and limit < 1_000_000 else 4096

    # ---- transport --------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], shape: type[ChoiceT], **kwargs: Any) -> ChoiceT:
        """One request under the retry policy; returns the reply's first choice, checked against `shape`."""
        deadline = time.monotonic() + self.config.retry_deadline_s
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_after_attempt(self.config.max_retries + 1)
            | tenacity.stop_before_delay(self.config.retry_deadline_s),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, fn, shape, deadline, kwargs)
        except (openai.APIError, MalformedReply) as exc:
            endpoint = f"OpenAI-compatible endpoint {self.config.base_url}"
            if not _retryable(exc):
                raise EvalsuiteError(f"{endpoint} rejected the request: {_describe(exc)}") from None
            n, spent = retrying.statistics["attempt_number"], retrying.statistics["delay_since_first_attempt"]
            raise BackendUnavailableError(
                f"{endpoint} failed after {n} attempt{'s' * (n > 1)} in {spent:.1f} s: {_describe(exc)}"
            ) from None

    def _attempt(self, fn: Callable[..., Any], shape: type[ChoiceT], deadline: float,
                 kwargs: dict[str, Any]) -> ChoiceT:
        # The deadline bounds the whole request: an attempt gets at most the time that is left.
        timeout = max(min(self.config.timeout_s, deadline - time.monotonic()), 0.0)
        try:
            reply = fn(timeout=timeout, **kwargs)
        except json.JSONDecodeError as exc:  # a JSON content type whose body is not JSON
            raise MalformedReply(f"body is not JSON ({exc})") from None
        return first_choice(reply, shape)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """The server's Retry-After when it sends one, else jittered exponential backoff."""
        asked = _server_wait(state.outcome.exception()) if state.outcome else None
        return self._backoff(state) if asked is None else asked

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None  # only failures are retried: always set
        log.warning("request to %s failed (%s), retry %d/%d in %.1f s", self.config.base_url, _describe(exc),
                    state.attempt_number, self.config.max_retries, state.upcoming_sleep)

    def _map(self, fn: Callable[[Any], T], items: Sequence[Any], progress: bool, desc: str,
             on_result: Callable[[int, T], None] | None = None) -> list[T]:
        """`fn` over `items` on `concurrency` threads, results in item order; `on_result` sees each as it arrives.
        After a failure no new request is sent; the ones in flight are still collected and reported (they are
        paid for), then the first error is raised."""
        failed = threading.Event()

        def run(item: Any) -> T:
            if failed.is_set():
                raise _NotSent
            try:
                return fn(item)
            except BaseException:
                failed.set()  # in the worker, so that even the next queued item is not sent
                raise

        results: dict[int, T] = {}
        error: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency)
        try:
            futures = {pool.submit(run, item): i for i, item in enumerate(items)}
            for fut in tqdm(as_completed(futures), total=len(items), desc=desc, disable=not progress):
                i, exc = futures[fut], fut.exception()
                if exc is None:
                    results[i] = fut.result()
                    if on_result is not None:
                        on_result(i, results[i])
                elif not isinstance(exc, _NotSent):
                    error = error or exc
        finally:  # also on Ctrl-C or a failing on_result
            failed.set()
            pool.shutdown(wait=True, cancel_futures=True)
        if error is not None:
            raise error
        return [results[i] for i in range(len(items))]

    # ---- generation -------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False,
                 on_result: OnResult | None = None) -> list[Generation]:
        # Tokenise on this thread; the workers only do HTTP.
        prompts = [None if r.messages is not None else self._completion_prompt(r) for r in requests]
        return self._map(lambda job: self._generate_one(*job), list(zip(requests, prompts)), progress, "generate",
                         on_result)

    def _completion_prompt(self, req: GenerationRequest) -> str | list[int]:
        return self.prompt_ids(req) if self.tokenizer is not None else (req.prompt or "")

    def _sampling_kwargs(self, req: GenerationRequest) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.config.server_token_ids:
            extra["return_token_ids"] = True
        if req.ignore_eos:
            extra["ignore_eos"] = True  # vLLM extension, only sent when asked for
        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": req.max_new_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
        }
        if req.stop:
            kwargs["stop"] = list(req.stop)
        if req.seed is not None:
            kwargs["seed"] = req.seed
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def _generate_one(self, req: GenerationRequest, prompt: str | list[int] | None) -> Generation:
        kwargs = self._sampling_kwargs(req)
        choice: ChatChoice | TextChoice
        if prompt is None:
            choice = self._call(self.client.chat.completions.create, ChatChoice, messages=req.messages, **kwargs)
            text = choice.message.content or ""
        else:
            choice = self._call(self.client.completions.create, TextChoice, prompt=prompt, **kwargs)
            text = choice.text
        finish = "length" if choice.finish_reason == "length" else "stop"
        return Generation(text, self._answer_ids(choice.token_ids, text, finish), finish)

    def _answer_ids(self, ids: list[int] | None, text: str, finish: str) -> list[int] | None:
        """The server's token ids of the answer itself: after a stop, without the EOS or the tokens of the stop
        string that `text` leaves out (servers return them)."""
        tok = self.tokenizer
        if ids is None or tok is None or finish != "stop":
            return ids
        if ids and ids[-1] == tok.eos_token_id:
            ids = ids[:-1]
        if not tok.decode(ids, skip_special_tokens=True).startswith(text):
            log.warning("token ids from %s do not decode to the answer's text: kept as sent", self.config.base_url)
            return ids
        return ids_of_text(tok, ids, text)

    # ---- scoring ----------------------------------------------------------------------------
    def score_ids(self, pairs: Sequence[TokenPair], *, progress: bool = False,
                  on_result: OnResult | None = None) -> list[TokenScores]:
        self._require_tokenizer("scoring")
        return self._map(self._score_one, pairs, progress, "score", on_result)

    def _score_one(self, pair: TokenPair) -> TokenScores:
        context, cont = pair
        choice = self._call(
            self.client.completions.create,
            ScoreChoice,
            model=self.config.model,
            prompt=context + cont,
            max_tokens=1,
            temperature=0.0,
            echo=True,
            logprobs=1,
        )
        # The echoed prompt comes first; max_tokens=1 adds one generated token at the end.
        n = len(context) + len(cont)
        lp = choice.logprobs
        if lp is None or min(len(lp.token_logprobs), len(lp.tokens)) < n:
            raise EvalsuiteError(
                f"{self.config.base_url} returned no logprobs for the echoed prompt: it does not support echo scoring"
            )
        token_lps = lp.token_logprobs[len(context) : n]
        tokens = lp.tokens[len(context) : n]
        tops = (lp.top_logprobs or [])[len(context) : n]
        # lm-eval's rule: greedy if each actual token is its position's top-1 token.
        greedy = len(tops) == len(tokens) and all(top and max(top, key=top.get) == tok for tok, top in zip(tokens, tops))
        return TokenScores(tuple(float(x) for x in token_lps), greedy)  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.close()
