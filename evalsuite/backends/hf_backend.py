"""transformers backend: length-sorted batches, left padding, LM head only where it is needed, and a
prefix shared by many scoring requests (k-shot exemplars) encoded once (see `prefix.py`)."""

from __future__ import annotations

import inspect
import logging
from dataclasses import replace
from functools import cached_property
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, DynamicCache, GenerationConfig, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from evalsuite.backends.base import Backend, TokenPair
from evalsuite.backends.batching import group_by, left_pad, length_sorted_batches
from evalsuite.backends.config import HFConfig
from evalsuite.backends.loading import TORCH_DTYPES, load_tokenizer, model_context_length, resolve_device, resolve_dtype
from evalsuite.backends.prefix import Row, plan_rows, prefix_groups
from evalsuite.backends.sampling import SeededSampler
from evalsuite.backends.tokenization import ids_of_text
from evalsuite.backends.types import Generation, GenerationRequest, OnResult, TokenScores
from evalsuite.errors import CheckpointError, EvalsuiteError
from evalsuite.models.checkpoint import check_checkpoint_dir, first_line
from evalsuite.models.merge import merge_adapter

log = logging.getLogger(__name__)

# Cap on the float32 log-softmax a scoring batch materialises (elements): ~1 GiB.
SCORE_LOGITS_BUDGET = 1 << 28


class HFBackend(Backend):
    name = "hf"

    def __init__(self, config: HFConfig) -> None:
        path = check_checkpoint_dir(config.model, allow_pickle=config.allow_pickle)
        tokenizer = load_tokenizer(config.tokenizer or path, config.trust_remote_code)
        super().__init__(config, tokenizer)
        self.checkpoint = path
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, path)
        self.model = self._load_model(path, config)
        self._context_length = model_context_length(path, tokenizer)
        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        self.eos_ids = {int(e) for e in eos_ids if e is not None}

    def _load_model(self, path: Path, config: HFConfig) -> torch.nn.Module:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(path),
                dtype=TORCH_DTYPES[self.dtype],
                trust_remote_code=config.trust_remote_code,
                use_safetensors=None if config.allow_pickle else True,
            )
        except Exception as exc:
            raise CheckpointError(f"cannot load checkpoint {path}: {first_line(exc)}") from None
        if config.adapter:
            # Merged weights give the same outputs as the adapter and run at full speed.
            model = merge_adapter(model, config.adapter)
        return model.to(self.device).eval()

    def _model_max_length(self) -> int:
        return self._context_length

    @cached_property
    def _shares_prefixes(self) -> bool:
        return reuses_plain_kv_cache(self.model)  # probed when scoring first needs it, not at load

    # ---- generation -------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False,
                 on_result: OnResult | None = None) -> list[Generation]:
        prompts = [self.prompt_ids(r) for r in requests]
        results: list[Generation | None] = [None] * len(requests)
        # Requests share a batch only when their decoding settings match (seeds may differ).
        groups = group_by([(r.max_new_tokens, r.temperature, r.top_p, r.stop, r.ignore_eos) for r in requests])
        plan = [
            batch
            for idxs in groups.values()
            for batch in length_sorted_batches(idxs, [len(p) for p in prompts], self.config.batch_size)
        ]
        for batch in tqdm(plan, desc="generate", unit="batch", disable=not progress):
            outs = self._generate_batch([prompts[i] for i in batch], [requests[i] for i in batch])
            for i, out in zip(batch, outs):
                results[i] = out
                if on_result is not None:
                    on_result(i, out)
        return [r for r in results if r is not None]

    def _generate_batch(self, prompts: list[list[int]], reqs: list[GenerationRequest]) -> list[Generation]:
        first = reqs[0]
        room = self.max_length - first.max_new_tokens
        if room < 1:
            raise EvalsuiteError(f"max_new_tokens={first.max_new_tokens} leaves no room in a {self.max_length}-token window")
        # Like lm-eval: keep the end of an over-long prompt (and say how much was cut).
        cuts = [max(0, len(p) - room) for p in prompts]
        prompts = [p[-room:] for p in prompts]
        ids, mask = left_pad(prompts, self.tokenizer.pad_token_id)
        gen_config = GenerationConfig(
            max_new_tokens=first.max_new_tokens,
            min_new_tokens=first.max_new_tokens if first.ignore_eos else None,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
        )
        processors = LogitsProcessorList()
        if not first.greedy:
            processors.append(SeededSampler([r.seed for r in reqs], first.temperature, first.top_p))
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=gen_config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList(
                    [GeneratedStopStrings(ids.shape[1], first.stop, self.tokenizer)] if first.stop else []),
            )
        new_tokens = out[:, ids.shape[1] :].tolist()
        return [replace(self._finish(row, first), truncated_tokens=cut) for row, cut in zip(new_tokens, cuts)]

    def _finish(self, row: list[int], req: GenerationRequest) -> Generation:
        """Cut a generated row at EOS / the stop string and name why it ended."""
        hit_eos = False
        if not req.ignore_eos:
            for pos, tid in enumerate(row):
                if tid in self.eos_ids:
                    row, hit_eos = row[:pos], True
                    break
        pad = self.tokenizer.pad_token_id
        while row and row[-1] == pad and not req.ignore_eos:
            row = row[:-1]  # rows that stopped on a stop string are padded afterwards
        text = self.tokenizer.decode(row, skip_special_tokens=True)
        cut = min((p for p in (text.find(s) for s in req.stop) if p >= 0), default=-1)
        if cut >= 0:  # the answer ends before the stop string: its ids too (POSIX scores exactly these)
            return Generation(text[:cut], ids_of_text(self.tokenizer, row, text[:cut]), "stop")
        finish = "stop" if hit_eos or len(row) < req.max_new_tokens else "length"
        return Generation(text, row, finish)

    # ---- scoring ----------------------------------------------------------------------------
    def score_ids(self, pairs: Sequence[TokenPair], *, progress: bool = False,
                  on_result: OnResult | None = None) -> list[TokenScores]:
        rows = plan_rows(pairs)
        min_prefix = self.config.prefix_min_tokens if self.config.prefix_min_tokens and self._shares_prefixes else 0
        vocab = int(self.model.config.get_text_config().vocab_size)

        def cost(batch: list[int]) -> int:
            return len(batch) * max(rows[r].keep for r in batch) * vocab

        plan = []
        for group in prefix_groups(rows, min_prefix):
            suffix = {r: len(rows[r].tokens) - group.prefix_len for r in group.rows}
            plan.append((group, length_sorted_batches(group.rows, suffix, self.config.batch_size, cost=cost,
                                                      budget=SCORE_LOGITS_BUDGET)))
        results = [TokenScores((), True)] * len(pairs)  # an empty continuation scores 0 and stays as is
        with tqdm(total=sum(len(b) for _, b in plan), desc="score", unit="batch", disable=not progress) as bar:
            for group, batches in plan:
                # the group's shared prefix runs once; every batch of the group reuses its keys and values
                past = self._encode_prefix(rows[group.rows[0]].tokens[: group.prefix_len]) if group.prefix_len else None
                for batch in batches:
                    for r, logprobs in zip(batch, self._row_logprobs([rows[r] for r in batch], group.prefix_len, past)):
                        for p in rows[r].pairs:
                            results[p] = token_scores(logprobs, pairs[p][1])
                            if on_result is not None:
                                on_result(p, results[p])
                    bar.update()
        if on_result is not None:  # empty continuations are in no row
            for p in (p for p, (_, cont) in enumerate(pairs) if not cont):
                on_result(p, results[p])
        return results

    def _encode_prefix(self, prefix: Sequence[int]) -> Any:
        """Keys and values of a shared prefix, computed once for every row of its group."""
        kwargs = {"logits_to_keep": 1} if self._keeps_logits else {}
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(prefix)], device=self.device), use_cache=True, **kwargs)
        return out.past_key_values

    def _row_logprobs(self, rows: list[Row], prefix_len: int, past: Any) -> list[torch.Tensor]:
        """Log-softmax over the last `keep` positions of each row. Rows are left-padded so that every
        row's scored positions sit at the end (the LM head runs only there); after a shared prefix the
        padding sits between the prefix and the row's own suffix, masked out."""
        ids, mask = left_pad([r.tokens[prefix_len:] for r in rows], self.tokenizer.pad_token_id)
        keep = max(r.keep for r in rows)
        positions = prefix_len + (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {"logits_to_keep": keep} if self._keeps_logits else {}
        if past is not None:
            kwargs["past_key_values"] = DynamicCache(
                ddp_cache_data=[(k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1))
                                for k, v, *_ in past])
            mask = torch.cat([torch.ones(len(rows), prefix_len, dtype=mask.dtype), mask], dim=-1)
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=past is not None,
                **kwargs,
            ).logits[:, -keep:]
            return [torch.log_softmax(logits[i, keep - r.keep :].float(), dim=-1) for i, r in enumerate(rows)]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def token_scores(logprobs: torch.Tensor, continuation: Sequence[int]) -> TokenScores:
    """A continuation's per-token log-probs from the log-softmax rows that end at its last token."""
    lp = logprobs[len(logprobs) - len(continuation):]
    target = torch.tensor(list(continuation), device=lp.device)
    token_lp = lp.gather(-1, target[:, None]).squeeze(-1)
    return TokenScores(tuple(token_lp.tolist()), bool((lp.argmax(-1) == target).all()))


