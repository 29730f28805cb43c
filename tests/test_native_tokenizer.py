"""The C++ tokenizer (codescaler::Tokenizer) against Hugging Face `tokenizers`, token for token.

The reference is `tokenizers.Tokenizer.from_file` on the same tokenizer.json: the real Qwen vocabulary
built offline (tiny.qwen_tokenizer_json) and the tiny demo model's, plus variants of it that switch on the
other features the C++ side claims (GPT-2 and cl100k regexes, TemplateProcessing, lstrip/rstrip and
normalized added tokens, legacy merges). Every string of a category goes through one batched call on each
side.
"""

from __future__ import annotations

import copy
import json
import random
import unicodedata
from collections import Counter

import pytest

from codescaler import _native_testing, tiny

# The extraction corpora, as the extractor's parity test generates them (imported fixtures).
from test_extract_corpus import awkward_response, humaneval_responses  # noqa: F401
from test_extract_corpus import corpus as extraction_corpus  # noqa: F401

tokenizers = pytest.importorskip("tokenizers")

SPECIALS = list(tiny.QWEN3_SPECIAL_TOKENS)
WHITE_SPACE = [chr(c) for c in range(0x110000) if chr(c).isspace()]  # \x1c-\x1f are not White_Space
ODD_SPACE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e", "\x00", "\x7f"]
SCRIPTS = {  # ranges sampled for "random Unicode across scripts"
    "latin": (0x41, 0x24F), "greek": (0x370, 0x3FF), "cyrillic": (0x400, 0x52F), "armenian": (0x531, 0x58A),
    "hebrew": (0x591, 0x5F4), "arabic": (0x600, 0x6FF), "devanagari": (0x900, 0x97F), "bengali": (0x980, 0x9FE),
    "tamil": (0xB82, 0xBFA), "thai": (0xE01, 0xE5B), "tibetan": (0xF00, 0xFDA), "georgian": (0x10A0, 0x10FF),
    "hangul jamo": (0x1100, 0x11FF), "ethiopic": (0x1200, 0x139F), "hiragana/katakana": (0x3041, 0x30FF),
    "cjk": (0x4E00, 0x9FFF), "hangul": (0xAC00, 0xD7A3), "cjk compatibility": (0xF900, 0xFAD9),
    "fullwidth": (0xFF01, 0xFFEE), "math": (0x2200, 0x22FF), "letterlike/number forms": (0x2100, 0x218B),
    "superscripts": (0x2070, 0x209C), "enclosed": (0x2460, 0x24FF), "math alphanumerics": (0x1D400, 0x1D7FF),
    "cjk ext b": (0x20000, 0x2A6DF), "private use": (0xE000, 0xE0FF), "specials": (0xFFF9, 0xFFFD),
}
COMBINING = [(0x300, 0x36F), (0x483, 0x489), (0x591, 0x5BD), (0x610, 0x61A), (0x93C, 0x94D), (0x1AB0, 0x1ACE),
             (0x1DC0, 0x1DFF), (0x20D0, 0x20F0), (0xFE20, 0xFE2F), (0x3099, 0x309A)]
# Bases NFC cares about: precomposed letters, decomposable singletons, composition exclusions, Hangul.
NFC_BASES = ["e", "A", "o", "u", "ü", "é", "Å", "\u212b", "\u2126", "\u0958", "\u0344", "\u1e9b", "\uf900",
             "\u1100", "\u1161", "\u11a8", "\uac00", "\u0dd9", "\u0dcf", "\u0b47", "\u0b3e", "ſ", "ǅ", "ﬁ"]
EMOJI = ["🙂", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "1️⃣", "#️⃣", "❤️", "☺︎", "🧑🏿‍💻", "🫠",
         "😀", "🐍", "🦀", "✅", "❌", "⚠️", "🔥", "💯", "🤖", "👩‍🔬", "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1"]
PUNCT = list(".,;:!?'\"`~@#$%^&*()[]{}<>/\\|-_+=") + ["...", "''", "'s", "'S", "'ll", "'LL", "'ſ", "'re", "'Ve",
                                                     "'d", "'M", "'t", "’s", "«", "»", "—", "…", "¿", "¡"]
