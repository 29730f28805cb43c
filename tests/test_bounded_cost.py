"""Cost bounded by what the model reads: code over MAX_CODE_BYTES is status code_too_long on every path and
never parsed, and a long conversation is tokenized only as far as max_length uses, with exactly the ids of
tokenizing it whole (the reference here is the tokenizer called on the whole text, as upstream does)."""

import importlib
import json
import random
import re

import pytest
from transformers import AutoTokenizer

import codescaler.encode as encode_mod
from codescaler import RewardModel, _native, tiny
from codescaler.encode import Encoder, RustTokenizer, _cut_at, _cut_safe
from codescaler.extract import MAX_CODE_BYTES, STATUSES, extract_batch, extract_spec
from codescaler.template import ChatTemplate


def fenced(code: str, tag: str = "python") -> str:
    return f"```{tag}\n{code}\n```"


# --- the code size limit --------------------------------------------------------------------------------------

def test_the_limit_is_one_number_everywhere():
    assert MAX_CODE_BYTES == _native.MAX_CODE_BYTES == 262_144 and "code_too_long" in STATUSES


@pytest.mark.parametrize("policy", ["codescaler", "last", "best"])
def test_limit_is_in_utf8_bytes_of_the_stripped_code(policy):
    # "é" is 2 bytes: the limit counts bytes, not characters, and the fence's newlines and blanks are not code.
    at = "x = '" + "é" * ((MAX_CODE_BYTES - 6) // 2) + "'"
    assert len(at.encode()) == MAX_CODE_BYTES
    over = at[:-1] + "é'"
    got = extract_batch([fenced("\n  " + at + "  \n"), fenced(over)], policy)
    assert [g.status for g in got] == ["ok", "code_too_long"]
    assert got[0].code == at and got[1].code == ""
    assert got[1].error == (f"the code is {MAX_CODE_BYTES + 2:,} UTF-8 bytes, over the limit of 262,144 "
                            "(MAX_CODE_BYTES): not parsed")
    if policy == "codescaler":  # the spec draws the same line
        assert [extract_spec(fenced(at)).status, extract_spec(fenced(over)).status] == ["ok", "code_too_long"]


@pytest.mark.parametrize("language", ["python", "rust", "cpp"])
def test_over_the_limit_is_neither_valid_nor_invalid(language):
    """A block over the limit is code_too_long whether it would parse or not, in every language."""
    fine = {"python": "x = 1\n", "rust": "fn f() {}\n", "cpp": "int x = 1;\n"}[language]
    n = MAX_CODE_BYTES // len(fine) + 1
    for code in (fine * n, fine * n + "(((\n"):
        assert extract_batch([fenced(code, language)], "last", language)[0].status == "code_too_long"


def test_best_passes_over_a_block_over_the_limit():
    small = "def f():\n    return 1"
    response = fenced("x = 1\n" * (MAX_CODE_BYTES // 6 + 1)) + "\n" + fenced(small)
    got = extract_batch([response], "best")[0]
    assert (got.status, got.code) == ("ok", small)
    alone = extract_batch([fenced("x = 1\n" * (MAX_CODE_BYTES // 6 + 1))], "best")[0]
    assert alone.status == "code_too_long"


def test_code_over_the_limit_is_never_parsed(monkeypatch):
    ex = importlib.import_module("codescaler.extract")  # the package's `extract` is the function
    parsed = []
    real = ex._python_verdict
    monkeypatch.setattr(ex, "_python_verdict", lambda code: parsed.append(len(code)) or real(code))
    got = extract_batch([fenced("x = 1\n" * 2_000_000), fenced("y = 2")])
    assert [g.status for g in got] == ["code_too_long", "ok"] and parsed == [5]


# --- tokenizing only what max_length uses -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    tiny.save_qwen_tokenizer(d, tiny.CHATML_TEMPLATE)
    return d


@pytest.fixture(scope="module")
def hf(qwen):
    return AutoTokenizer.from_pretrained(qwen)


PIECES = ["hello", "world", "x", "don't", "it's", "THEY'LL", "1234567", "3.14", "é", "e\u0301", "ñandú", "日本語",
          "😀", "👩‍👩‍👧", "<|im_end|>", "<|im_start|>", "<think>", "</think>", "<|endoftext|>", " ", "  ", "    ", "\t",
          "\n", "\r\n", "\r", "\n\n", "  \n", " \n ", "(", ")", ".", ",", "::", "->", "'", '"', "#", "\\", "_", "a_b",
          "ab12cd", "\u00a0", "\u3000", "ﬁ", "Å", "A\u030a", "\u0301", "x" * 40, " " * 30, "<|im_", "end|>", "def f(x):",
          "    return x", "\x0b", "\x1c", "\u2028", "\ud7ff", "\U0001f600\u0301"]


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(PIECES) + rng.choice(["", "", " ", "\n"]) for _ in range(n))


def test_a_cut_keeps_the_whole_texts_first_tokens(hf):
    """The property everything rests on: at every position _cut_at picks, the text's prefix tokenizes to the
    first tokens of the whole text (checked at ~7,000 cuts; a looser rule, such as cutting after any
    punctuation or before a digit, fails here thousands of times)."""
    tok, added = hf.backend_tokenizer, _cut_safe(hf)
    assert added and "<|im_end|>" in added  # the Qwen tokenizer takes the bounded path
    rng = random.Random(1)
    checked = 0
    for _ in range(100):
        text = random_text(rng, rng.choice([20, 100, 400]))
        whole = tok.encode(text, add_special_tokens=False).ids
        at = 1
        while (j := _cut_at(text, at, added)) < len(text):
            part = tok.encode(text[:j], add_special_tokens=False).ids
            assert whole[:len(part)] == part, (text[:j][-40:], text[j:j + 40])
            checked += 1
            at = j + rng.randint(1, 7)
    assert checked > 4_000


@pytest.mark.parametrize("cut", [r"(?<=.)(?=.)", r"(?<=[!-/:-@\[-`{-~])(?=[ -~])", r"(?<=\n)(?=[ -~])"])
def test_the_cut_property_check_can_fail(hf, cut, monkeypatch):
    """The check above notices a rule that cuts where tokens can change."""
    monkeypatch.setattr(encode_mod, "_CUT", re.compile(cut, re.S))
    tok, added = hf.backend_tokenizer, _cut_safe(hf)
    rng, bad = random.Random(1), 0
    for _ in range(40):
        text = random_text(rng, 200)
        whole = tok.encode(text, add_special_tokens=False).ids
        for j in {_cut_at(text, a, added) for a in range(1, len(text), 5)} - {len(text)}:
            part = tok.encode(text[:j], add_special_tokens=False).ids
            bad += whole[:len(part)] != part
    assert bad > 0


def whole_text_reference(tokenizer, text: str, max_length: int) -> tuple[list[int], bool]:
    """Today's rule: tokenize the whole text; when over max_length, again with the tokenizer's truncation."""
    ids = list(tokenizer(text)["input_ids"])
    if len(ids) <= max_length:
        return ids, False
    return list(tokenizer(text, truncation=True, max_length=max_length)["input_ids"]), True


def encoder(tokenizer, max_length: int, window: int | None = None, template=None) -> Encoder:
    e = Encoder(tokenizer, template or ChatTemplate(tokenizer), max_length)
    if window is not None:
        e._window = window  # tiny windows put cuts everywhere, inside words, characters and added tokens
    return e


@pytest.mark.parametrize("which", ["hf", "rust"])
def test_truncated_ids_equal_whole_text_tokenization(hf, qwen, which):
    tok = hf if which == "hf" else RustTokenizer(qwen / "tokenizer.json", hf.pad_token_id)
    rng = random.Random(7 if which == "hf" else 8)
    texts = [random_text(rng, rng.choice([1, 5, 60, 400, 1500])) for _ in range(60)]
    texts += ["", "x", "a" * 5000, " " * 5000, "\r\n" * 3000, "日本語" * 2000, "😀" * 2000, "<|im_end|>" * 500,
              "e\u0301" * 3000, "1" * 5000, ("word " * 9 + "\n") * 400, "x" * 100 + "<|im_end|>" + "y" * 100]
    template = ChatTemplate(hf)
    for max_length in (1, 7, 31, 256):
        for window in (1, 17, None):
            e = encoder(tok, max_length, window, template)
            got, over = e._truncated(texts)
            for t, g, o in zip(texts, got, over):
                assert (g, o) == whole_text_reference(tok, t, max_length), (max_length, window, t[:60])


def test_the_cut_falls_inside_a_word_a_character_and_an_added_token(hf):
    """Windows that end inside a 300-letter word, between the two code points of an emoji with a combining
    accent, inside a CRLF pair and inside "<|im_end|>": the cut moves to a safe place and the ids are
    exactly those of the whole text."""
    cases = ["x" * 300 + " tail" * 50, "😀\u0301" * 300 + " tail" * 50, "a\r\n" * 300 + "tail",
             "<|im_end|>" * 60 + " tail" * 50, "ab<|im_end|>cd" * 60 + " tail" * 50]
    encoders = [encoder(hf, max_length) for max_length in (3, 20, 100)]
    for text in cases:
        for e in encoders:
            want = whole_text_reference(hf, text, e.max_length)
            for e._window in range(1, 40, 2):
                got, over = e._truncated([text])
                assert (got[0], over[0]) == want, (text[:20], e._window)


def test_encode_split_equals_whole_text_tokenization(hf, humaneval):
    """Ids, truncation flags and boundaries of real conversations, long ones included, are those of
    tokenizing every rendered text and question prefix whole."""
    rng = random.Random(3)
    qs = [p["prompt"] * rng.choice([1, 3, 40]) for p in humaneval[:30]]
    codes = [(p["prompt"] + p["canonical_solution"]) * rng.choice([1, 50]) for p in humaneval[:30]]
    seen = []
    for max_length in (64, 512, 4096):
        e = encoder(hf, max_length)
        ids, over, bounds = e.encode_split(qs, codes)
        texts = [e.template.render(q, c) for q, c in zip(qs, codes)]
        for t, i, o in zip(texts, ids, over):
            assert (i, o) == whole_text_reference(hf, t, max_length)
        assert bounds == whole_text_boundaries(e, qs, texts, ids)
        seen += zip(over, bounds)
    assert {o for o, _ in seen} == {True, False} and {b > 0 for _, b in seen} == {True, False}


def whole_text_boundaries(e: Encoder, qs, texts, ids) -> list[int]:
    """Encoder.boundaries' rule with every question prefix tokenized whole."""
    splice = e.template.splice
    out = []
    for q, text, full in zip(qs, texts, ids):
        p = next((splice.head + q + splice.middle[:c] for c in e._cuts
                  if text.startswith(splice.head + q + splice.middle[:c])), None)
        head = list(e.tokenizer(p)["input_ids"]) if p is not None else None
        head = head[:len(head) - e._special_tail] if head else head
        out.append(len(head) if head and full[:len(head)] == head else 0)
    return out


class Counting:
    """A tokenizer that records the length of every text it is given."""

    def __init__(self, tok):
        self.tok, self.seen = tok, []
        self.backend_tokenizer = tok.backend_tokenizer
        self.added_tokens_decoder = tok.added_tokens_decoder
        self.pad_token_id = tok.pad_token_id

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def __call__(self, texts, **kw):
        self.seen += [len(t) for t in ([texts] if isinstance(texts, str) else texts)]
        return self.tok(texts, **kw)


def test_a_long_question_is_tokenized_once_and_only_as_far_as_needed(hf):
    """A 1 MB question with eight one-token answers: the encoder reads a few tens of kB of it, once (the
    eight conversations share the cut prefix), and gets the ids of the whole texts."""
    question = ("Explain the following program in detail, line by line.\n" * 19_000)[:1_000_000]
    answers = [str(i) for i in range(8)]
    counting = Counting(hf)
    e = Encoder(counting, ChatTemplate(hf), 4096)
    counting.seen.clear()
    ids, over, bounds = e.encode_split([question] * 8, answers)
    assert max(counting.seen) < 50_000 and sum(counting.seen) < 200_000, counting.seen
    text = e.template.render(question, "0")
    want, _ = whole_text_reference(hf, text, 4096)
    assert ids == [want] * 8 and over == [True] * 8 and bounds == [0] * 8


def test_other_tokenizers_are_tokenized_whole(hf, qwen, tmp_path):
    """A tokenizer whose split is not the one the cut rule is derived for takes no shortcut."""
    spec = json.loads((qwen / "tokenizer.json").read_text(encoding="utf-8"))
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    other = RustTokenizer(tmp_path / "tokenizer.json", hf.pad_token_id)
    assert _cut_safe(other) is None and _cut_safe(hf) is not None
    text = "hello world " * 2000
    got, over = encoder(other, 16, 3, ChatTemplate(hf))._truncated([text])
    assert (got[0], over[0]) == whole_text_reference(other, text, 16)


def test_rewards_of_code_over_the_limit(qwen3_dir):
    """In RewardModel.score (the server and Ray call it), code over the limit gets reward 0.0, no raw score
    and status code_too_long; the other items of the call are scored as alone."""
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    big, ok = fenced("x = 1\n" * (MAX_CODE_BYTES // 6 + 1)), fenced("def f():\n    return 1")
    got = m.score(["q", "q"], [big, ok])
    assert [(r.status, r.reward, r.raw_score, r.code) for r in got[:1]] == [("code_too_long", 0.0, None, "")]
    assert got[1] == m.score(["q"], [ok])[0]
