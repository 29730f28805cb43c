"""The exact reward cache: a sequence scored once is not run again, in this process or, through a real
Redis, in another one. Rewards with the cache equal rewards without it bit for bit (bf16 and fp32); any
change to the model or to what the model sees misses; the in-process bound evicts; two servers share
one Redis; a Redis killed mid-run costs speed, never a reward."""

from __future__ import annotations

import logging
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from codescaler import InputError, RewardModel
from codescaler.cli import main
from conftest import fenced, write_jsonl


def _bits(rewards):
    """Every field of each reward, floats as their float64 bytes (so -0.0 and NaN compare exactly)."""
    f = lambda x: None if x is None else struct.pack("<d", x)  # noqa: E731
    return [(f(r.reward), f(r.raw_score), r.status, r.truncated) for r in rewards]


def _step(humaneval, questions=4, group=5, offset=0):
    """A small GRPO step: ``questions`` groups of ``group`` responses, one without code and one duplicate
    per group."""
    qs, rs = [], []
    for g in range(questions):
        q = humaneval[(g + offset) * 7 % len(humaneval)]["prompt"]
        for k in range(group):
            p = humaneval[((g + offset) * 13 + k * 5) % len(humaneval)]
            qs.append(q)
            if k == 3:
                rs.append("no code")
            elif k == 4:
                rs.append(rs[-2])  # a duplicate of a sibling
            else:
                rs.append(fenced((p["prompt"] + p["canonical_solution"]).strip()))
    return qs, rs


class RedisServer:
    """A real ``redis-server`` on a free loopback port, no persistence, in a temporary folder."""

    def __init__(self, folder: Path):
        self.binary = shutil.which("redis-server")
        self.folder = folder
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=open(self.folder / "redis.log", "ab"), stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert self.proc.poll() is None, (self.folder / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not answer in 20 s"
                time.sleep(0.05)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no goodbye to connected clients
        self.proc.wait(10)

    def keys(self) -> int:
        import redis

        return redis.Redis(port=self.port).dbsize()

    def flush(self) -> None:
        import redis

        redis.Redis(port=self.port).flushdb()


@pytest.fixture()
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed here (Debian package redis-server; .ci/run installs it)")
    pytest.importorskip("redis", reason="the redis client is in codescaler's serve and test extras")
    server = RedisServer(tmp_path)
    yield server
    if server.proc.poll() is None:
        server.kill()


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_second_step_runs_nothing_and_gives_the_same_bits(qwen3_dir, humaneval, dtype):
    qs, rs = _step(humaneval)
    m = RewardModel.from_pretrained(qwen3_dir, dtype=dtype)
    plain = RewardModel.from_pretrained(qwen3_dir, dtype=dtype, reward_cache="off")
    assert m.reward_cache is not None and m.reward_cache.kind == "memory" and plain.reward_cache is None
    cache = m.reward_cache
    want = plain.score(qs, rs)
    first, stats = m.score_with_stats(qs, rs)
    unique = len({(q, r.code) for q, r in zip(qs, want) if r.raw_score is not None})
    assert (cache.hits, cache.misses) == (0, unique) and stats.computed_tokens > 0
    assert stats.reward_cache_hits == 0
    second, stats = m.score_with_stats(qs, rs)
    assert (cache.hits, cache.misses) == (unique, unique)  # every scored sequence hit
    assert stats.computed_tokens == 0 and stats.passes == 0  # no forward pass at all
    assert stats.reward_cache_hits == sum(r.raw_score is not None for r in want)
    # Per-sample arrival after the step: every pair alone hits too.
    alone = [m.score([q], [r])[0] for q, r in zip(qs, rs)]
    assert _bits(first) == _bits(second) == _bits(alone) == _bits(want)
    assert cache.misses == unique and len(cache.store) == unique


def test_per_call_changes_to_what_the_model_sees_miss(qwen3_dir, humaneval):
    """The key is the exact tokens the model runs: a per-call option that changes them misses; one that
    leaves them as they were (nothing to truncate) hits, rightly, with the same bits."""
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_length=160)
    plain = RewardModel.from_pretrained(qwen3_dir, dtype="float32", max_length=160, reward_cache="off")
    cache = m.reward_cache
    # Two blocks: 'codescaler' refuses them, 'last' takes the short one, 'best' the longest (too long to fit).
    long_code = (humaneval[0]["prompt"] + humaneval[0]["canonical_solution"]).strip()
    two = f"Try:\n```python\n{long_code}\n```\nShorter:\n```python\nx = 1\n```"
    question = humaneval[5]["prompt"]
    for options, computed, truncated in (({"policy": "last"}, True, False), ({"policy": "best"}, True, True),
                                         ({"policy": "best", "truncation": "question"}, True, True),
                                         ({"policy": "last", "truncation": "question"}, False, False)):
        before = cache.misses
        got = m.score([question], [two], **options)
        assert cache.misses == before + computed and got[0].truncated == truncated, options
        assert _bits(got) == _bits(plain.score([question], [two], **options))
        assert _bits(m.score([question], [two], **options)) == _bits(got)  # and now cached
    assert (cache.hits, cache.misses) == (5, 3)
    assert m.score([question], [two])[0].raw_score is None  # 'codescaler': two blocks, nothing run


