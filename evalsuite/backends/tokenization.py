"""Tokenisation rules shared by every backend, so that all of them score exactly the same token ids."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from evalsuite.backends.types import Message
from evalsuite.errors import EvalsuiteError


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str, add_bos: bool = False) -> list[int]:
    """Token ids of `text`. Special tokens are never added implicitly (chat templates write their own);
    with `add_bos` a BOS is prepended unless already there, like lm-eval's `add_bos_token`."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if add_bos and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return list(ids)


def tokenizer_adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer puts its BOS token first when asked for special tokens (Llama, Mistral, Gemma do;
    GPT-2-style tokenizers such as SmolLM2's do not)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(with_special) and with_special[0] == bos and tokenizer("x", add_special_tokens=False)["input_ids"][:1] != [bos]


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """What an empty context is scored after (lm-eval: BOS if the model has one, else EOS)."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise EvalsuiteError("tokenizer has neither a BOS nor an EOS token to score an empty context after")


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, context: str, continuation: str, add_bos: bool = False
) -> tuple[list[int], list[int]]:
    """lm-eval's boundary rule: trailing spaces of the context move to the continuation; the context is
    encode(context) and the continuation is the tail of encode(context + continuation) after
    len(encode(context)) tokens (so a token merging across the boundary is not double counted)."""
    if context == "":
        return [prefix_token_id(tokenizer)], encode_text(tokenizer, continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode_text(tokenizer, context + continuation, add_bos)
    context_ids = encode_text(tokenizer, context, add_bos)
    return context_ids, whole[len(context_ids) :]


def context_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, add_bos: bool = False) -> list[int]:
    """Ids of a prompt that given token ids are scored after (empty prompt: the prefix token)."""
    return encode_text(tokenizer, prompt, add_bos) if prompt else [prefix_token_id(tokenizer)]


def ids_of_text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], text: str) -> list[int]:
    """The generated ids that make up `text`, a prefix of their decoding (the answer cut before a stop string):
    the longest prefix of `ids` whose decoding is a prefix of `text`. A token that straddles the cut (part
    answer, part stop string) is left out with the stop string. Scans back from the end: the stop string is
    only a few tokens."""
    ids = list(ids)
    for k in range(len(ids), -1, -1):
        if text.startswith(tokenizer.decode(ids[:k], skip_special_tokens=True)):
            return ids[:k]
    return []


def render_chat(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> str:
    """Messages -> prompt text through the model's own chat template, with the generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise EvalsuiteError(
            "this model's tokenizer has no chat template: send raw prompts (plain format) instead of messages"
        )
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def truncate_left(
    context: list[int], continuation: list[int], max_length: int
) -> tuple[list[int], list[int]]:
    """Keep the last max_length+1 tokens of context+continuation (the model sees all but the last),
    as lm-eval does; the continuation itself must fit."""
    if len(continuation) > max_length:
        raise EvalsuiteError(
            f"continuation of {len(continuation)} tokens exceeds the context window of {max_length}"
        )
    overflow = len(context) + len(continuation) - (max_length + 1)
    return (context[overflow:] if overflow > 0 else context), continuation
