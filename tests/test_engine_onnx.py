"""Engine directories on ONNX Runtime against Hugging Face's float32 forward; bad engines fail clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from codescaler import InputError, ModelLoadError, RewardModel
from codescaler.engine.export import export_onnx
from codescaler.backends.layout import Piece, packed
from conftest import fenced
from test_model import HFReference, _pairs

TOL = 1e-4
SHAPES = ("qwen3-64", "qwen3-odd-96", "qwen3-odd-120", "llama-64")


@pytest.fixture(scope="session")
def engines(model_dirs, tmp_path_factory):
    return {name: export_onnx(model_dirs[name], tmp_path_factory.mktemp(f"engine-{name}"), log=lambda *_: None)
            for name in SHAPES}


@pytest.mark.parametrize("name", SHAPES)
def test_padded_scores_equal_hf(model_dirs, engines, humaneval, name):
    qs, codes = _pairs(humaneval, 10, seed=11)
    m = RewardModel.from_pretrained(engines[name].path)
    assert m.backend.name == "onnx"
    ref = HFReference(model_dirs[name])
    want = [ref.one(q, c) for q, c in zip(qs, codes)]
    assert max(abs(a - b) for a, b in zip(m.score_code(qs, codes), want)) <= TOL


@pytest.mark.parametrize("name", SHAPES)
def test_packed_and_shared_question_layouts_equal_hf(model_dirs, engines, humaneval, name):
    """Hand-built packed rows: two independent sequences in one row, and one question shared by three
    answers (each answer attends to the question and itself only)."""
    m = RewardModel.from_pretrained(engines[name].path)
    ref = HFReference(model_dirs[name])
    qs, codes = _pairs(humaneval, 4, seed=5)
    full = [m.encoder.encode([q], [c])[0] for q, c in zip(qs, codes)]
    want = [ref.one(q, c) for q, c in zip(qs, codes)]
    # two whole sequences per row, rows of different lengths, padding at the end of the short row
    layout = packed([[Piece(full[0], len(full[0]) - 1), Piece(full[1], len(full[1]) - 1)],
                     [Piece(full[2], len(full[2]) - 1)]], m.backend.pad_id)
    got = m.backend.score_layout(layout)
    assert np.abs(got - np.array(want[:3])).max() <= TOL
    # a shared question: split each full sequence at the same token prefix
    q = qs[0]
    seqs = [m.encoder.encode([q], [c])[0] for c in codes]
    cut = 0
    while all(len(s) > cut + 1 and s[cut] == seqs[0][cut] for s in seqs):
        cut += 1
    row = [Piece(seqs[0][:cut])] + [Piece(s[cut:], len(s) - cut - 1, shares=0) for s in seqs]
    got = m.backend.score_layout(packed([row], m.backend.pad_id))
    want = [ref.one(q, c) for c in codes]
    assert np.abs(got - np.array(want)).max() <= TOL


def test_torch_graph_matches_on_the_same_layouts(model_dirs, engines):
    """The exported graph and its torch source agree on a packed layout (same inputs, same math)."""
    from transformers import AutoModelForSequenceClassification

    from codescaler.engine.graph import PooledScorer

    hf = AutoModelForSequenceClassification.from_pretrained(model_dirs["qwen3-odd-96"], dtype=torch.float32)
    graph = PooledScorer(hf.eval())
    rng = np.random.default_rng(0)
    rows = [[Piece(rng.integers(0, 150000, 9).tolist()), Piece(rng.integers(0, 150000, 5).tolist(), 4, shares=0),
             Piece(rng.integers(0, 150000, 7).tolist(), 6, shares=0)], [Piece(rng.integers(0, 150000, 3).tolist(), 0)]]
    layout = packed(rows, 151643)
    with torch.no_grad():
        want = graph(*(torch.from_numpy(a) for a in layout.feeds().values())).numpy()
    got = RewardModel.from_pretrained(engines["qwen3-odd-96"].path).backend.score_layout(layout)
    assert np.abs(got - want).max() <= TOL


def test_score_through_engine_equals_model_dir(model_dirs, engines, humaneval):
    qs, codes = _pairs(humaneval, 6, seed=2)
    responses = [fenced(c) for c in codes] + ["no code", fenced("print 'py2'")]
    questions = qs + qs[:2]
    a = RewardModel.from_pretrained(model_dirs["qwen3-64"], dtype="float32").score(questions, responses)
    b = RewardModel.from_pretrained(engines["qwen3-64"].path).score(questions, responses)
    assert [r.status for r in a] == [r.status for r in b]
    assert [r.code for r in a] == [r.code for r in b]
    assert max(abs(x.reward - y.reward) for x, y in zip(a, b)) <= TOL


def test_longer_than_engine_max_length_is_truncated(model_dirs, tmp_path, humaneval):
    engine = export_onnx(model_dirs["qwen3-64"], tmp_path / "e", max_length=40, log=lambda *_: None)
    m = RewardModel.from_pretrained(engine.path)
    assert m.max_length == 40
    qs, codes = _pairs(humaneval, 3, seed=9)
    ref = HFReference(model_dirs["qwen3-64"], max_length=40)
    got = m.score_code(qs, codes)
    assert max(abs(g - ref.one(q, c)) for g, q, c in zip(got, qs, codes)) <= TOL
    with pytest.raises(InputError, match="exceeds the engine's 40"):
        RewardModel.from_pretrained(engine.path, max_length=41)


def _copy(engine, dst):
    shutil.copytree(engine.path, dst)
    return dst


def test_broken_engine_dirs_name_the_file(engines, tmp_path):
    src = engines["qwen3-64"]
    d = _copy(src, tmp_path / "missing")
    (d / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer.json: missing"):
        RewardModel.from_pretrained(d)

    d = _copy(src, tmp_path / "future")
    man = json.loads((d / "manifest.json").read_text())
    man["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelLoadError, match=r"manifest.json: format_version 99 is newer"):
        RewardModel.from_pretrained(d)

    d = _copy(src, tmp_path / "truncated")
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"model.onnx: \d+ bytes, the manifest says"):
        RewardModel.from_pretrained(d)
    man = json.loads((d / "manifest.json").read_text())
    man["files"]["model.onnx"]["size"] = len(data) // 2  # a manifest that lies about the size
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelLoadError, match=r"model.onnx: ONNX Runtime cannot load"):
        RewardModel.from_pretrained(d)

    d = _copy(src, tmp_path / "othertok")
    man = json.loads((d / "manifest.json").read_text())
    man["tokenizer"]["pad_id"] = 0
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelLoadError, match=r"tokenizer.json: pad id 151643 does not match"):
        RewardModel.from_pretrained(d)

    with pytest.raises(ModelLoadError, match="provider 'CUDAExecutionProvider' is not available"):
        RewardModel.from_pretrained(src.path, providers=["CUDAExecutionProvider"])
    with pytest.raises(InputError, match="runs on backend 'onnx', not 'torch'"):
        RewardModel.from_pretrained(src.path, backend="torch")


def test_int8_engine_keeps_rankings(model_dirs, engines, tmp_path, humaneval):
    q8 = export_onnx(model_dirs["qwen3-64"], tmp_path / "q8", quantize="int8", log=lambda *_: None)
    assert q8.manifest["quantization"] == "int8"
    assert q8.manifest["files"]["model.onnx"]["size"] < engines["qwen3-64"].manifest["files"]["model.onnx"]["size"]
    qs, codes = _pairs(humaneval, 12, seed=4)
    a = RewardModel.from_pretrained(engines["qwen3-64"].path).score_code(qs, codes)
    b = RewardModel.from_pretrained(q8.path).score_code(qs, codes)
    assert max(abs(x - y) for x, y in zip(a, b)) < 0.1  # close, not equal: weights are int8


def test_tensorrt_export_without_gpu_says_what_is_missing(model_dirs, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codescaler.cli", "export", "--format", "tensorrt", "--model",
                           str(model_dirs["qwen3-64"]), "--out", str(tmp_path / "trt")],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 0:
        pytest.skip("TensorRT and a GPU are present here")
    assert proc.returncode == 2
    assert "TensorRT" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
