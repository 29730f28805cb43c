"""The compiled decoder blocks (AOTInductor) and the `--format aoti` engine directory: parity with Hugging
Face's forward (float32 ≤1e-4, bfloat16 within 0.05), with the eager blocks they were compiled from, and
loading that compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codescaler import ModelLoadError, RewardModel
from codescaler.backends.decoder import Arch, PostAttention, PreAttention
from codescaler.backends import aoti
from codescaler.engine.export import export_aoti
from conftest import fenced
from test_model import HFReference, _pairs
from test_template import UPPER_TEMPLATE


def _workload(humaneval, seed):
    qs, codes = _pairs(humaneval, 6, seed=seed)
    q = qs[0]
    group = [(humaneval[i]["prompt"] + humaneval[i]["canonical_solution"]).strip() for i in (3, 4, 5)]
    return qs + [q] * 3, codes + group  # lone pairs and one shared-question group


@pytest.fixture(scope="module")
def engines(model_dirs, tmp_path_factory):
    out = {}
    for name, dtype in (("qwen3-odd-96", "float32"), ("qwen2-64", "float32"), ("llama-64", "float32"),
                        ("qwen3-odd-96", "bfloat16")):
        out[name, dtype] = export_aoti(model_dirs[name], tmp_path_factory.mktemp("aoti") / "e", dtype=dtype,
                                       log=lambda *_: None)
    return out


@pytest.mark.parametrize("name", ["qwen3-odd-96", "qwen2-64", "llama-64"])
def test_engine_equals_hf_float32(engines, model_dirs, humaneval, name):
    engine = engines[name, "float32"]
    qs, codes = _workload(humaneval, seed=len(name))
    m = RewardModel.from_pretrained(engine.path)
    assert m.backend_name == "torch" and m.dtype == "float32" and "AOTInductor" in m.backend.compiled
    got = m.score_code(qs, codes)
    assert m.plan_for(qs, [fenced(c) for c in codes]).shared, "the workload has a shared question"
    ref = HFReference(model_dirs[name])
    want = [ref.one(q, c) for q, c in zip(qs, codes)]
    assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-4


def test_engine_bfloat16_within_tolerance_of_hf_float32(engines, model_dirs, humaneval):
    m = RewardModel.from_pretrained(engines["qwen3-odd-96", "bfloat16"].path)
    assert m.dtype == "bfloat16"
    qs, codes = _workload(humaneval, seed=7)
    ref = HFReference(model_dirs["qwen3-odd-96"])
    got = m.score_code(qs, codes)
    assert max(abs(a - ref.one(q, c)) for a, q, c in zip(got, qs, codes)) <= 0.05


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_compiled_blocks_equal_the_eager_blocks(dtype):
    """Odd token counts, including the smallest the package takes, against the modules they came from."""
    arch = Arch(hidden=96, intermediate=200, heads=3, kv_heads=1, head_dim=40, eps=1e-6, qk_norm=True,
                qkv_bias=False, dtype=dtype)
    pre, post = aoti.load_package(aoti.cached_package(arch))
    tol = 1e-5 if dtype == "float32" else 2e-2
    for n in (aoti.MIN_TOKENS, 3, 97):
        pre_args, post_args = aoti._examples(arch, n)
        with torch.inference_mode():
            for got, want in zip(pre(*pre_args), PreAttention(arch)(*pre_args)):
                assert got.shape == want.shape and got.is_contiguous()
                assert (got.float() - want.float()).abs().max().item() <= tol * max(1.0, want.abs().max().item())
            got, want = post(*post_args), PostAttention(arch)(*post_args)
            assert (got.float() - want.float()).abs().max().item() <= tol * max(1.0, want.abs().max().item())


def test_one_token_pass_runs_eagerly(tmp_path):
    """A one-token forward (below what the package takes) still scores, equal to the eager path."""
    from codescaler import tiny

    d = tiny.save_random_reward_model(tmp_path / "m", chat_template="{%- for m in messages -%}{{- m.content -}}{%- endfor -%}",
                                      seed=4)
    m = RewardModel.from_pretrained(d, dtype="float32")
    eager = RewardModel.from_pretrained(d, dtype="float32", compile="off")
    assert "AOTInductor" in m.backend.compiled and eager.backend.compiled == "eager"
    assert abs(m.score_code([""], ["x"])[0] - eager.score_code([""], ["x"])[0]) <= 1e-5


def test_engine_loads_without_compiling(engines, humaneval, tmp_path):
    """In a fresh process: the engine loads and scores with no Inductor compiler imported and no cache."""
    engine = engines["qwen3-odd-96", "float32"]
    qs, codes = _workload(humaneval, seed=3)
    want = RewardModel.from_pretrained(engine.path).score_code(qs, codes)
    script = (
        "import json, sys, time\n"
        "from codescaler import RewardModel\n"
        "from codescaler.backends import aoti\n"
        "def refuse(*a, **k): raise AssertionError('compiled at load')\n"
        "aoti.build_package = aoti.cached_package = refuse\n"
        "qs, codes = json.load(sys.stdin)\n"
        f"m = RewardModel.from_pretrained({str(engine.path)!r})\n"
        "got = m.score_code(qs, codes)\n"
        "print(json.dumps({'got': got, 'inductor': [k for k in sys.modules if k.startswith('torch._inductor.compile')]}))\n"
    )
    env = dict(os.environ, CODESCALER_CACHE=str(tmp_path / "empty-cache"))
    run = subprocess.run([sys.executable, "-c", script], input=json.dumps([qs, codes]), capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["inductor"] == []
    assert not (tmp_path / "empty-cache" / "aoti").exists()
    assert max(abs(a - b) for a, b in zip(out["got"], want)) <= 1e-6


def test_manifest_records_the_guarded_splice_and_the_rope_table(engines, model_dirs):
    """What a reader without Jinja or transformers (the C++ scorer) needs: the Qwen3-style template as a
    guarded splice, and Hugging Face's rotary inverse frequencies."""
    from safetensors.torch import load_file

    from codescaler.backends.torch_backend import ROPE_INV_FREQ, load_rope

    engine = engines["qwen3-odd-96", "bfloat16"]
    m = engine.manifest
    assert m["template"] == {"head": "<|im_start|>user\n",
                             "middle": "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
                             "tail": "<|im_end|>\n", "code_lstrip": "\n", "refuse": ["</think>"]}
    assert m["template_reason"] is None and m["rope"] == {"scaling": 1.0}
    inv_freq = load_file(engine.path / m["weights"])[ROPE_INV_FREQ]
    want = load_rope(m["config"], model_dirs["qwen3-odd-96"]).inv_freq
    assert inv_freq.dtype == torch.float32 and torch.equal(inv_freq, want)


