import pytest

from evalsuite.backends.tokenization import (
    context_ids,
    encode_pair,
    encode_text,
    prefix_token_id,
    render_chat,
    truncate_left,
)
from evalsuite.errors import EvalsuiteError


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from evalsuite.backends.loading import load_tokenizer

    return load_tokenizer(tiny_model_dir)


def test_pair_is_the_tail_of_the_whole_encoding(tok):
    ctx, cont = encode_pair(tok, "Question: what is two plus two? Answer:", " four")
    assert ctx + cont == encode_text(tok, "Question: what is two plus two? Answer: four")
    assert ctx == encode_text(tok, "Question: what is two plus two? Answer:")
    assert tok.decode(cont) == " four"


def test_trailing_context_spaces_move_to_the_continuation(tok):
    # lm-eval moves the context's trailing whitespace onto the continuation before encoding.
    assert encode_pair(tok, "Answer: ", "four") == encode_pair(tok, "Answer:", " four")


@pytest.mark.parametrize(
    "context,continuation",
    [("the capital of France is P", "aris"), ("Answer:", " four"), ("two plus tw", "o? Answer"), ("A B", " C D")],
)
def test_boundary_rule_matches_lm_eval_definition(tok, context, continuation):
    # lm-eval: context_enc = encode(context); continuation_enc = encode(context+continuation)[len(context_enc):]
    ctx, cont = encode_pair(tok, context, continuation)
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    expected_ctx = tok(context, add_special_tokens=False)["input_ids"]
    assert ctx == expected_ctx
    assert cont == whole[len(expected_ctx):]


def test_empty_context_is_scored_after_the_prefix_token(tok):
    ctx, cont = encode_pair(tok, "", "hello")
    assert ctx == [prefix_token_id(tok)] == [tok.bos_token_id]
    assert cont == encode_text(tok, "hello")
    assert context_ids(tok, "") == [tok.bos_token_id]


def test_add_bos_prepends_once(tok):
    ids = encode_text(tok, "hello", add_bos=True)
    assert ids[0] == tok.bos_token_id and ids[1:] == encode_text(tok, "hello")
    assert encode_text(tok, "<|im_start|>hello", add_bos=True).count(tok.bos_token_id) == 1


def test_truncate_left_keeps_the_end():
    ctx, cont = truncate_left(list(range(10)), [10, 11], max_length=5)
    assert ctx + cont == [6, 7, 8, 9, 10, 11]  # max_length + 1 tokens; the model reads the first 5
    assert truncate_left([1, 2], [3], max_length=5) == ([1, 2], [3])
    with pytest.raises(EvalsuiteError, match="exceeds the context window"):
        truncate_left([1], list(range(6)), max_length=5)


def test_render_chat_uses_the_template(tok):
    text = render_chat(tok, [{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_render_chat_without_template_is_a_clear_error(tok):
    tok2 = type(tok).from_pretrained(tok.name_or_path)
    tok2.chat_template = None
    with pytest.raises(EvalsuiteError, match="no chat template"):
        render_chat(tok2, [{"role": "user", "content": "hi"}])
