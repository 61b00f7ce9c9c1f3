"""Preference data for DPO: prompt / chosen / rejected, formatted exactly as the SFT cell formatted prompts.

Layouts read:
  * plain: `prompt`, `chosen`, `rejected` strings;
  * conversational: `prompt` a message list, `chosen` / `rejected` one-message assistant lists (TRL's
    layout), or `chosen` / `rejected` full conversations whose last turn is the assistant's and whose earlier
    turns are the prompt (binarized UltraFeedback: `prompt` is then the first user turn as a string and is
    superseded by the conversation).

Each pair is rendered with the same `render`/`encode_pair` the SFT data uses (chat template or the plain
`prompt + " " + response + eos`), so the DPO prompt tokens are exactly the tokens the SFT cell trained on.
The prompt is the longest common token prefix of the chosen and rejected encodings' prompt parts; the
rest of each sequence is its completion (what TRL's DPO collator expects as prompt_ids / chosen_ids /
rejected_ids).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from evalsuite.errors import ConfigError
from evalsuite.training.data import (
    DatasetSpec,
    Messages,
    Pair,
    Parsed,
    Prepared,
    PromptFormat,
    as_messages,
    as_text,
    encode_all,
    encode_pair,
    load_rows,
    parse_rows,
)


@dataclass(frozen=True)
class PreferencePair:
    prompt: Messages
    chosen: str
    rejected: str


@dataclass
class EncodedPreference:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


PreparedPreferences = Prepared[EncodedPreference]


def _answer(value: Any, what: str) -> tuple[Messages | None, str]:
    """A completion as (earlier turns or None, assistant text)."""
    if isinstance(value, str):
        return None, as_text(value, what)
    msgs = as_messages(value, what)
    if msgs[-1]["role"] != "assistant":
        raise ValueError(f"{what}: the last message is not the assistant's")
    return (msgs[:-1] or None), as_text(msgs[-1]["content"], f"{what} answer")


def row_to_preference(row: dict[str, Any]) -> PreferencePair:
    chosen_ctx, chosen = _answer(row.get("chosen"), "chosen")
    rejected_ctx, rejected = _answer(row.get("rejected"), "rejected")
    if chosen_ctx is not None or rejected_ctx is not None:
        # Full conversations (UltraFeedback binarized): the shared earlier turns are the prompt.
        if chosen_ctx != rejected_ctx:
            raise ValueError("chosen and rejected conversations have different prompts")
        prompt = chosen_ctx
    elif isinstance(row.get("prompt"), list):
        prompt = as_messages(row["prompt"], "prompt")
    else:
        prompt = [{"role": "user", "content": as_text(row.get("prompt"), "prompt")}]
    if not any(m["role"] == "user" for m in prompt):
        raise ValueError("the prompt has no user message")
    if chosen == rejected:
        raise ValueError("chosen and rejected are identical")
    return PreferencePair(prompt, chosen, rejected)


def parse_preferences(spec: DatasetSpec) -> Parsed[PreferencePair]:
    """All good preference pairs and a description of each bad row (an error unless `on_bad_rows: skip`)."""
    rows, where = load_rows(spec)
    if not rows:
        raise ConfigError(f"preference dataset {spec.path!r} has no rows")
    columns = set(rows[0])
    missing = [c for c in ("chosen", "rejected") if c not in columns]
    if missing or ("prompt" not in columns and not all(isinstance(rows[0].get(c), list) for c in ("chosen", "rejected"))):
        raise ConfigError(
            f"preference dataset {spec.path!r} needs columns prompt, chosen, rejected (or chosen/rejected "
            f"conversations); it has {sorted(columns)}"
        )
    return parse_rows(spec, rows, where, row_to_preference, "preference dataset")


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_preference(pair: PreferencePair, tokenizer: Any, prompt_format: PromptFormat) -> EncodedPreference:
    chosen = encode_pair(Pair(pair.prompt, pair.chosen), tokenizer, prompt_format)
    rejected = encode_pair(Pair(pair.prompt, pair.rejected), tokenizer, prompt_format)
    n = min(chosen.n_prompt, rejected.n_prompt, common_prefix(chosen.input_ids, rejected.input_ids))
    if n == 0:
        raise ValueError("chosen and rejected share no prompt tokens")
    return EncodedPreference(chosen.input_ids[:n], chosen.input_ids[n:], rejected.input_ids[n:])


def prepare_preferences(
    spec: DatasetSpec, tokenizer: Any, prompt_format: PromptFormat, max_length: int
) -> PreparedPreferences:
    """Load, validate and encode preference pairs in the SFT cell's prompt format. A pair longer than
    `max_length` (prompt + the longer completion) is dropped and counted."""
    parsed = parse_preferences(spec)

    def admit(enc: EncodedPreference) -> tuple[EncodedPreference | None, str]:
        too_long = len(enc.prompt_ids) + max(len(enc.chosen_ids), len(enc.rejected_ids)) > max_length
        return (None, "too_long") if too_long else (enc, "")

    kept, examples, stats, bad = encode_all(
        spec, parsed, lambda pair: encode_preference(pair, tokenizer, prompt_format), admit, ("too_long",)
    )
    digest = hashlib.sha256(prompt_format.encode())
    for p in kept:
        digest.update(json.dumps([p.prompt, p.chosen, p.rejected], ensure_ascii=False, sort_keys=True).encode() + b"\n")
    return Prepared(examples, digest.hexdigest(), stats, bad)