def test_any_model_or_option_change_misses_in_a_shared_cache(qwen3_dir, chatml_dir, humaneval, redis_server,
                                                             tmp_path):
    """Through one Redis, so models loaded apart share entries: the same model (another copy of its
    folder too) hits; another dtype, max_length, truncation, compile mode or weights misses, and so does
    every sequence whose code another extraction policy changes;
    batching options, which change the work and not the bits, hit."""
    from safetensors.torch import load_file, save_file

    qs, rs = _step(humaneval, questions=2, group=3)  # 143-320 tokens, questions 98 and 129
    url = redis_server.url
    base = dict(dtype="float32", max_length=140)  # every pair truncated: max_length and truncation matter
    copy = shutil.copytree(qwen3_dir, tmp_path / "copy")
    changed = shutil.copytree(qwen3_dir, tmp_path / "changed")
    weights = load_file(changed / "model.safetensors")
    weights["score.weight"][0, 0] += 1e-3
    save_file(weights, changed / "model.safetensors", metadata={"format": "pt"})

    def run(path, per_call=None, **load):
        m = RewardModel.from_pretrained(path, reward_cache=url, **{**base, **load})
        got = m.score(qs, rs, **(per_call or {}))
        c = m.reward_cache
        assert c.errors == 0 and c.hits + c.misses > 0
        return c.hits, c.misses, got

    want = RewardModel.from_pretrained(qwen3_dir, reward_cache="off", **base).score(qs, rs)
    assert all(r.truncated for r in want if r.raw_score is not None)
    hits, computed, got = run(qwen3_dir)
    assert hits == 0 and redis_server.keys() == computed and _bits(got) == _bits(want)
    for path, load in ((qwen3_dir, {}), (copy, {}), (qwen3_dir, {"max_batch_tokens": 300}),
                       (qwen3_dir, {"share_prefix": False}), (qwen3_dir, {"prefix_cache_mb": 0})):
        hits, missed, got = run(path, **load)
        assert (hits, missed) == (computed, 0) and _bits(got) == _bits(want), (path, load)
    misses = {"bfloat16": ((qwen3_dir,), {"dtype": "bfloat16"}), "max_length": ((qwen3_dir,), {"max_length": 136}),
              "truncation": ((qwen3_dir, {"truncation": "question"}), {}),
              "compile off": ((qwen3_dir,), {"compile": "off"}), "other weights": ((changed,), {}),
              "other model": ((chatml_dir,), {})}
    for what, (args, load) in misses.items():
        hits, missed, _ = run(*args, **load)
        assert hits == 0 and missed > 0, what
    # A policy that extracts other code from one response: that sequence misses, the rest are the same
    # tokens and hit.
    qs.append(qs[0])
    rs.append(f"```python\nx = 1\n```\n```python\ndef other(values):\n    return sorted(values)[::-1]\n```")
    assert run(qwen3_dir, {"policy": "best"})[:2] == (computed, 1)


def test_the_in_process_bound_evicts_least_recently_used(qwen3_dir, humaneval):
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", reward_cache_entries=4)
    plain = RewardModel.from_pretrained(qwen3_dir, dtype="float32", reward_cache="off")
    q = humaneval[1]["prompt"]
    rs = [fenced(f"x = {i}") for i in range(10)]
    got = [m.score([q], [r])[0] for r in rs]
    store = m.reward_cache.store
    assert len(store) == 4 and store.evictions == 6 and store.bytes == 4 * 178
    hits = m.reward_cache.hits
    assert _bits(m.score([q] * 4, rs[-4:])) == _bits(got[-4:])
    assert m.reward_cache.hits == hits + 4
    misses = m.reward_cache.misses
    assert _bits(m.score([q], rs[:1])) == _bits(got[:1]) == _bits(plain.score([q], rs[:1]))
    assert m.reward_cache.misses == misses + 1  # evicted long ago: computed again
    with pytest.raises(InputError, match="reward_cache_entries must be a positive integer"):
        RewardModel.from_pretrained(qwen3_dir, reward_cache_entries=0)
    with pytest.raises(InputError, match="reward_cache 'disk' is not available; choose one of memory, off, redis://"):
        RewardModel.from_pretrained(qwen3_dir, reward_cache="disk")