def test_refused_pairs_render_through_the_template(engines, model_dirs, humaneval):
    """Pairs the recorded splice refuses (a think block in the answer) score as Hugging Face does on the
    template's own text; the others, leading newlines and all, through the splice."""
    engine = engines["qwen3-odd-96", "float32"]
    qs, codes = _workload(humaneval, seed=11)
    codes = [f"<think>\nplan {i}\n</think>\n\n{c}" if i % 2 else "\n\n" + c for i, c in enumerate(codes)]
    got = RewardModel.from_pretrained(engine.path).score_code(qs, codes)
    ref = HFReference(model_dirs["qwen3-odd-96"])
    assert max(abs(a - ref.one(q, c)) for a, q, c in zip(got, qs, codes)) <= 1e-4


def test_engine_with_yarn_rope_and_an_unsplicable_template(model_dirs, humaneval, tmp_path, monkeypatch):
    """A static non-default rope type (yarn: scaled table and attention factor) is stored and used as
    recorded; a template no splice reproduces is recorded as null with the reason, and logged."""
    import shutil

    from safetensors.torch import load_file

    from codescaler import tiny
    from codescaler.backends import torch_backend

    src = tmp_path / "m"
    shutil.copytree(model_dirs["qwen3-64"], src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 1_000_000.0, "factor": 4.0,
                              "original_max_position_embeddings": 10240}
    (src / "config.json").write_text(json.dumps(cfg))
    tiny.save_qwen_tokenizer(src, UPPER_TEMPLATE)
    lines = []
    engine = export_aoti(src, tmp_path / "e", dtype="float32", log=lines.append)
    m = engine.manifest
    assert m["template"] is None and "as given" in m["template_reason"]
    assert any(line.startswith("C++ scorer: unsupported (the chat template")
               and line.endswith("; Python runs this engine") for line in lines)
    want = torch_backend.load_rope(cfg, src)
    assert want.scaling != 1.0 and m["rope"] == {"scaling": want.scaling}
    assert torch.equal(load_file(engine.path / m["weights"])[torch_backend.ROPE_INV_FREQ], want.inv_freq)

    def no_transformers(*_):
        raise AssertionError("an engine's rotary table is read, not derived")

    monkeypatch.setattr(torch_backend, "load_rope", no_transformers)
    qs, codes = _workload(humaneval, seed=13)
    got = RewardModel.from_pretrained(engine.path).score_code(qs, codes)
    ref = HFReference(src)
    assert max(abs(a - ref.one(q, c)) for a, q, c in zip(got, qs, codes)) <= 1e-4