WORDS = ["def", "return", "x", "print", "hello", "world", "café", "naïve", "Straße", "ǅemal", "日本語", "中文",
         "한국어", "Привет", "مرحبا", "שלום", "नमस्ते", "ไทย", "123", "3.14", "1e10", "0x1F", "١٢٣", "²", "Ⅷ", "½"]


def rng_text(rng: random.Random, pieces: list[str], n: int) -> str:
    return "".join(rng.choice(pieces) for _ in range(n))


def random_scripts(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 40)):
        r = rng.random()
        if r < 0.6:
            lo, hi = SCRIPTS[rng.choice(list(SCRIPTS))]
            cp = rng.randint(lo, hi)
            if unicodedata.category(chr(cp)) == "Cn":  # unassigned in this Python's Unicode: see the sweep
                continue
            out.append(chr(cp) * rng.choice([1, 1, 1, 2, 5]))
        elif r < 0.75:
            out.append(rng.choice(WHITE_SPACE[:6] + [" "] * 6))
        elif r < 0.9:
            out.append(rng.choice(PUNCT))
        else:
            out.append(rng.choice(WORDS))
    return "".join(out)


def random_combining(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 12)):
        out.append(rng.choice(NFC_BASES + WORDS[:8] + [" ", "\n", "'"]))
        for _ in range(rng.choice([0, 1, 1, 2, 3, 6])):
            lo, hi = rng.choice(COMBINING)
            cp = rng.randint(lo, hi)
            if unicodedata.category(chr(cp)) != "Cn":
                out.append(chr(cp))
    return unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKD"]), "".join(out)) if rng.random() < 0.3 \
        else "".join(out)


def random_emoji(rng: random.Random) -> str:
    return rng_text(rng, EMOJI * 3 + WORDS[:10] + [" ", "\n", "\u200d", "\ufe0f", "\U0001f3fb"], rng.randint(1, 20))


def random_whitespace(rng: random.Random) -> str:
    pieces = WHITE_SPACE + ODD_SPACE + ["\x1c", "\x1d", "\x1e", "\x1f"]
    out = []
    for _ in range(rng.randint(1, 10)):
        if rng.random() < 0.5:
            out.append(rng_text(rng, pieces + [" ", " ", "\n", "\t"], rng.randint(1, 12)))
        else:
            out.append(rng.choice(WORDS + PUNCT))
    return "".join(out)


def random_crlf(rng: random.Random, programs: list[str]) -> str:
    program = rng.choice(programs)
    ending = rng.choice(["\r\n", "\r", "\n\r", "\r\r\n", " \r\n", "\t\r\n"])
    text = program.replace("\n", ending)
    if rng.random() < 0.5:
        cut = rng.randint(0, len(text))
        text = text[:cut] + rng_text(rng, ["\r", "\n", " ", "\t", "!", "x"], 4) + text[cut:]
    return text


def random_specials(rng: random.Random, programs: list[str]) -> str:
    partial = [s[:k] for s in SPECIALS for k in (2, len(s) - 1)] + ["<|", "|>", "<think", "</think", "<|im_end"]
    out = []
    for _ in range(rng.randint(1, 10)):
        r = rng.random()
        if r < 0.35:
            out.append(rng.choice(SPECIALS))
        elif r < 0.5:
            out.append(rng.choice(partial))
        elif r < 0.65:
            out.append(rng.choice(["\n", " ", "  ", "\n\n", "\r\n", "\t"]))
        elif r < 0.8:
            program = rng.choice(programs)
            a = rng.randint(0, len(program))
            out.append(program[a:a + rng.randint(0, 200)])
        else:
            out.append(rng.choice(WORDS + PUNCT + EMOJI))
    return "".join(out)


@pytest.fixture(scope="module")
def qwen_json():
    return tiny.qwen_tokenizer_json()


