"""Chat template: the splice fast path is used only where it reproduces the template's own text."""

import pytest
from transformers import AutoTokenizer

from codescaler import TemplateError, tiny
from codescaler.template import ChatTemplate


def _tokenizer(tmp_path, template):
    tiny.save_qwen_tokenizer(tmp_path, template)
    return AutoTokenizer.from_pretrained(tmp_path)


def _conversation(tok, q, c):
    return tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": c}],
                                   tokenize=False)


@pytest.mark.parametrize("template,fast", [(tiny.CHATML_TEMPLATE, True), (tiny.QWEN3_STYLE_TEMPLATE, False)])
def test_render_equals_apply_chat_template(tmp_path, humaneval, template, fast):
    tok = _tokenizer(tmp_path, template)
    t = ChatTemplate(tok)
    assert t.fast is fast
    pairs = [(p["prompt"], (p["prompt"] + p["canonical_solution"]).strip()) for p in humaneval]
    pairs += [("\nq\n", "\n\ncode"), ("q", "<think>\nx\n</think>\n\nprint(1)"), ("", "")]
    for q, c in pairs:
        assert t.render(q, c) == _conversation(tok, q, c)


def test_template_that_rewrites_content_is_rendered_per_item(tmp_path):
    tok = _tokenizer(tmp_path, tiny.QWEN3_STYLE_TEMPLATE)
    t = ChatTemplate(tok)
    # The Qwen3-style template drops leading newlines of the answer; a naive splice would keep them.
    assert t.render("q", "\n\nx = 1").endswith("</think>\n\nx = 1<|im_end|>\n")


def test_missing_template_is_a_typed_error(tmp_path):
    tok = _tokenizer(tmp_path, None)
    with pytest.raises(TemplateError, match="no chat_template"):
        ChatTemplate(tok, source=str(tmp_path))
