"""LLM judges: any OpenAI-compatible endpoint or a local checkpoint, through the same backend interface.

A judge is a backend config (`kind: openai` with `base_url`, `model`, `api_key_env`; or `kind: hf|vllm` with
a checkpoint). Every judgement is cached on disk as soon as it arrives (SQLite, keyed by the judge's settings
and the exact conversation and decoding), so a re-run never pays for the same judgement twice, even after a
failure half-way through a batch. A judgement the caller
cannot parse is asked again (greedy first, then sampled with seeds 1..retries); if every attempt fails it
is returned as failed, never guessed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Sequence, TypeVar

from evalsuite.backends import GenerationRequest
from evalsuite.store import TextCache

T = TypeVar("T")
GREEDY_TEMPERATURE = 0.0  # the first attempt
RETRY_TEMPERATURE = 0.7  # attempts after an unparsable judgement, seeded 1..retries
Messages = list[dict[str, str]]


@dataclass
class Verdict(Generic[T]):
    text: str  # the last judgement received
    value: T | None  # parsed, or None when every attempt failed
    attempts: int


class JudgeCache(TextCache):
    """Judgement text by request key; one SQLite file, safe across processes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, what="judge cache")


class Judge:
    def __init__(self, backend_config: Any, *, cache: JudgeCache | None = None, max_new_tokens: int = 2048,
                 retries: int = 2, backend: Any = None) -> None:
        from evalsuite.paths import cache_dir

        self.config = backend_config
        self.cache = cache or JudgeCache(cache_dir() / "judge-cache.sqlite")
        self.max_new_tokens = max_new_tokens
        self.retries = retries
        self._backend = backend

    @property
    def name(self) -> str:
        return str(self.config.model)

    def identity(self) -> dict[str, Any]:
        """What makes two judges the same judge: its settings (never the key, nor the name of its variable) and,
        for a local checkpoint, the content of its files, so a judge re-trained in place is another judge
        (`evalsuite.store.identity`)."""
        from evalsuite.store.backend import NOT_IDENTITY
        from evalsuite.store import model_identity

        data = self.config.model_dump(mode="json")
        settings = {k: v for k, v in data.items() if k not in NOT_IDENTITY or k in ("model", "tokenizer")}
        if self.config.kind == "openai":  # a served judge is its name and URL: nothing on disk to hash
            return settings
        return {**settings, "content": model_identity(self.config, self.cache)}

    def describe(self) -> dict[str, Any]:
        """The judge as plain data for records (run.json, results files, reports): `model`, `kind` (endpoint kind:
        openai, hf, vllm), `base_url`, and how it decodes (greedy first, then `retries` sampled attempts with
        seeds 1..retries), besides everything `identity` holds."""
        described = {"model": self.name, "kind": self.config.kind, "base_url": getattr(self.config, "base_url", None),
                     "max_new_tokens": self.max_new_tokens, "temperature": GREEDY_TEMPERATURE, "retries": self.retries,
                     "retry_temperature": RETRY_TEMPERATURE}
        return {**described, **{k: v for k, v in self.identity().items() if k not in described}}

    def check(self) -> None:
        """What can be checked without asking anything: a served judge's key (its variable set, see
        `openai_backend.api_key_for`), a local judge's checkpoint. Runs refuse a judge that fails this before any
        model loads; an endpoint that cannot be reached shows only when the first judgement is asked for."""
        if self.config.kind == "openai":
            from evalsuite.backends.openai_backend import api_key_for

            api_key_for(self.config.base_url, self.config.api_key_env)
        else:
            from evalsuite.models.checkpoint import check_checkpoint_dir

            check_checkpoint_dir(self.config.model)

    def backend(self) -> Any:
        if self._backend is None:
            from evalsuite.backends import load_backend

            self._backend = load_backend(self.config)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def request(self, messages: Messages, attempt: int) -> GenerationRequest:
        if attempt == 0:
            return GenerationRequest(messages=messages, max_new_tokens=self.max_new_tokens, temperature=GREEDY_TEMPERATURE)
        return GenerationRequest(messages=messages, max_new_tokens=self.max_new_tokens, temperature=RETRY_TEMPERATURE,
                                 seed=attempt)

    def key(self, req: GenerationRequest, identity: dict[str, Any]) -> str:
        payload = {"judge": identity, "messages": req.messages, "max_new_tokens": req.max_new_tokens,
                   "temperature": req.temperature, "seed": req.seed}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def complete(self, conversations: Sequence[Messages], parse: Callable[[str], T | None]) -> list[Verdict[T]]:
        verdicts: list[Verdict[T] | None] = [None] * len(conversations)
        pending = list(range(len(conversations)))
        identity = self.identity()
        for attempt in range(self.retries + 1):
            if not pending:
                break
            reqs = {i: self.request(conversations[i], attempt) for i in pending}
            keys = {i: self.key(r, identity) for i, r in reqs.items()}
            texts = self.cache.get(list(keys.values()))
            missing = [i for i in pending if keys[i] not in texts]
            if missing:
                # each judgement is kept the moment it arrives: a failure half-way loses none that were paid for
                outs = self.backend().generate([reqs[i] for i in missing], progress=True,
                                               on_result=lambda j, g: self.cache.put({keys[missing[j]]: g.text}))
                texts.update({keys[i]: g.text for i, g in zip(missing, outs)})
            still = []
            for i in pending:
                text = texts[keys[i]]
                value = parse(text)
                verdicts[i] = Verdict(text, value, attempt + 1)
                if value is None:
                    still.append(i)
            pending = still
        return [v for v in verdicts if v is not None]


def make_judge(model: str | None, base_url: str | None, api_key_env: str | None, max_new_tokens: int,
               backend: str | None = None) -> Any:
    """A served model when a URL is given, else a local checkpoint through our backend; None without a model."""
    if model is None:
        return None
    from evalsuite.backends.config import backend_config

    cfg = backend_config(model=model, backend="openai" if base_url else backend, base_url=base_url,
                         api_key_env=api_key_env)
    return Judge(cfg, max_new_tokens=max_new_tokens)