@pytest.fixture(scope="module")
def corpora(humaneval, extraction_corpus, humaneval_responses) -> dict[str, list[str]]:
    """Category -> strings; at least 50,000 in all."""
    rng = random.Random(20260522)
    programs = [p["prompt"] + p["canonical_solution"] for p in humaneval]
    humaneval_text = []
    for p in humaneval:
        humaneval_text += [p["prompt"], p["canonical_solution"], p["test"], p["prompt"] + p["canonical_solution"],
                           p["entry_point"], p["task_id"]]
        humaneval_text += [line for line in (p["prompt"] + p["canonical_solution"] + p["test"]).splitlines(True)]
    rng_extra = random.Random(3)
    return {
        "humaneval text and code": humaneval_text,
        "extraction corpus responses": extraction_corpus + humaneval_responses,
        "more awkward responses": [awkward_response(rng_extra) for _ in range(4_000)],
        "random unicode across scripts": [random_scripts(rng) for _ in range(10_000)],
        "emoji": [random_emoji(rng) for _ in range(3_000)],
        "combining marks and NFC": [random_combining(rng) for _ in range(6_000)],
        "whitespace runs": [random_whitespace(rng) for _ in range(5_000)],
        "CRLF": [random_crlf(rng, programs) for _ in range(3_000)],
        "special-token strings": [random_specials(rng, programs) for _ in range(6_000)],
        "edge cases": ["", " ", "\n", "\r\n", "'", "'s", "ſ", "\u0301", "\u0301a", "a" * 5000, " " * 5000,
                       "\n" * 3000 + "x", "1" * 4000, "é" * 3000, "<|im_start|>" * 100, "<|im_start|" * 100,
                       "".join(SPECIALS), " ".join(SPECIALS)],
    }