def reuses_plain_kv_cache(model: torch.nn.Module) -> bool:
    """Whether a prefix's keys and values can be copied across a batch: full attention in every layer and
    transformers' plain DynamicCache (not sliding-window, recurrent or encoder-decoder models)."""
    from transformers.cache_utils import DynamicLayer

    config = model.config.get_text_config()
    if getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return False
    try:
        with torch.inference_mode():
            probe = model(input_ids=torch.zeros((1, 2), dtype=torch.long, device=model.device), use_cache=True)
    except Exception:  # noqa: BLE001 - any model that cannot return a cache simply does not share prefixes
        return False
    cache = probe.past_key_values
    return type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)


class GeneratedStopStrings(StoppingCriteria):
    """Stop a row once a stop string appears in its *generated* text. transformers' `stop_strings` also
    matches a stop string that begins inside the prompt (a prompt ending in "\n" and a generated "\n"
    stop on "\n\n" at once); lm-eval and vLLM look at the generated text only, and so do we. Only the
    last few generated tokens are decoded: a new occurrence must end in them."""

    def __init__(self, prompt_length: int, stops: Sequence[str], tokenizer: object) -> None:
        self.start, self.stops, self.tokenizer = prompt_length, tuple(stops), tokenizer
        self.window = max(len(s) for s in self.stops) + 2  # a token holds at least one character

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        generated = input_ids[:, self.start:]
        tails = self.tokenizer.batch_decode(generated[:, -self.window:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in tails], dtype=torch.bool, device=input_ids.device)
