"""The one interface every downstream stage uses to talk to a model.

Subclasses implement `generate` and `score_ids`; log-likelihood and response scoring are built here on
top of `score_ids` with one tokenisation rule (lm-eval's), so every backend scores the same token ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from evalsuite.backends.tokenization import context_ids, encode_pair, encode_text, render_chat, truncate_left
from evalsuite.backends.types import (
    Generation,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    OnResult,
    ScoreRequest,
    TokenScores,
)
from evalsuite.errors import EvalsuiteError

TokenPair = tuple[list[int], list[int]]  # (context ids, continuation ids)


class Backend(ABC):
    """Batched generation, log-likelihood and teacher-forced scoring over one model."""

    name: str = "backend"

    def __init__(self, config: Any, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self.config = config
        self.tokenizer = tokenizer

    # ---- generation -------------------------------------------------------------------------
    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False,
                 on_result: OnResult | None = None) -> list[Generation]:
        """Answer every request; results come back in request order. `on_result(index, generation)` is called
        as soon as each answer is known (per batch locally, per reply over HTTP), so a caller can keep what was
        paid for even if a later request fails."""

    # ---- scoring ----------------------------------------------------------------------------
    @abstractmethod
    def score_ids(self, pairs: Sequence[TokenPair], *, progress: bool = False,
                  on_result: OnResult | None = None) -> list[TokenScores]:
        """Per-token log-probs of each continuation after its context (already truncated to fit); `on_result`
        as for `generate`."""

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False,
                      on_result: OnResult | None = None) -> list[LoglikelihoodResult]:
        tok = self._require_tokenizer("loglikelihood")
        pairs = [encode_pair(tok, r.context, r.continuation, self.config.add_bos_token) for r in requests]

        def result(s: TokenScores) -> LoglikelihoodResult:
            return LoglikelihoodResult(s.total, s.is_greedy, len(s.logprobs), s.truncated_tokens)

        report = None if on_result is None else (lambda i, s: on_result(i, result(s)))
        return [result(s) for s in self._score_fitted(pairs, progress, report)]

    def score(self, requests: Sequence[ScoreRequest], *, progress: bool = False,
              on_result: OnResult | None = None) -> list[TokenScores]:
        tok = self._require_tokenizer("score")
        pairs = [
            (context_ids(tok, r.prompt, self.config.add_bos_token), list(r.response_token_ids)) for r in requests
        ]
        return self._score_fitted(pairs, progress, on_result)

    def _score_fitted(self, pairs: Sequence[TokenPair], progress: bool,
                      on_result: OnResult | None = None) -> list[TokenScores]:
        """`score_ids` on the pairs cut to the context window, each result saying how many context tokens it lost."""
        fitted = [self._fit(p) for p in pairs]

        def cut(i: int, s: TokenScores) -> TokenScores:
            return replace(s, truncated_tokens=len(pairs[i][0]) - len(fitted[i][0]))

        report = None if on_result is None else (lambda i, s: on_result(i, cut(i, s)))
        return [cut(i, s) for i, s in enumerate(self.score_ids(fitted, progress=progress, on_result=report))]

    # ---- helpers shared by subclasses -------------------------------------------------------
    def prompt_text(self, request: GenerationRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        return render_chat(self._require_tokenizer("chat messages"), request.messages or [])

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        tok = self._require_tokenizer("generate")
        # A chat-rendered prompt already carries the template's own special tokens.
        add_bos = self.config.add_bos_token and request.prompt is not None
        ids = encode_text(tok, self.prompt_text(request), add_bos)
        if not ids:
            raise EvalsuiteError("empty prompt: a generation request needs at least one prompt token")
        return ids

    @property
    def max_length(self) -> int:
        return int(self.config.max_length or self._model_max_length())

    def _model_max_length(self) -> int:
        return 2048

    def _fit(self, pair: TokenPair) -> TokenPair:
        return truncate_left(pair[0], pair[1], self.max_length)

    def _require_tokenizer(self, what: str) -> PreTrainedTokenizerBase:
        if self.tokenizer is None:
            raise EvalsuiteError(f"{self.name} backend needs a local tokenizer for {what}: set `tokenizer`")
        return self.tokenizer

    def close(self) -> None:
        """Release the model / engine / connections. Safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
