"""Chat template: the splice fast path is used only where it reproduces the template's own text."""

import importlib.util
import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from codescaler import TemplateError, tiny
from codescaler.template import MAX_PROBES, ChatTemplate, Splice

# Pieces random contents are made of: the kinds of text templates react to (think tags, special tokens,
# whitespace at the ends, Jinja syntax) among ordinary code and unicode.
PIECES = ("\n", "\n\n", " ", "  ", "\t", "\r\n", "\u3000", "\xa0", "\x0b", "x", "def f(x):\n    return x",
          "print(1)", "déjà vu", "数据", "🚀", "<think>", "</think>", "<think>\nr\n</think>\n\n", "<|im_end|>",
          "<|im_start|>user\n", "<|endoftext|>", "{{ messages }}", "{% raw %}", "{#", "'", '"', "\\n",
          "<tool_response>", "</tool_response>", "<|im_start|>assistant\n<think>\n")

UPPER_TEMPLATE = "{%- for m in messages -%}{{- m.role + ': ' + m.content | upper + '\n' -}}{%- endfor -%}"


def _tokenizer(tmp_path, template):
    tiny.save_qwen_tokenizer(tmp_path, template)
    return AutoTokenizer.from_pretrained(tmp_path)


def _conversation(tok, q, c):
    return tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": c}],
                                   tokenize=False)


def _random_pairs(n, seed):
    rng = random.Random(seed)

    def content():
        return "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 7)))

    return [(content(), content()) for _ in range(n)]


@pytest.mark.parametrize("template", [tiny.CHATML_TEMPLATE, tiny.QWEN3_STYLE_TEMPLATE])
def test_render_equals_apply_chat_template(tmp_path, humaneval, template):
    tok = _tokenizer(tmp_path, template)
    t = ChatTemplate(tok)
    assert t.fast and t.reason is None
    pairs = [(p["prompt"], (p["prompt"] + p["canonical_solution"]).strip()) for p in humaneval]
    pairs += [("\nq\n", "\n\ncode"), ("q", "<think>\nx\n</think>\n\nprint(1)"), ("", "")]
    for q, c in pairs:
        assert t.render(q, c) == _conversation(tok, q, c)


def test_tiny_template_random_pairs_render_as_the_template_does():
    tok = AutoTokenizer.from_pretrained(tiny.resolve_model("tiny"))
    t = ChatTemplate(tok)
    pairs = _random_pairs(3000, seed=0)
    for q, c in pairs:
        assert t.render(q, c) == _conversation(tok, q, c), (q, c)
    covered = sum(t.splice.covers(q, c) for q, c in pairs)
    assert 0.5 * len(pairs) < covered < len(pairs), "most pairs take the splice, those with </think> do not"


def test_tiny_template_splice_is_guarded_and_minimal():
    tok = AutoTokenizer.from_pretrained(tiny.resolve_model("tiny"))
    t = ChatTemplate(tok)
    assert t.splice == Splice("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
                              "<|im_end|>\n", code_lstrip="\n", refuse=("</think>",))
    assert 0 < t.probes <= MAX_PROBES
    # Each guard is needed: without the strip, leading newlines would stay; without the refusal, the
    # answer's think block would be spliced in verbatim. '<think>' alone is harmless.
    assert Splice(t.splice.head, t.splice.middle, t.splice.tail).join("q", "\n\nx") != _conversation(tok, "q", "\n\nx")
    unguarded = Splice(t.splice.head, t.splice.middle, t.splice.tail, code_lstrip="\n")
    assert unguarded.join("q", "a </think> b") != _conversation(tok, "q", "a </think> b")
    assert t.splice.covers("q", "a <think> b")
    assert t.render("q", "a <think> b") == _conversation(tok, "q", "a <think> b")


def test_real_qwen3_template_random_pairs_render_as_the_template_does(tmp_path):
    spec = importlib.util.find_spec("trl")
    path = spec and Path(spec.origin).parent / "chat_templates" / "qwen3.jinja"
    if not (path and path.is_file()):
        pytest.skip("the Qwen3 template ships with trl (the train extra)")
    tok = _tokenizer(tmp_path, path.read_text())
    t = ChatTemplate(tok)
    assert t.splice.code_lstrip == "\n" and set(t.splice.refuse) == {"</think>", "</tool_response>"}
    pairs = _random_pairs(1000, seed=1) + [("<tool_response>\nx\n</tool_response>", "\ny")]
    for q, c in pairs:
        assert t.render(q, c) == _conversation(tok, q, c), (q, c)


def test_template_that_rewrites_every_content_has_no_splice(tmp_path):
    tok = _tokenizer(tmp_path, UPPER_TEMPLATE)
    t = ChatTemplate(tok)
    assert not t.fast and "as given" in t.reason
    assert t.render("q", "x = 1") == "user: Q\nassistant: X = 1\n"


@pytest.mark.parametrize("marker", ["zz", "<zz>"])
def test_template_with_a_content_condition_is_refused_or_guarded(tmp_path, marker):
    tok = _tokenizer(tmp_path, "{%- for m in messages -%}{%- if '" + marker + "' in m.content -%}"
                               "{{- m.content | upper -}}{%- else -%}{{- m.role + ':' + m.content -}}{%- endif -%}"
                               "{%- endfor -%}")
    t = ChatTemplate(tok)
    if marker == "<zz>":  # a tag literal can be refused; a plain word cannot
        assert t.splice.refuse == ("<zz>",)
    else:
        assert t.splice is None and "rewrites the contents" in t.reason and "zz" in t.reason
    for q, c in _random_pairs(300, seed=2) + [("a zz b", "x"), ("q", "<zz>"), ("<zz", "zz>")]:
        assert t.render(q, c) == _conversation(tok, q, c)


def test_recorded_splice_refuses_the_pairs_it_does_not_cover():
    tok = AutoTokenizer.from_pretrained(tiny.resolve_model("tiny"))
    splice = ChatTemplate(tok).splice
    recorded = ChatTemplate(None, splice=Splice(**{**splice.__dict__, "refuse": list(splice.refuse)}))
    assert recorded.splice == splice and recorded.fast
    assert recorded.render("q", "\n\nx = 1") == _conversation(tok, "q", "\n\nx = 1")
    with pytest.raises(TemplateError, match="'</think>'"):
        recorded.render("q", "<think>\nr\n</think>\n\nx = 1")
    with pytest.raises(TemplateError, match="'</think>'"):
        recorded.render_reference("why </think>?", "x")


def test_missing_template_is_a_typed_error(tmp_path):
    tok = _tokenizer(tmp_path, None)
    with pytest.raises(TemplateError, match="no chat_template"):
        ChatTemplate(tok, source=str(tmp_path))
