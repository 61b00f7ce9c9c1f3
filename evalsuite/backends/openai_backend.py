"""Any OpenAI-compatible HTTP server (vLLM's api_server, llama.cpp, hosted APIs).

Chat messages go to /v1/chat/completions (the server applies its chat template); raw prompts and all
scoring go to /v1/completions with locally tokenised prompts (token-id lists), as lm-eval's
local-completions model does, so the prompt/continuation boundary is identical to the other backends.
Retries: bounded, exponential backoff, only for errors that can pass (connection, timeout, 408/429/5xx).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import openai
from tqdm.auto import tqdm

from evalsuite.backends.base import Backend, TokenPair
from evalsuite.backends.config import OpenAIConfig
from evalsuite.backends.loading import load_tokenizer
from evalsuite.backends.types import Generation, GenerationRequest, TokenScores
from evalsuite.errors import BackendUnavailableError, EvalsuiteError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError)
NO_KEY = "EMPTY"  # local servers accept any key; the client library insists on one


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        tokenizer = load_tokenizer(config.tokenizer, config.trust_remote_code) if config.tokenizer else None
        super().__init__(config, tokenizer)
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        # max_retries=0: the retry policy below is ours, so attempts and backoff follow the config.
        self.client = openai.OpenAI(
            base_url=config.base_url, api_key=key or NO_KEY, timeout=config.timeout_s, max_retries=0
        )

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"OpenAIBackend(base_url={self.config.base_url!r}, model={self.config.model!r})"

    def _model_max_length(self) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, int) and limit < 1_000_000 else 4096

    # ---- transport --------------------------------------------------------------------------
    def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            try:
                return fn(**kwargs)
            except RETRYABLE as exc:
                if attempt + 1 == attempts:
                    raise BackendUnavailableError(
                        f"OpenAI-compatible endpoint {self.config.base_url} failed after {attempts} attempts: "
                        f"{type(exc).__name__}: {_short(exc)}"
                    ) from None
                delay = self.config.backoff_s * 2**attempt
                log.warning("request to %s failed (%s), retry %d/%d in %.1fs", self.config.base_url,
                            type(exc).__name__, attempt + 1, self.config.max_retries, delay)
                time.sleep(delay)
            except openai.APIStatusError as exc:  # 4xx other than 408/429: retrying cannot help
                raise EvalsuiteError(
                    f"OpenAI-compatible endpoint {self.config.base_url} rejected the request "
                    f"(HTTP {exc.status_code}): {_short(exc)}"
                ) from None
        raise AssertionError("unreachable")

    def _map(self, fn: Callable[[Any], T], items: Sequence[Any], progress: bool, desc: str) -> list[T]:
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, disable=not progress))

    # ---- generation -------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        # Tokenise on this thread; the workers only do HTTP.
        prompts = [None if r.messages is not None else self._completion_prompt(r) for r in requests]
        return self._map(lambda job: self._generate_one(*job), list(zip(requests, prompts)), progress, "generate")

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
        if prompt is None:
            resp = self._call(self.client.chat.completions.create, messages=req.messages, **kwargs)
            choice = resp.choices[0]
            text = choice.message.content or ""
        else:
            resp = self._call(self.client.completions.create, prompt=prompt, **kwargs)
            choice = resp.choices[0]
            text = choice.text
        ids = getattr(choice, "token_ids", None)
        if ids is not None:
            ids = list(ids)
            eos = self.tokenizer.eos_token_id if self.tokenizer is not None else None
            if ids and ids[-1] == eos and choice.finish_reason == "stop":
                ids = ids[:-1]
        return Generation(text, ids, "length" if choice.finish_reason == "length" else "stop")

    # ---- scoring ----------------------------------------------------------------------------
    def score_ids(self, pairs: Sequence[TokenPair], *, progress: bool = False) -> list[TokenScores]:
        self._require_tokenizer("scoring")
        return self._map(self._score_one, pairs, progress, "score")

    def _score_one(self, pair: TokenPair) -> TokenScores:
        context, cont = pair
        resp = self._call(
            self.client.completions.create,
            model=self.config.model,
            prompt=context + cont,
            max_tokens=1,
            temperature=0.0,
            echo=True,
            logprobs=1,
        )
        lp = resp.choices[0].logprobs
        if lp is None or lp.token_logprobs is None:
            raise EvalsuiteError(f"{self.config.base_url} returned no logprobs: it does not support echo scoring")
        # The echoed prompt comes first; max_tokens=1 adds one generated token at the end.
        n = len(context) + len(cont)
        token_lps = lp.token_logprobs[len(context) : n]
        tokens = lp.tokens[len(context) : n]
        tops = (lp.top_logprobs or [])[len(context) : n]
        # lm-eval's rule: greedy if each actual token is its position's top-1 token.
        greedy = len(tops) == len(tokens) and all(top and max(top, key=top.get) == tok for tok, top in zip(tokens, tops))
        return TokenScores(tuple(float(x) for x in token_lps), greedy)

    def close(self) -> None:
        self.client.close()


def _short(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
