"""Instruction data for WIT: load prompt/response pairs, format them, and mark the prompt tokens.

Formats read (auto-detected from the columns, or named):
  * `alpaca`: instruction / input / output. The prompt is the instruction, then a blank line and the
    input when there is one.
  * `prompt_response`: prompt / response (or TRL's prompt / completion), strings or message lists.
  * `messages`: a chat; the last turn must be the assistant's and is the response, the turns before
    it are the prompt.

Formatting:
  * `chat_template`: the tokenizer's chat template renders prompt + response; the prompt ends where
    the template's generation prompt ends.
  * `plain`: the WIT paper's `prompt + " " + response + eos` (single-turn prompts only).

The prompt/response boundary is a character offset in the rendered text, mapped onto the tokens of the
*whole* sequence through the tokenizer's offsets, so a token that merges across the boundary is never
split or double counted. A token is a prompt token when it starts before the boundary; zero-width
special tokens (an added BOS/EOS) take the side of the token before them (BOS: prompt).

Truncation policy (`max_length`): `drop` (default) removes sequences longer than `max_length` and
counts them; `keep_start` cuts them to `max_length` tokens (the response loses its tail and EOS) and
still drops a sequence that is left with no response token.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from evalsuite.errors import ConfigError
from evalsuite.rows import read_located_rows

DataFormat = Literal["auto", "alpaca", "prompt_response", "messages"]
PromptFormat = Literal["chat_template", "plain"]
CompletionSplit = Literal["all", "short", "long"]
Truncation = Literal["drop", "keep_start"]
PLAIN_SEPARATOR = " "
# Written by scripts/make_demo_data.py: the default (and demo) instruction set.
DEMO_INSTRUCTIONS = Path(__file__).resolve().parent.parent / "data" / "demo_instructions.jsonl"

Messages = list[dict[str, str]]


class DatasetSpec(BaseModel):
    """Where the instruction pairs come from and which of them to keep."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(default=str(DEMO_INSTRUCTIONS),
                      description="JSON/JSONL/Parquet file, a dataset folder, or a Hugging Face hub id")
    split: str = "train"
    format: DataFormat = "auto"
    prompt_column: str | None = None
    response_column: str | None = None
    messages_column: str = "messages"
    limit: int | None = Field(default=None, ge=1, description="keep the first N rows (before filtering)")
    # PLW paper (arXiv 2401.13586): R_g = response tokens / prompt tokens; short-completion means R_g < 1.
    completion_split: CompletionSplit = "all"
    on_bad_rows: Literal["error", "skip"] = "error"


@dataclass(frozen=True)
class Pair:
    prompt: Messages  # the turns before the response
    response: str


@dataclass
class EncodedPair:
    input_ids: list[int]
    prompt_mask: list[bool]

    @property
    def n_prompt(self) -> int:
        return sum(self.prompt_mask)

    @property
    def n_response(self) -> int:
        return len(self.prompt_mask) - self.n_prompt


ExampleT = TypeVar("ExampleT")


@dataclass
class Prepared(Generic[ExampleT]):
    """Tokenised examples ready for a trainer, and an account of every row that did not make it."""

    examples: list[ExampleT]
    fingerprint: str
    stats: dict[str, int] = field(default_factory=dict)
    bad_rows: list[str] = field(default_factory=list)

    def to_dataset(self):
        """One column per field of the example dataclass."""
        from datasets import Dataset

        names = [f.name for f in fields(self.examples[0])]
        return Dataset.from_dict({n: [getattr(e, n) for e in self.examples] for n in names})


PreparedData = Prepared[EncodedPair]


# ---------------------------------------------------------------------------------------------- loading


def load_rows(spec: DatasetSpec) -> tuple[list[dict[str, Any]], list[str]]:
    """The raw rows of a local file, a local dataset folder, or a hub dataset, and where each is ("line 7" in
    a JSONL file, else "row 6") for error messages."""
    return read_located_rows(spec.path, spec.split, limit=spec.limit)


def detect_format(columns: set[str], spec: DatasetSpec) -> DataFormat:
    if spec.format != "auto":
        return spec.format
    if spec.prompt_column or spec.response_column:
        return "prompt_response"
    if spec.messages_column in columns:
        return "messages"
    if {"instruction", "output"} <= columns:
        return "alpaca"
    if "prompt" in columns and ({"response", "completion"} & columns):
        return "prompt_response"
    raise ConfigError(
        f"cannot tell the dataset format from its columns {sorted(columns)}: expected 'messages', "
        "'instruction'+'output' (Alpaca), or 'prompt'+'response'/'completion'; or set dataset.format and the columns"
    )


def _required_columns(fmt: DataFormat, spec: DatasetSpec, columns: set[str]) -> list[str]:
    if fmt == "alpaca":
        return ["instruction", "output"]
    if fmt == "messages":
        return [spec.messages_column]
    response = spec.response_column or ("response" if "response" in columns or "completion" not in columns else "completion")
    return [spec.prompt_column or "prompt", response]