def hf_ids(hf, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
    return [e.ids for e in hf.encode_batch_fast(texts, add_special_tokens=add_special_tokens)]


def has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def refused_by_both(native, hf, text: str) -> bool:
    """Strings holding lone surrogates are not UTF-8: both sides must refuse them."""
    with pytest.raises(ValueError, match="invalid UTF-8"):
        native.encode(text)
    with pytest.raises(Exception):
        hf.encode(text)
    return True


def mismatches(native, hf, texts, add_special_tokens=True) -> list[tuple[str, list[int], list[int]]]:
    ours = native.encode_batch(texts, add_special_tokens=add_special_tokens, threads=2)
    theirs = hf_ids(hf, texts, add_special_tokens)
    return [(t, a, b) for t, a, b in zip(texts, ours, theirs) if a != b]


@pytest.mark.parametrize("source", ["qwen vocabulary", "tiny model"])
def test_equals_hugging_face_on_50k_strings(source, qwen_json, corpora, record_property):
    path = qwen_json if source == "qwen vocabulary" else tiny.tiny_model_dir() / "tokenizer.json"
    native = _native_testing.Tokenizer.open(str(path))
    hf = tokenizers.Tokenizer.from_file(str(path))
    counts, bad = Counter(), {}
    for category, texts in corpora.items():
        refused = [t for t in texts if has_surrogates(t)]
        texts = [t for t in texts if not has_surrogates(t)]
        counts[category] = len(texts)
        if refused:
            counts[f"{category}, lone surrogates (refused by both)"] = sum(refused_by_both(native, hf, t) for t in refused)
        wrong = mismatches(native, hf, texts)
        if wrong:
            bad[category] = wrong[:3]
    record_property("parity_counts", dict(counts))
    assert sum(n for k, n in counts.items() if "refused" not in k) >= 50_000
    assert not bad, {k: [(t[:80], a[:20], b[:20]) for t, a, b in v] for k, v in bad.items()}


def sweep_line(c: int) -> str:
    """A code point after a letter, before a digit, after a space and doubled; code points NFC may touch also
    after an apostrophe and between combining marks of classes 240 and 220 (NFC reorders and composes)."""
    ch = chr(c)
    line = f"x{ch}1 {ch}{ch}\n"
    if unicodedata.combining(ch) or unicodedata.decomposition(ch):
        line += f"'{ch}a\u0345{ch}\u0316{ch}\n"
    return line


def test_code_points_against_hugging_face(qwen_json, record_property):
    """Every code point of planes 0, 1 and 14, every 7th of planes 2-3, every 251st beyond. Code points this
    build's Unicode tables (the building Python's) do not know may differ; any other difference fails."""
    native = _native_testing.Tokenizer.open(str(qwen_json))
    hf = tokenizers.Tokenizer.from_file(str(qwen_json))
    cps = [c for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF] + list(range(0x20000, 0x40000, 7))
    cps += list(range(0xE0000, 0xE0200)) + list(range(0x40000, 0x110000, 251))
    chunks = [cps[i:i + 256] for i in range(0, len(cps), 256)]
    texts = ["".join(sweep_line(c) for c in chunk) for chunk in chunks]
    differing = []
    for chunk, a, b in zip(chunks, native.encode_batch(texts, threads=2), hf_ids(hf, texts)):
        if a != b:
            lines = [sweep_line(c) for c in chunk]
            differing += [c for c, x, y in zip(chunk, native.encode_batch(lines), hf_ids(hf, lines)) if x != y]
    unknown_here = [c for c in differing if unicodedata.category(chr(c)) == "Cn"]
    record_property("code_points_checked", len(cps))
    record_property("code_points_newer_than_tables", [hex(c) for c in unknown_here])
    assert [hex(c) for c in differing if c not in unknown_here] == []
    assert len(unknown_here) < 100


@pytest.fixture(scope="module")
def qwen_spec(qwen_json) -> dict:
    return json.loads(qwen_json.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def small_spec(qwen_spec) -> dict:
    """Qwen's tokenizer.json cut down to its 256 single-byte tokens and no merges: quick to open."""
    small = {k: v for k, v in qwen_spec.items() if k != "model"}
    small["model"] = {**qwen_spec["model"], "merges": [],
                      "vocab": {t: i for t, i in qwen_spec["model"]["vocab"].items() if len(t) == 1}}
    return small


def variant(qwen_spec, tmp_path, name, change) -> str:
    spec = copy.deepcopy(qwen_spec)
    change(spec)
    out = tmp_path / f"{name}.json"
    out.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return str(out)


def _gpt2(spec):
    spec["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    spec["normalizer"] = None


def _cl100k(spec):
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = spec["pre_tokenizer"]["pretokenizers"][0][
        "pattern"]["Regex"].replace(r"\p{N}|", r"\p{N}{1,3}|")


def _template(spec):
    spec["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<|im_end|>", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {t: {"id": t, "ids": [151644 + i], "tokens": [t]}
                            for i, t in enumerate(["<|im_start|>", "<|im_end|>"])}}]}


def _added(spec):
    tokens = spec["added_tokens"]
    for t in tokens:
        if t["content"] in ("<|im_start|>", "<think>"):
            t["lstrip"] = True
        if t["content"] in ("<|im_end|>", "</think>"):
            t["rstrip"] = True
        if t["content"] == "<|endoftext|>":
            t["normalized"] = True
    # Non-special added tokens, matched after NFC (one of them only matches once normalized).
    tokens += [{"id": 151669, "content": "café", "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": True, "special": False},
               {"id": 151670, "content": "<tool>", "single_word": False, "lstrip": True, "rstrip": True,
                "normalized": False, "special": False},
               {"id": 151671, "content": "def ", "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": True, "special": False}]


def _legacy(spec):
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    spec["model"]["ignore_merges"] = False
    spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}]}


VARIANTS = {"gpt2 byte-level regex, no normalizer": _gpt2, "cl100k regex": _cl100k,
            "TemplateProcessing": _template, "lstrip/rstrip/normalized added tokens": _added,
            "legacy merges, ignore_merges false": _legacy}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_equal_hugging_face(name, qwen_spec, corpora, tmp_path):
    path = variant(qwen_spec, tmp_path, "variant", VARIANTS[name])
    native = _native_testing.Tokenizer.open(path)
    hf = tokenizers.Tokenizer.from_file(path)
    rng = random.Random(5)
    texts = [t for texts in corpora.values() for t in rng.sample(texts, min(len(texts), 300)) if not has_surrogates(t)]
    texts += ["café and cafe\u0301 <tool> x <tool>y  <|im_start|>  a  <|im_end|>  b", "def f(): pass", "  <think>  "]
    for add in (True, False) if name == "TemplateProcessing" else (True,):
        wrong = mismatches(native, hf, texts, add_special_tokens=add)
        assert not wrong, [(t[:80], a[:20], b[:20]) for t, a, b in wrong[:3]]


