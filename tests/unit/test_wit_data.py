"""Instruction data: formats, the offset-based prompt/response boundary, truncation, the R_g split, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.errors import ConfigError
from tests.conftest import write_jsonl
from evalsuite.training.data import (
    DEMO_INSTRUCTIONS,
    DatasetSpec,
    EncodedPair,
    Pair,
    encode_pair,
    load_pairs,
    prepare_data,
    prompt_token_mask,
    truncate,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tok(tiny_tok):
    return tiny_tok


def test_three_formats_give_the_same_pair(tmp_path):
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Add", "input": "2 and 3", "output": "5"}])
    pr = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Add\n\n2 and 3", "response": "5"}])
    trl = write_jsonl(tmp_path / "c.jsonl", [{"prompt": [{"role": "user", "content": "Add\n\n2 and 3"}],
                                         "completion": [{"role": "assistant", "content": "5"}]}])
    chat = write_jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "Add\n\n2 and 3"},
                                                       {"role": "assistant", "content": "5"}]}])
    pairs = [load_pairs(DatasetSpec(path=str(p)))[0] for p in (alpaca, pr, trl, chat)]
    assert all(p == pairs[0] for p in pairs)
    assert pairs[0][0] == Pair([{"role": "user", "content": "Add\n\n2 and 3"}], "5")


def test_parquet_and_saved_dataset_folders(tmp_path):
    from datasets import Dataset

    ds = Dataset.from_list([{"prompt": "hi", "response": "there"}] * 3)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    assert len(load_pairs(DatasetSpec(path=str(tmp_path / "d.parquet")))[0]) == 3
    assert len(load_pairs(DatasetSpec(path=str(tmp_path / "saved")))[0]) == 3


def test_chat_boundary_from_offsets_matches_rendered_prompt(tok):
    pair = Pair([{"role": "user", "content": "What is two plus two?"}], "four")
    enc = encode_pair(pair, tok, "chat_template")
    prompt_ids = [i for i, m in zip(enc.input_ids, enc.prompt_mask) if m]
    response_ids = [i for i, m in zip(enc.input_ids, enc.prompt_mask) if not m]
    assert tok.decode(prompt_ids) == "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(response_ids) == "four<|im_end|>\n"
    assert enc.prompt_mask == sorted(enc.prompt_mask, reverse=True)  # one contiguous prompt, then the response


def test_plain_format_is_prompt_space_response_eos(tok):
    enc = encode_pair(Pair([{"role": "user", "content": "Answer"}], "four"), tok, "plain")
    assert tok.decode(enc.input_ids) == "Answer four<|im_end|>"
    assert tok.decode([i for i, m in zip(enc.input_ids, enc.prompt_mask) if not m]) == " four<|im_end|>"


def test_token_merging_across_the_boundary_is_one_prompt_token():
    # Offsets of a token that spans the boundary (chars 3..6 with boundary 5) count as prompt; a zero-width
    # added token takes the side of the token before it.
    assert prompt_token_mask([(0, 0), (0, 3), (3, 6), (6, 9), (9, 9)], 5) == [True, True, True, False, False]


def test_truncation_policy():
    ex = EncodedPair(list(range(10)), [True] * 6 + [False] * 4)
    assert truncate(ex, 10, "drop") is ex
    assert truncate(ex, 8, "drop") is None
    cut = truncate(ex, 8, "keep_start")
    assert cut.input_ids == list(range(8)) and cut.n_response == 2
    assert truncate(ex, 6, "keep_start") is None  # no response token left


def test_completion_split_uses_generation_ratio(tok, tmp_path):
    rows = [{"prompt": "Name a capital city of a country in Europe please", "response": "Paris"},
            {"prompt": "Poem", "response": "the sea, the sky, and the wind; the sea, the sky, and the wind"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    short = prepare_data(DatasetSpec(path=str(path), completion_split="short"), tok, "plain", 128)
    long = prepare_data(DatasetSpec(path=str(path), completion_split="long"), tok, "plain", 128)
    assert short.stats["examples"] == 1 and short.examples[0].n_response < short.examples[0].n_prompt
    assert long.stats["examples"] == 1 and long.examples[0].n_response >= long.examples[0].n_prompt
    assert short.stats["filtered_by_split"] == 1


def test_missing_columns_are_named(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(ConfigError, match="cannot tell the dataset format"):
        load_pairs(DatasetSpec(path=str(path)))
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['instruction', 'output'\]"):
        load_pairs(DatasetSpec(path=str(path), format="alpaca"))


def test_bad_rows_error_or_skip(tmp_path):
    rows = [{"prompt": "ok", "response": "fine"}, {"prompt": "", "response": "x"}, {"prompt": "y", "response": None}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(ConfigError, match="line 2: prompt is empty"):
        load_pairs(DatasetSpec(path=str(path)))
    pairs, bad = load_pairs(DatasetSpec(path=str(path), on_bad_rows="skip"))
    assert len(pairs) == 1 and len(bad) == 2


def test_bad_rows_are_named_by_their_line_in_a_jsonl_file(tok, tmp_path):
    """The line a user opens in an editor (blank lines counted), not the row index; other sources keep "row i"."""
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"instruction": "Add", "output": "5"}) + "\n\n"
                    + json.dumps({"instruction": "Sub", "output": ""}) + "\n")
    with pytest.raises(ConfigError, match=r"line 3: output is empty or not a string"):
        prepare_data(DatasetSpec(path=str(path)), tok, "plain", 64)
    from datasets import Dataset

    Dataset.from_list([{"instruction": "Add", "output": "5"}, {"instruction": "Sub", "output": ""}]).to_parquet(
        str(tmp_path / "d.parquet"))
    with pytest.raises(ConfigError, match=r"row 1: output is empty"):
        load_pairs(DatasetSpec(path=str(tmp_path / "d.parquet")))
    # A row that parses but cannot be formatted is named the same way.
    multi_turn = {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hello"}]}
    path.write_text("\n" + json.dumps(multi_turn) + "\n")
    with pytest.raises(ConfigError, match=r"line 2 cannot be formatted: the plain format takes a single user prompt"):
        prepare_data(DatasetSpec(path=str(path)), tok, "plain", 64)


def test_adds_bos_only_for_plain_prompts_with_a_bos_adding_tokenizer(tok, tmp_path):
    from transformers import AutoTokenizer

    from evalsuite.training.data import adds_bos
    from tests.unit.test_training_bos import bos_model_dir

    bos_tok = AutoTokenizer.from_pretrained(bos_model_dir(tmp_path / "bos"))
    assert adds_bos(bos_tok, "plain") and not adds_bos(bos_tok, "chat_template")
    assert not adds_bos(tok, "plain") and not adds_bos(tok, "chat_template")  # has a BOS token, does not prepend it


def test_messages_must_end_with_the_assistant(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(ConfigError, match="last message is not the assistant"):
        load_pairs(DatasetSpec(path=str(path)))


def test_empty_after_filtering_is_an_error(tok, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a long prompt " * 20, "response": "ok"}])
    with pytest.raises(ConfigError, match="no training examples left"):
        prepare_data(DatasetSpec(path=str(path)), tok, "plain", 16)


def test_fingerprint_tracks_content_not_file_format(tok, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Add", "input": "", "output": "5"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "Add", "response": "5"}])
    c = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "Add", "response": "6"}])
    fp = [prepare_data(DatasetSpec(path=str(p)), tok, "plain", 64).fingerprint for p in (a, b, c)]
    assert fp[0] == fp[1] != fp[2]


def test_demo_set_is_reproducible_and_mixed(tmp_path):
    out = tmp_path / "regenerated.jsonl"
    prefs = tmp_path / "prefs.jsonl"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_data.py"), "--out", str(out), "--prefs-out", str(prefs)],
                   check=True, capture_output=True)
    assert out.read_bytes() == DEMO_INSTRUCTIONS.read_bytes()
    assert prefs.read_bytes() == DEMO_INSTRUCTIONS.with_name("demo_preferences.jsonl").read_bytes()
    pairs, _ = load_pairs(DatasetSpec(path=str(DEMO_INSTRUCTIONS)))
    lengths = sorted(len(p.response.split()) for p in pairs)
    assert len(pairs) >= 200 and lengths[0] <= 2 and lengths[-1] >= 40
