"""Requests and results that flow through every backend. Plain dataclasses: easy to hash, store and test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": "..."}
FinishReason = Literal["stop", "length"]


@dataclass
class GenerationRequest:
    """One completion. Exactly one of `prompt` (raw text, used as is) or `messages` (rendered with the
    model's chat template, generation prompt appended) is set. temperature 0 means greedy."""

    prompt: str | None = None
    messages: list[Message] | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Benchmarks only: keep generating past EOS so every backend produces exactly max_new_tokens.
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("GenerationRequest needs exactly one of `prompt` or `messages`")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        self.stop = tuple(self.stop)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Generation:
    """A completion. `text` excludes the stop string that ended it (OpenAI semantics); `token_ids` are the ids
    of `text`: the generated ids without the stop string's tokens and the trailing EOS (None when an HTTP server
    does not return them). `truncated_tokens`: how many tokens were cut from the start of a prompt too long for
    the context window (0: the whole prompt was seen)."""

    text: str
    token_ids: list[int] | None
    finish_reason: FinishReason
    truncated_tokens: int = 0


OnResult = Callable[[int, Any], None]  # (request index, its answer), as soon as it is known


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Sum of the continuation's token log-probs, whether greedy decoding would produce it, and how many context
    tokens were cut from the left to fit the context window."""

    logprob: float
    is_greedy: bool
    num_tokens: int
    truncated_tokens: int = 0


@dataclass(frozen=True)
class ScoreRequest:
    """Teacher-forced scoring of given response token ids after a prompt (POSIX needs this)."""

    prompt: str
    response_token_ids: tuple[int, ...]


@dataclass(frozen=True)
class TokenScores:
    """Per-token log-probs of a continuation, whether every token was the argmax, and how many context tokens
    were cut from the left to fit the context window."""

    logprobs: tuple[float, ...] = field(default=())
    is_greedy: bool = True
    truncated_tokens: int = 0

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))
