"""TensorRT engines: built (here) from the exported ONNX graph on an NVIDIA GPU, run with CUDA tensors by
``codescaler.backends.tensorrt_backend``.

TensorRT-LLM is not used: it ships reward heads only for Qwen2 (``Qwen2ForRewardModel``, which applies
the score head to every token) and no Qwen3 classifier, while the ONNX graph here already pools before
the final norm and takes packed and shared-question layouts; TensorRT builds it as it is.
None of this can run without a GPU; ``build_tensorrt`` says what is missing and stops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from codescaler.backends.engine_dir import INPUTS, MANIFEST, EngineDir
from codescaler.backends.tensorrt_backend import PLAN, require_gpu_and_tensorrt
from codescaler.errors import EngineBuildError


def build_tensorrt(model: str | Path, out: str | Path, *, dtype: str = "float16", max_length: int = 4096,
                   max_batch_tokens: int = 16384,
                   log: Callable[[str], None] = print) -> EngineDir:
    """Export ONNX at ``dtype`` into ``out`` and build a serialized TensorRT engine (``model.plan``) beside it,
    with one optimisation profile covering 1..max_length tokens per row and up to max_batch_tokens tokens."""
    from .export import export_onnx

    trt = require_gpu_and_tensorrt("building a TensorRT engine")
    engine = export_onnx(model, out, dtype=dtype, max_length=max_length, log=log)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # precision comes from the graph
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(engine.graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{engine.graph}: TensorRT cannot parse the graph ({errors})")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    max_rows = max(1, max_batch_tokens // 2)
    opt_t = min(1024, max_length)
    for name in INPUTS[:-1]:
        profile.set_shape(name, (1, 2), (max(1, max_batch_tokens // opt_t), opt_t), (max_rows, max_length))
    profile.set_shape(INPUTS[-1], (1,), (64,), (max_batch_tokens,))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {engine.graph}")
    plan_path = engine.path / PLAN
    plan_path.write_bytes(bytes(plan))
    manifest = dict(engine.manifest)
    manifest["files"][PLAN] = {"size": plan_path.stat().st_size}
    manifest["tensorrt"] = {"version": trt.__version__, "max_batch_tokens": max_batch_tokens, "plan": PLAN}
    (engine.path / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    log(f"built TensorRT engine {plan_path} ({plan_path.stat().st_size / 1e6:.1f} MB)")
    return EngineDir.open(engine.path)