UNSUPPORTED = {
    "model": (lambda s: s["model"].update(type="WordPiece"), "model type 'WordPiece'"),
    "normalizer": (lambda s: s.update(normalizer={"type": "NFKC"}), "normalizer type 'NFKC'"),
    "pre_tokenizer": (lambda s: s.update(pre_tokenizer={"type": "Metaspace"}), "pre_tokenizer type 'Metaspace'"),
    "regex": (lambda s: s["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+|\s+"),
              r"Regex '\w+|\s+' is not supported"),
    "no byte level": (lambda s: s["pre_tokenizer"]["pretokenizers"].pop(), "has no ByteLevel step"),
    "dropout": (lambda s: s["model"].update(dropout=0.1), "model.dropout"),
    "truncation": (lambda s: s.update(truncation={"max_length": 8}), "truncation is set"),
    "single_word": (lambda s: s["added_tokens"][0].update(single_word=True), "single_word"),
    "post_processor": (lambda s: s.update(post_processor={"type": "BertProcessing"}), "'BertProcessing'"),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_tokenizer_is_refused_at_open(name, small_spec, tmp_path):
    _native_testing.Tokenizer.open(variant(small_spec, tmp_path, "unchanged", lambda spec: None))
    change, message = UNSUPPORTED[name]
    path = variant(small_spec, tmp_path, name.replace(" ", "_"), change)
    with pytest.raises(ValueError, match=message.replace("\\", "\\\\").replace("|", r"\|").replace("+", r"\+")):
        _native_testing.Tokenizer.open(path)


def test_damaged_files_are_refused_with_a_message(tmp_path):
    with pytest.raises(ValueError, match="cannot open"):
        _native_testing.Tokenizer.open(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1, column \d+"):
        _native_testing.Tokenizer.open(str(bad))
    bad.write_text('{"pre_tokenizer": {"type": "ByteLevel", "use_regex": true, "add_prefix_space": false}, '
                   '"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}}', encoding="utf-8")
    with pytest.raises(ValueError, match="vocab\\['a'\\] must be a number"):
        _native_testing.Tokenizer.open(str(bad))


def test_bad_input_is_a_status_not_a_crash(qwen_json):
    native = _native_testing.Tokenizer.open(str(qwen_json))
    hf = tokenizers.Tokenizer.from_file(str(qwen_json))
    assert native.encode("") == [] and native.encode_batch([]) == []
    with pytest.raises(ValueError, match="invalid UTF-8 at byte 1"):
        native.encode("a\ud800b")  # a lone surrogate: a valid str, not valid UTF-8 (HF refuses it too)
    with pytest.raises(ValueError, match="text 1: invalid UTF-8"):
        native.encode_batch(["ok", "\udfff"])
    # 10 MB of a period whose pre-tokens never cross its end (it ends in a newline run before "def"), so
    # Hugging Face's ids for one period, repeated, are the ids of the whole.
    period = "def f(x):\n    return x  # " + "é" * 20 + " <|im_end|>\n" + " " * 300 + "\n"
    ten_mb = period * 28_000
    assert len(ten_mb.encode()) > 10_000_000
    assert native.encode(ten_mb) == hf.encode(period).ids * 28_000
    runs = "x" * 300_000 + " " * 300_000 + "\n" * 300_000 + "7" * 30_000  # long single pre-tokens
    assert native.encode(runs) == hf.encode(runs).ids


def test_special_ids_and_vocab(qwen_json):
    native = _native_testing.Tokenizer.open(str(qwen_json))
    ids = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<think>": 151667,
           "</think>": 151668}
    assert {t: native.token_to_id(t) for t in ids} == ids
    assert native.token_to_id("Ġworld") == tokenizers.Tokenizer.from_file(str(qwen_json)).token_to_id("Ġworld")
    assert native.token_to_id("no such token") is None
    assert native.vocab_size == 151669
    assert _native_testing.Tokenizer.unicode_version == unicodedata.unidata_version