def test_two_servers_share_one_redis(qwen3_dir, humaneval, redis_server, tmp_path):
    from test_serve import Server

    qs, rs = _step(humaneval, questions=2, group=4)
    groups = [{"question": qs[i], "responses": rs[i:i + 4]} for i in range(0, len(qs), 4)]
    flags = ("--reward-cache", redis_server.url, "--reward-cache-ttl", "600")
    a = Server(qwen3_dir, tmp_path / "a.log", *flags)
    b = Server(qwen3_dir, tmp_path / "b.log", *flags)
    try:
        got_a = a.post("/v1/rewards", {"groups": groups})
        assert got_a.status_code == 200, got_a.text
        computed = a.metric("codescaler_reward_cache_misses_total")
        assert computed > 0 and a.metric("codescaler_reward_cache_hits_total") == 0
        assert a.metric("codescaler_reward_cache_stored_bytes_total") > 0
        got_b = b.post("/v1/rewards", {"groups": groups})
        assert got_b.status_code == 200, got_b.text
        assert b.metric("codescaler_reward_cache_hits_total") == computed  # what A computed, B never runs
        assert b.metric("codescaler_reward_cache_misses_total") == 0
        assert b.metric("codescaler_tokens_computed_total") == 0
        assert got_a.json()["results"] == got_b.json()["results"]
    finally:
        a.stop()
        b.stop()
    plain = RewardModel.from_pretrained(qwen3_dir, dtype="float32", reward_cache="off")
    want = [r.reward for r in plain.score(qs, rs)]
    assert [x["reward"] for g in got_b.json()["results"] for x in g] == want


def test_cli_runs_share_redis_and_report_it(qwen3_dir, humaneval, redis_server, tmp_path, capsys):
    qs, rs = _step(humaneval, questions=2, group=4)
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": q, "response": r}
                                              for i, (q, r) in enumerate(zip(qs, rs))])
    outs = []
    for n in range(2):
        out = tmp_path / f"out{n}.jsonl"
        assert main(["score", "--model", str(qwen3_dir), "--dtype", "float32", "--input", str(src),
                     "--output", str(out), "--reward-cache", redis_server.url]) == 0
        outs.append(out.read_text())
        err = capsys.readouterr().err
        line = next(x for x in err.splitlines() if x.startswith("codescaler: reward cache"))
        assert f"Redis {redis_server.url}" in line and "0 error(s)" in line
        assert ("0 hit(s)" in line) == (n == 0) and ("0 miss(es)" in line) == (n == 1), line
    assert outs[0] == outs[1]


def test_redis_killed_mid_run_loses_nothing(qwen3_dir, humaneval, redis_server, caplog):
    from codescaler import reward_cache

    qs, rs = _step(humaneval, questions=3, group=4)
    later_qs, later_rs = _step(humaneval, questions=3, group=4, offset=5)
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", reward_cache=redis_server.url)
    plain = RewardModel.from_pretrained(qwen3_dir, dtype="float32", reward_cache="off")
    want, want_later = plain.score(qs, rs), plain.score(later_qs, later_rs)
    cache = m.reward_cache
    assert _bits(m.score(qs, rs)) == _bits(want) and cache.errors == 0
    computed = cache.misses
    redis_server.kill()
    caplog.set_level(logging.WARNING, logger=reward_cache.LOG.name)
    started = time.monotonic()
    assert _bits(m.score(qs, rs)) == _bits(want)  # computed again, not lost
    assert _bits(m.score(later_qs, later_rs)) == _bits(want_later)
    assert time.monotonic() - started < 30
    assert cache.errors >= 1 and cache.hits == 0
    warned = [r for r in caplog.records if r.name == reward_cache.LOG.name]
    assert len(warned) == 1 and "scoring without it" in warned[0].getMessage()  # logged once per outage
    # Redis comes back (empty): once the backoff has passed, the cache is used again.
    redis_server.start()
    deadline = time.monotonic() + 20
    while redis_server.keys() < computed:
        assert time.monotonic() < deadline, "the cache did not reconnect"
        time.sleep(0.25)
        assert _bits(m.score(qs, rs)) == _bits(want)
    assert redis_server.keys() == computed
    hits = cache.hits
    assert _bits(m.score(qs, rs)) == _bits(want) and cache.hits == hits + computed
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_unreachable_redis_at_load_is_an_outage_not_an_error(qwen3_dir, humaneval):
    pytest.importorskip("redis", reason="the redis client is in codescaler's serve and test extras")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    qs, rs = _step(humaneval, questions=1, group=4)
    m = RewardModel.from_pretrained(qwen3_dir, dtype="float32", reward_cache=f"redis://127.0.0.1:{port}/0")
    plain = RewardModel.from_pretrained(qwen3_dir, dtype="float32", reward_cache="off")
    assert _bits(m.score(qs, rs)) == _bits(plain.score(qs, rs))
    assert m.reward_cache.errors >= 1 and m.reward_cache.hits == 0
    assert "0 hit(s)" in m.reward_cache.summary() and "0 error(s)" not in m.reward_cache.summary()