def as_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} is empty or not a string")
    return value


def as_messages(value: Any, what: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} is not a non-empty list of messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"{what} has a message without string 'role' and 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def row_to_pair(row: dict[str, Any], fmt: DataFormat, columns: list[str]) -> Pair:
    """One raw row as a Pair; ValueError says what is wrong with it."""
    if fmt == "alpaca":
        instruction = as_text(row.get("instruction"), "instruction")
        extra = row.get("input") or ""
        if not isinstance(extra, str):
            raise ValueError("input is not a string")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return Pair([{"role": "user", "content": prompt}], as_text(row.get("output"), "output"))
    if fmt == "messages":
        msgs = as_messages(row.get(columns[0]), columns[0])
        if msgs[-1]["role"] != "assistant":
            raise ValueError("the last message is not the assistant's")
        if not any(m["role"] == "user" for m in msgs[:-1]):
            raise ValueError("no user message before the last assistant message")
        return Pair(msgs[:-1], as_text(msgs[-1]["content"], "last assistant message"))
    prompt_value, response_value = row.get(columns[0]), row.get(columns[1])
    prompt = (as_messages(prompt_value, columns[0]) if isinstance(prompt_value, list)
              else [{"role": "user", "content": as_text(prompt_value, columns[0])}])
    if isinstance(response_value, list):  # TRL conversational completion: [{"role": "assistant", ...}]
        msgs = as_messages(response_value, columns[1])
        if len(msgs) != 1 or msgs[0]["role"] != "assistant":
            raise ValueError(f"{columns[1]} must hold exactly one assistant message")
        response_value = msgs[0]["content"]
    return Pair(prompt, as_text(response_value, columns[1]))


RowT = TypeVar("RowT")


@dataclass
class Parsed(Generic[RowT]):
    """The rows that parsed, where each came from, and a description of each row that did not."""

    items: list[RowT]
    where: list[str]  # "line 7" (JSONL) or "row 6", one per item
    bad: list[str] = field(default_factory=list)


def parse_pairs(spec: DatasetSpec) -> Parsed[Pair]:
    """All good pairs and a description of each bad row (an error unless `on_bad_rows: skip`)."""
    rows, where = load_rows(spec)
    if not rows:
        raise ConfigError(f"dataset {spec.path!r} has no rows")
    columns = set(rows[0])
    fmt = detect_format(columns, spec)
    needed = _required_columns(fmt, spec, columns)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ConfigError(f"dataset {spec.path!r} ({fmt} format) is missing column(s) {missing}; it has {sorted(columns)}")
    return parse_rows(spec, rows, where, lambda row: row_to_pair(row, fmt, needed), "dataset")


def load_pairs(spec: DatasetSpec) -> tuple[list[Pair], list[str]]:
    """`parse_pairs` without the locations: the good pairs and the bad-row descriptions."""
    parsed = parse_pairs(spec)
    return parsed.items, parsed.bad


def parse_rows(
    spec: DatasetSpec, rows: list[dict[str, Any]], where: list[str], parse: Callable[[dict[str, Any]], RowT], what: str
) -> Parsed[RowT]:
    """Parse every row; rows `parse` rejects (ValueError) are an error naming where they are, or with
    `on_bad_rows: skip` returned as descriptions."""
    parsed: Parsed[RowT] = Parsed([], [])
    for row, place in zip(rows, where):
        try:
            parsed.items.append(parse(row))
            parsed.where.append(place)
        except ValueError as exc:
            parsed.bad.append(f"{place}: {exc}")
    if parsed.bad and spec.on_bad_rows == "error":
        bad = parsed.bad
        shown = "; ".join(bad[:5]) + (f"; ... ({len(bad)} bad rows)" if len(bad) > 5 else "")
        raise ConfigError(f"{what} {spec.path!r} has bad rows: {shown} (set dataset.on_bad_rows: skip to drop them)")
    return parsed


# ------------------------------------------------------------------------------------------- formatting


