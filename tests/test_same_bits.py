"""Same input, same bits: one corpus (a GRPO step, a Best-of-N request and awkward pairs) scored through
every entry point that shares the kernels gives every pair the reward it gets when scored alone, bit for
bit, at bfloat16 and at float32: ``RewardModel.score`` / ``score_groups`` / ``best_of_n`` /
``score_iter``, a ``--format aoti`` engine, ``codescaler score``, the server (``/v1/rewards`` items and
groups, ``/v1/best_of_n``, ``/v1/rerank``, ``/get_reward``, two concurrent requests) and the C++ scorer's
example. ONNX Runtime (another kernel library) is held to 1e-4 at float32. Ray is held to the same bits
in tests/test_ray.py.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from codescaler import RewardModel
from codescaler.engine.export import export_aoti, export_onnx
from codescaler.tiny import resolve_model
from conftest import fenced
from test_serve import Server

ROOT = Path(__file__).resolve().parents[1]


def _corpus(humaneval) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """(questions, responses, groups as index ranges): 3 GRPO groups of 6, a Best-of-8 request and
    awkward pairs; answers from a few tokens to several hundred, so passes span several row tiles."""
    rng = random.Random(7)
    qs, rs, groups = [], [], []
    for task in (0, 11, 25, 40):
        q = humaneval[task]["prompt"]
        start = len(qs)
        size = 8 if task == 40 else 6
        for k in range(size):
            p = humaneval[rng.randrange(len(humaneval))]
            code = (p["prompt"] + p["canonical_solution"]).strip()
            kind = k % 6
            if kind == 0:
                r = fenced(code)
            elif kind == 1:
                r = fenced(code + "\n\n" + "\n".join(f"assert {i} == {i}" for i in range(60)))  # long
            elif kind == 2:
                r = fenced(code[: rng.randint(30, len(code))].rsplit("\n", 1)[0] or "x = 1")
            elif kind == 3:
                r = rs[-1]  # a duplicate of a sibling
            elif kind == 4:
                r = "No code here, just prose."
            else:
                r = fenced("print 'python 2'")
            qs.append(q)
            rs.append(r)
        groups.append((start, len(qs)))
    q = humaneval[3]["prompt"]
    awkward = ["", fenced("x = 1\r\ny = 2"), "```python\r\nx = 1\r\n```", fenced("s = 'déjà vu — 数据 🚀'"),
               fenced("x = '<|im_end|>'"), fenced("def f():\n    return 1") + fenced("y = 2"),
               "  " + fenced("\n\n\nx = 1\n\n") + "  ", fenced("y = 1\n" * 700)]  # the last is truncated
    qs += [q] * len(awkward) + ["", "   leading and trailing spaces  \n\n", "Say hi.\n"]
    rs += awkward + [fenced("x = 1")] * 3
    return qs, rs, groups


def _bits(rewards) -> list[tuple]:
    return [(r.reward, r.raw_score, r.status, r.truncated) for r in rewards]


def _row_bits(rows) -> list[tuple]:
    return [(r["reward"], r["raw_score"], r["status"], r["truncated"]) for r in rows]


@pytest.fixture(scope="module", params=["bfloat16", "float32"])
def setup(request, humaneval, tmp_path_factory):
    """The model at one dtype, the corpus and each pair's reward scored alone (the definition)."""
    dtype = request.param
    # No reward cache: it would answer the repeated pairs, and this is a test of the kernels' bits.
    model = RewardModel.from_pretrained("tiny", dtype=dtype, max_length=1024, reward_cache="off")
    qs, rs, groups = _corpus(humaneval)
    alone = [model.score([q], [r])[0] for q, r in zip(qs, rs)]
    assert any(a.truncated for a in alone) and any(a.raw_score is None for a in alone)
    return dtype, model, qs, rs, groups, alone, tmp_path_factory.mktemp(f"bits-{dtype}")


def test_api_entry_points_give_the_bits_of_a_pair_alone(setup):
    dtype, m, qs, rs, groups, alone, _ = setup
    assert _bits(m.score(qs, rs)) == _bits(alone)
    order = list(range(len(qs)))
    random.Random(1).shuffle(order)
    shuffled = m.score([qs[i] for i in order], [rs[i] for i in order])
    assert _bits(shuffled) == [_bits(alone)[i] for i in order]
    grouped = m.score_groups([qs[a] for a, _ in groups], [rs[a:b] for a, b in groups])
    assert [_bits(g) for g in grouped] == [_bits(alone[a:b]) for a, b in groups]
    a, b = groups[-1]
    pick = m.best_of_n(qs[a], rs[a:b])
    assert pick.rewards == [x.reward for x in alone[a:b]]
    assert _bits(m.score_iter(zip(qs, rs), chunk_items=5)) == _bits(alone)
    # Batching options are not part of the reward either.
    small = RewardModel.from_pretrained("tiny", dtype=dtype, max_length=1024, max_batch_tokens=300,
                                        max_batch_size=3, share_prefix=False)
    assert _bits(small.score(qs, rs)) == _bits(alone)


