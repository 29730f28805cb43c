"""ONNX Runtime backend over an engine directory: one session, created once, inputs bound in place."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import ModelLoadError
from .base import Unit
from .engine_dir import EngineDir
from .layout import Layout, padded


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class OnnxBackend:
    """The :class:`~codescaler.backends.base.Backend` of ONNX engine directories: padded batches."""

    name = "onnx"
    dtype_reason = "fixed at export"
    compiled = "ONNX Runtime"
    # Padded batches with fused attention kernels of ONNX Runtime's choosing: a score can move with the
    # batch's padded length, so the reward cache does not serve this backend.
    invariant = False
    prefix_cache = None

    def __init__(self, engine: EngineDir, *, providers: Sequence[str | tuple[str, dict]] | None = None,
                 threads: int | None = None):
        import onnxruntime as ort

        self.engine = engine
        self.dtype = engine.manifest["dtype"] + ("+int8" if engine.manifest.get("quantization") else "")
        self.pad_id = engine.manifest["pad_id"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = list(providers) if providers else ["CPUExecutionProvider"]
        for p in providers:
            name = p[0] if isinstance(p, tuple) else p
            if name not in available:
                raise ModelLoadError(
                    f"ONNX Runtime provider {name!r} is not available here (available: {', '.join(available)}); "
                    "CUDA/TensorRT providers need onnxruntime-gpu and an NVIDIA GPU"
                )
        try:
            self.session = ort.InferenceSession(str(engine.graph), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"{engine.graph}: ONNX Runtime cannot load the graph ({exc})") from exc
        names = [i.name for i in self.session.get_inputs()]
        if names != list(engine.manifest.get("inputs", names)):
            raise ModelLoadError(f"{engine.graph}: inputs {names} differ from the manifest's")
        self.providers = self.session.get_providers()
        self.device = "cuda" if any(p != "CPUExecutionProvider" for p in self.providers) else "cpu"

    def score(self, units: Sequence[Unit]) -> list[float]:
        """Raw scores of ``units`` (each one whole sequence, see ``packs``) run as one padded batch."""
        layout = padded([u.answers[0] for u in units], [u.pools[0] for u in units], self.pad_id)
        return self.score_layout(layout).tolist()

    def score_layout(self, layout: Layout) -> np.ndarray:
        """Raw scores (float32, one per ``layout.pool_index``) of any layout the graph takes."""
        binding = self.session.io_binding()
        for name, arr in layout.feeds().items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        binding.bind_output("scores")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    # The graph has no key/value inputs, so a shared question could only be packed in one row with its
    # answers under a dense block mask; measured on the GRPO-step benchmark that is slower (62 s) than
    # scoring each answer whole in length-sorted padded batches (38 s), so this backend does not share.
    packs = False
