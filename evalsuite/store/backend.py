"""A backend whose answers come from the durable request store when it has them.

`StoredBackend(backend, store)` answers `generate`, `loglikelihood` and `score` like the backend it wraps,
but looks every request up first (key: the model's identity, the settings that can change an
answer, the request) and sends only the misses to the model, all in one call (`engine_batch`: as many as
it is given), so an engine with continuous batching always has work queued. Answers are committed as they come
back (`on_result`), every `commit_every` of them: an interrupted run keeps everything committed so far (a
SIGKILL loses at most the uncommitted part, an exception not even that) and a re-run asks the model only for
the rest. The commit size is about what a kill may lose; the engine batch about keeping the engine busy.
Identical requests within a call are answered once. The key's model identity is the
content of every file that can change an answer (`evalsuite.store.identity`), so a checkpoint re-trained
into the same folder is never answered from the old model's rows.

The default commit is larger for scoring than for generation: a scoring answer is cheap to redo, while
long generations are what a kill would lose.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Callable, Sequence

from evalsuite.backends.types import (
    Generation,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    OnResult,
    ScoreRequest,
    TokenScores,
)
from evalsuite.store import RequestStore, StoreError, canonical, model_identity, request_key

# Settings that change how fast, not what, a backend answers. (The tokenizer's *path* is not identity; its
# files' content is part of the model identity, `evalsuite.store.identity`.)
NOT_IDENTITY = {"model", "tokenizer", "batch_size", "concurrency", "timeout_s", "max_retries", "backoff_s",
                "retry_deadline_s", "kv_cache_space_gb", "gpu_memory_utilization", "enforce_eager", "api_key_env",
                "prefix_min_tokens", "enable_lora", "max_loras", "max_cpu_loras", "max_lora_rank", "lora_swap",
                "tensor_parallel_size", "enable_prefix_caching"}
COMMIT_EVERY = {"generate": 64, "loglikelihood": 512, "score": 512}  # answers per commit


def backend_identity(config: Any) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    return {k: v for k, v in data.items() if k not in NOT_IDENTITY and k != "adapter"}


def _generation(payload: dict[str, Any]) -> Generation:
    return Generation(payload["text"], payload["token_ids"], payload["finish_reason"], payload["truncated_tokens"])


def _loglikelihood(payload: dict[str, Any]) -> LoglikelihoodResult:
    return LoglikelihoodResult(payload["logprob"], payload["is_greedy"], payload["num_tokens"], payload["truncated_tokens"])


def _scores(payload: dict[str, Any]) -> TokenScores:
    return TokenScores(tuple(payload["logprobs"]), payload["is_greedy"], payload["truncated_tokens"])


class StoredBackend:
    def __init__(self, backend: Any, store: RequestStore, commit_every: int | None = None,
                 engine_batch: int | None = None) -> None:
        self.backend = backend
        self.store = store
        self.commit_every = commit_every
        self.engine_batch = engine_batch  # misses per call to the model (None: all of a call's misses at once)
        self.model = model_identity(backend.config, store)
        self.identity = canonical(backend_identity(backend.config))
        self.answered = 0  # requests sent to the model by this object (the rest came from the store)

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    @property
    def config(self) -> Any:
        return self.backend.config

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "StoredBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False,
                 on_result: OnResult | None = None) -> list[Generation]:
        results = self._answer("generate", requests, self.backend.generate, _generation, progress)
        for i, generation in enumerate(results):  # every answer is stored by now
            if on_result is not None:
                on_result(i, generation)
        return results

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False,
                      on_result: OnResult | None = None) -> list[LoglikelihoodResult]:
        return self._answer("loglikelihood", requests, self.backend.loglikelihood, _loglikelihood, progress)

    def score(self, requests: Sequence[ScoreRequest], *, progress: bool = False,
              on_result: OnResult | None = None) -> list[TokenScores]:
        return self._answer("score", requests, self.backend.score, _scores, progress)

    def _answer(self, kind: str, requests: Sequence[Any], call: Callable[..., list[Any]], load: Callable[[dict], Any],
                progress: bool) -> list[Any]:
        contents = [canonical(asdict(r)) for r in requests]
        keys = [request_key(self.model, self.identity, kind, c) for c in contents]
        stored = self.store.get(keys)
        todo: dict[str, int] = {}  # first position of each missing key: duplicates are answered once
        for i, k in enumerate(keys):
            if k not in stored and k not in todo:
                todo[k] = i
        pending = list(todo.items())
        every = self.commit_every or COMMIT_EVERY[kind]
        chunk = self.engine_batch or max(len(pending), 1)
        for start in range(0, len(pending), chunk):
            batch = pending[start:start + chunk]
            answered: list[tuple[str, str]] = []  # (key, answer) not yet committed

            def commit() -> None:
                self.store.put((k, self.model, self.identity, kind, contents[todo[k]], a) for k, a in answered)
                stored.update(answered)
                self.answered += len(answered)
                answered.clear()

            def keep(j: int, answer: Any) -> None:
                answered.append((batch[j][0], canonical(asdict(answer))))
                if len(answered) >= every:
                    commit()

            try:
                call([requests[i] for _, i in batch], progress=progress, on_result=keep)
            except StoreError:
                raise
            except BaseException:  # a failure or Ctrl-C: what was answered before it is kept
                commit()
                raise
            commit()
        return [load(json.loads(stored[k])) for k in keys]