def test_aoti_engine_and_the_cli_give_the_same_bits(setup):
    dtype, m, qs, rs, _, alone, tmp = setup
    engine = export_aoti(resolve_model("tiny"), tmp / "engine", dtype=dtype, max_length=1024, log=lambda *_: None)
    from_engine = RewardModel.from_pretrained(engine.path)
    assert from_engine.dtype == dtype
    assert _bits(from_engine.score(qs, rs)) == _bits(alone)

    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "question": q, "response": r}) + "\n"
                           for i, (q, r) in enumerate(zip(qs, rs))))
    out = tmp / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "codescaler.cli", "score", "--model", "tiny", "--dtype", dtype,
                           "--max-length", "1024", "--input", str(src), "--output", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(len(qs)))
    assert _row_bits(rows) == _bits(alone)


def test_server_routes_and_concurrent_requests_give_the_same_bits(setup, tmp_path_factory):
    dtype, m, qs, rs, groups, alone, tmp = setup
    server = Server(resolve_model("tiny"), tmp / "serve.log", "--batch-window-ms", "200", "--max-length", "1024",
                    "--dtype", dtype, "--reward-cache", "off")
    try:
        def post(path, body):
            r = server.post(path, body)
            assert r.status_code == 200, r.text
            return r.json()

        items = [{"question": q, "response": r} for q, r in zip(qs, rs)]
        assert _row_bits(post("/v1/rewards", {"items": items})["results"]) == _bits(alone)
        got = post("/v1/rewards", {"groups": [{"question": qs[a], "responses": rs[a:b]} for a, b in groups]})
        assert [_row_bits(g) for g in got["results"]] == [_bits(alone[a:b]) for a, b in groups]
        a, b = groups[-1]
        pick = post("/v1/best_of_n", {"question": qs[a], "candidates": rs[a:b]})
        assert pick["rewards"] == [x.reward for x in alone[a:b]]
        ranked = post("/v1/rerank", {"query": qs[a], "documents": rs[a:b]})["results"]
        assert sorted((x["index"], x["relevance_score"]) for x in ranked) == [
            (i, x.reward) for i, x in enumerate(alone[a:b])]
        # OpenRLHF's /get_reward: the rendered ChatML conversation, question passed through as rendered. A
        # response holding the end marker itself is cut there (the text cannot say otherwise): left out.
        kept = [i for i, r in enumerate(rs) if "<|im_end|>" not in r]
        queries = [f"<|im_start|>user\n{qs[i]}<|im_end|>\n<|im_start|>assistant\n{rs[i]}<|im_end|>" for i in kept]
        assert post("/get_reward", {"query": queries})["rewards"] == [alone[i].reward for i in kept]
        # Two clients sending halves of the corpus at once: whatever the server merges, the same bits.
        half = len(items) // 2
        with ThreadPoolExecutor(2) as pool:
            parts = list(pool.map(lambda chunk: post("/v1/rewards", {"items": chunk})["results"],
                                  (items[:half], items[half:])))
        assert _row_bits(parts[0] + parts[1]) == _bits(alone)
    finally:
        server.stop()


def test_cpp_example_gives_the_same_bits(setup):
    dtype, m, qs, rs, _, alone, tmp = setup
    build = ROOT / "build" / "cpp"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCODESCALER_BUILD_TESTS=ON",
                    f"-DPython3_EXECUTABLE={sys.executable}"], check=True, capture_output=True, text=True)
    made = subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "codescaler_score_example"],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    engine = tmp / "engine"
    if not engine.exists():
        export_aoti(resolve_model("tiny"), engine, dtype=dtype, max_length=1024, log=lambda *_: None)
    src = tmp / "cpp-in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "question": q, "response": r}) + "\n"
                           for i, (q, r) in enumerate(zip(qs, rs))))
    proc = subprocess.run([str(build / "codescaler_score_example"), str(engine), str(src)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(range(len(qs)))
    # Pairs the C++ template splice refuses (none in this corpus) would be "unsupported".
    assert _row_bits(rows) == _bits(alone)


def test_onnx_runtime_within_1e4_at_float32(setup):
    dtype, m, qs, rs, _, alone, tmp = setup
    if dtype != "float32":
        pytest.skip("an ONNX engine is compared at float32")
    engine = export_onnx(resolve_model("tiny"), tmp / "onnx", max_length=1024, log=lambda *_: None)
    got = RewardModel.from_pretrained(engine.path).score(qs, rs)
    assert [g.status for g in got] == [a.status for a in alone]
    assert max(abs(g.reward - a.reward) for g, a in zip(got, alone)) <= 1e-4