def test_engine_for_another_machine_is_refused(engines, tmp_path):
    import shutil

    src = engines["llama-64", "float32"].path
    dst = tmp_path / "moved"
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["machine"]["torch"] = "1.0.0"
    (dst / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="compiled for another machine.*torch"):
        RewardModel.from_pretrained(dst)
    with pytest.raises(Exception, match="runs on backend 'torch'"):
        RewardModel.from_pretrained(src, backend="onnx")


def test_damaged_package_is_refused(engines, tmp_path):
    import shutil

    dst = tmp_path / "damaged"
    shutil.copytree(engines["llama-64", "float32"].path, dst)
    with open(dst / aoti.PACKAGE, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelLoadError, match="blocks.pt2"):
        RewardModel.from_pretrained(dst)


def test_cli_exports_aoti(tmp_path):
    out = tmp_path / "e"
    run = subprocess.run([sys.executable, "-m", "codescaler.cli", "export", "--model", "tiny", "--out", str(out),
                          "--format", "aoti", "--dtype", "float32"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "aoti" and manifest["dtype"] == "float32"
    assert (out / "blocks.pt2").is_file() and (out / "weights.safetensors").is_file()
    assert Path(manifest["source_model"]).name == "tiny-qwen3-rm"


def test_attention_without_the_cpu_flash_kernel_equals_it(qwen3_dir, humaneval, monkeypatch):
    """The path devices without the CPU flash kernel take (CUDA) computes the same halves and merge."""
    from codescaler.backends import decoder

    qs, codes = _workload(humaneval, seed=5)
    want = RewardModel.from_pretrained(qwen3_dir, dtype="float32", compile="off").score_code(qs, codes)
    monkeypatch.setattr(decoder, "_flash_cpu", None)
    got = RewardModel.from_pretrained(qwen3_dir, dtype="float32", compile="off").score_code(qs, codes)
    assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-5


def test_row_tile_rule_keeps_the_default_unless_another_tile_is_clearly_cheaper():
    """The build's choice from measured microseconds per row: the default 256 within the margin, a tile
    clearly faster per row when its padding (half a tile per 8,192-token pass) does not eat the gain."""
    flat = {128: 10.4, 256: 10.0, 512: 9.75, 1024: 9.8}  # 512 costs 1% less than 256: within the noise
    assert aoti.choose_row_tile(flat).row_tile == 256
    amx_like = {128: 14.0, 256: 10.0, 512: 7.0, 1024: 6.9}  # repacking weights per call, amortised
    choice = aoti.choose_row_tile(amx_like)
    assert choice.row_tile == 512  # 1024's padding (6%) costs more than its 1.4% per row
    assert choice.cost[512] < choice.cost[1024] < choice.cost[256]
    assert aoti.choose_row_tile({128: 5.0, 256: 10.0}).row_tile == 128
    assert aoti.choose_row_tile({512: 3.0, 1024: 3.0}).row_tile == 512  # a tie: the smaller tile


def test_package_and_engine_record_the_measured_tile(engines):
    """The build timed every candidate tile on this machine and recorded its choice beside the package;
    the engine carries it (kernels.json, manifest row_tile) and runs it."""
    engine = engines["qwen3-odd-96", "float32"]
    arch = Arch.from_config(engine.manifest["config"], "float32")
    choice = aoti.read_choice(aoti.cached_package(arch))
    assert choice.row_tile in aoti.TILES and sorted(choice.us_per_row) == list(aoti.TILES)
    assert all(us > 0 for us in choice.us_per_row.values())
    assert engine.manifest["row_tile"] == choice.row_tile and engine.manifest["kernels"] == aoti.KERNELS
    assert aoti.read_choice(engine.path / aoti.PACKAGE) == choice
    m = RewardModel.from_pretrained(engine.path)
    assert m.backend.row_tile == choice.row_tile and f"{choice.row_tile}-token tiles" in m.backend.compiled


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_tile_keeps_a_pair_alone_and_in_a_batch_bit_equal(engines, humaneval, dtype):
    """Whatever tile a build chooses, batch invariance holds at it (a pair alone gives the bits it gets
    in the batch), and the tiles agree with each other within float tolerance."""
    m = RewardModel.from_pretrained(engines["qwen3-odd-96", dtype].path, reward_cache="off")
    qs, codes = _workload(humaneval, seed=11)
    by_tile = {}
    for tile in (128, 1024):
        m.backend.decoder.tile = tile
        m.backend.prefix_cache.clear()
        batch = m.score_code(qs, codes)
        alone = [m.score_code([q], [c])[0] for q, c in zip(qs, codes)]
        assert batch == alone
        by_tile[tile] = batch
    tol = 1e-5 if dtype == "float32" else 0.05
    assert max(abs(a - b) for a, b in zip(by_tile[128], by_tile[1024])) <= tol