def render(pair: Pair, tokenizer: Any, prompt_format: PromptFormat) -> tuple[str, int]:
    """The full training text and the character offset where the response starts."""
    if prompt_format == "plain":
        if len(pair.prompt) != 1 or pair.prompt[0]["role"] != "user":
            raise ValueError("the plain format takes a single user prompt (no system or earlier turns)")
        prompt = pair.prompt[0]["content"]
        return prompt + PLAIN_SEPARATOR + pair.response + tokenizer.eos_token, len(prompt)
    prompt_text = tokenizer.apply_chat_template(pair.prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(pair.prompt + [{"role": "assistant", "content": pair.response}], tokenize=False)
    if not full.startswith(prompt_text):
        raise ValueError("the chat template renders the prompt differently once the response is added")
    return full, len(prompt_text)


def prompt_token_mask(offsets: list[tuple[int, int]], boundary: int) -> list[bool]:
    mask: list[bool] = []
    for start, end in offsets:
        if start == end:  # zero-width (added special token): same side as the token before it
            mask.append(mask[-1] if mask else True)
        else:
            mask.append(start < boundary)
    return mask


def adds_special_tokens(prompt_format: PromptFormat) -> bool:
    """The chat template writes its own special tokens; the plain format gets the tokenizer's usual ones (BOS)."""
    return prompt_format == "plain"


def adds_bos(tokenizer: Any, prompt_format: PromptFormat) -> bool:
    """Whether training text in `prompt_format` starts with the tokenizer's BOS token: the plain format with
    a tokenizer that prepends BOS (Llama, Mistral), as the manifest records for evaluation to match."""
    from evalsuite.backends.tokenization import tokenizer_adds_bos

    return adds_special_tokens(prompt_format) and tokenizer_adds_bos(tokenizer)


def encode_pair(pair: Pair, tokenizer: Any, prompt_format: PromptFormat) -> EncodedPair:
    text, boundary = render(pair, tokenizer, prompt_format)
    enc = tokenizer(text, add_special_tokens=adds_special_tokens(prompt_format), return_offsets_mapping=True)
    mask = prompt_token_mask([tuple(o) for o in enc["offset_mapping"]], boundary)
    encoded = EncodedPair(list(enc["input_ids"]), mask)
    if encoded.n_prompt == 0 or encoded.n_response == 0:
        raise ValueError("formats to a sequence without prompt or without response tokens")
    return encoded


def truncate(example: EncodedPair, max_length: int, policy: Truncation) -> EncodedPair | None:
    """Apply the truncation policy; None means the example is dropped."""
    if len(example.input_ids) <= max_length:
        return example
    if policy == "drop":
        return None
    cut = EncodedPair(example.input_ids[:max_length], example.prompt_mask[:max_length])
    return cut if cut.n_response > 0 else None


def generation_ratio(example: EncodedPair) -> float:
    return example.n_response / example.n_prompt


def keep_for_split(example: EncodedPair, split: CompletionSplit) -> bool:
    if split == "all":
        return True
    short = generation_ratio(example) < 1.0
    return short if split == "short" else not short


def fingerprint_pairs(pairs: list[Pair], prompt_format: PromptFormat) -> str:
    digest = hashlib.sha256(prompt_format.encode())
    for p in pairs:
        digest.update(json.dumps([p.prompt, p.response], ensure_ascii=False, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


PairT = TypeVar("PairT")


def encode_all(
    spec: DatasetSpec,
    parsed: Parsed[PairT],
    encode: Callable[[PairT], ExampleT],
    admit: Callable[[ExampleT], tuple[ExampleT | None, str]],
    reasons: tuple[str, ...],
) -> tuple[list[PairT], list[ExampleT], dict[str, int], list[str]]:
    """Encode every pair; a pair that cannot be formatted is an error naming its row (or, with
    `on_bad_rows: skip`, a counted bad row); `admit` keeps an example (maybe changed) or names the count it
    is dropped under. Returns the kept pairs, their examples, the counts and every bad row."""
    bad = list(parsed.bad)
    stats = {"rows": len(parsed.items) + len(bad), "bad_rows": len(bad), **{r: 0 for r in reasons}}
    kept, examples = [], []
    for pair, place in zip(parsed.items, parsed.where):
        try:
            encoded = encode(pair)
        except ValueError as exc:
            if spec.on_bad_rows == "error":
                raise ConfigError(f"dataset {spec.path!r}: {place} cannot be formatted: {exc}") from exc
            bad.append(f"{place}: {exc}")
            stats["bad_rows"] += 1
            continue
        admitted, reason = admit(encoded)
        if admitted is None:
            stats[reason] += 1
            continue
        kept.append(pair)
        examples.append(admitted)
    stats["examples"] = len(examples)
    if not examples:
        raise ConfigError(f"no training examples left after filtering: {stats}")
    return kept, examples, stats, bad


def prepare_data(
    spec: DatasetSpec, tokenizer: Any, prompt_format: PromptFormat, max_length: int, truncation: Truncation = "drop"
) -> PreparedData:
    """Load, validate, format, tokenise, truncate and split: the examples every grid cell trains on."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("WIT training needs a fast tokenizer (it reads token offsets to find the prompt/response boundary)")
    if prompt_format == "chat_template" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the tokenizer has no chat template: set prompt_format: plain")
    parsed = parse_pairs(spec)

    def admit(encoded: EncodedPair) -> tuple[EncodedPair | None, str]:
        encoded = truncate(encoded, max_length, truncation)
        if encoded is None:
            return None, "too_long"
        return (encoded, "") if keep_for_split(encoded, spec.completion_split) else (None, "filtered_by_split")

    kept_pairs, examples, stats, bad = encode_all(
        spec, parsed, lambda pair: encode_pair(pair, tokenizer, prompt_format), admit, ("too_long", "filtered_by_split")
    )
    stats["prompt_tokens"] = sum(e.n_prompt for e in examples)
    stats["response_tokens"] = sum(e.n_response for e in examples)
    return Prepared(examples, fingerprint_pairs(kept_pairs, prompt_format), stats, bad)
