"""The question cache: keys/values of question prefixes kept across calls. A later answer to a cached
question runs only its own tokens and gets the same bits as with no cache, at bfloat16 and float32; the
cache stays under its byte bound (least recently used evicted) and reports itself in /metrics."""

from __future__ import annotations

import pytest

from codescaler import RewardModel
from conftest import fenced


def _step(humaneval, questions=4, group=5):
    qs, rs = [], []
    for g in range(questions):
        q = humaneval[g * 7]["prompt"]
        for k in range(group):
            p = humaneval[(g * 13 + k * 5) % len(humaneval)]
            qs.append(q)
            rs.append(fenced((p["prompt"] + p["canonical_solution"]).strip()) if k != 3 else "no code")
    return qs, rs


def _bits(rewards):
    return [(r.reward, r.raw_score, r.status) for r in rewards]


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_cache_hits_give_the_bits_of_misses(qwen3_dir, humaneval, dtype):
    qs, rs = _step(humaneval)
    # The reward cache would answer the repeated pairs before the question cache is asked.
    cached = RewardModel.from_pretrained(qwen3_dir, dtype=dtype, reward_cache="off")
    plain = RewardModel.from_pretrained(qwen3_dir, dtype=dtype, prefix_cache_mb=0)
    assert plain.prefix_cache is None and cached.prefix_cache is not None
    want = [plain.score([q], [r])[0] for q, r in zip(qs, rs)]
    first = cached.score(qs, rs)  # fills the cache: one prefix per question
    cache = cached.prefix_cache
    hits = cache.hits
    # Per-sample arrival: every answer alone, its question now cached.
    again = [cached.score([q], [r])[0] for q, r in zip(qs, rs)]
    assert _bits(first) == _bits(again) == _bits(want)
    assert cache.hits - hits == sum(r.raw_score is not None for r in want)  # every scored answer hit
    # A hit runs only the answer's tokens: the prefix's are counted as saved.
    saved = cache.saved_tokens
    _, _, bounds = cached.encoder.encode_split(qs[:1], [first[0].code])
    cached.score(qs[:1], rs[:1])
    assert cache.saved_tokens - saved == bounds[0] > 0
    assert len(cache) >= 4 and cache.bytes <= cache.max_bytes


def test_eviction_keeps_the_byte_bound_and_the_bits(qwen3_dir, humaneval):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", prefix_cache_mb=1)
    plain = RewardModel.from_pretrained(qwen3_dir, dtype="float32", prefix_cache_mb=0)
    qs = [p["prompt"] * 3 for p in humaneval[:40]]  # a few hundred tokens each: 1 MB holds only some
    rs = [fenced("x = 1")] * len(qs)
    got = [m.score([q], [r])[0] for q, r in zip(qs, rs)]
    cache = m.prefix_cache
    assert cache.evictions > 0 and 0 < cache.bytes <= cache.max_bytes == 1 << 20
    again = m.score(qs, rs)
    assert _bits(got) == _bits(again) == _bits(plain.score(qs, rs))


def test_cache_option_is_checked_and_shown_in_metrics(qwen3_dir):
    from fastapi.testclient import TestClient

    from codescaler import InputError
    from codescaler.serve.app import create_app

    with pytest.raises(InputError, match="prefix_cache_mb must be an integer >= 0"):
        RewardModel.from_pretrained(qwen3_dir, prefix_cache_mb=-1)
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", prefix_cache_mb=64, reward_cache="off")
    with TestClient(create_app(m)) as client:
        scheduler = client.app.state.scheduler
        assert scheduler.loaded.wait(300) and scheduler.error is None, scheduler.error
        body = {"groups": [{"question": "Add two numbers.\n", "responses": [fenced("x = 1"), fenced("y = 2")]}]}
        assert client.post("/v1/rewards", json=body).status_code == 200
        assert client.post("/v1/rewards", json=body).status_code == 200
        text = client.get("/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("codescaler_prefix_cache")}
    assert values["codescaler_prefix_cache_max_bytes"] == 64 << 20
    assert values["codescaler_prefix_cache_hits_total"] >= 1 and values["codescaler_prefix_cache_entries"] >= 1
