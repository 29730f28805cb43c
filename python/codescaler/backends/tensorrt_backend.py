"""The TensorRT backend: runs a ``model.plan`` built by ``codescaler export --format tensorrt``
(``codescaler.engine.tensorrt``) on the current CUDA device."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import EngineBuildError, ModelLoadError
from .base import Unit
from .engine_dir import MANIFEST, EngineDir
from .layout import Layout, padded

PLAN = "model.plan"


def require_gpu_and_tensorrt(what: str) -> Any:
    missing = []
    try:
        import tensorrt as trt
    except ImportError:
        trt = None
        missing.append("the `tensorrt` Python package (pip install tensorrt)")
    import torch

    if not torch.cuda.is_available():
        missing.append("an NVIDIA GPU visible to CUDA")
    if missing:
        raise EngineBuildError(f"{what} needs {' and '.join(missing)}; on this machine use the ONNX engine "
                               "(codescaler export --format onnx)")
    return trt


class TensorRTBackend:
    """Runs ``model.plan`` on the current CUDA device; layouts go in as CUDA tensors."""

    name = "tensorrt"
    packs = False  # takes padded layouts, as on ONNX Runtime
    invariant = False  # as on ONNX Runtime: a score can move with its batch's padded length
    dtype_reason = "fixed at export"
    compiled = "TensorRT"
    device = "cuda"
    prefix_cache = None

    def __init__(self, engine: EngineDir):
        if "tensorrt" not in engine.manifest:
            raise ModelLoadError(f"{engine.path / MANIFEST}: no TensorRT plan; build one with "
                                 "codescaler export --format tensorrt")
        trt = require_gpu_and_tensorrt("the TensorRT backend")
        import torch

        self._torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine_plan = runtime.deserialize_cuda_engine((engine.path / PLAN).read_bytes())
        if self.engine_plan is None:
            raise ModelLoadError(f"{engine.path / PLAN}: TensorRT cannot deserialize the plan")
        self.context = self.engine_plan.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.dtype = engine.manifest["dtype"]
        self.pad_id = engine.manifest["pad_id"]

    def score(self, units: Sequence[Unit]) -> list[float]:
        """Raw scores of ``units`` (each one whole sequence, see ``packs``) run as one padded batch."""
        layout = padded([u.answers[0] for u in units], [u.pools[0] for u in units], self.pad_id)
        return self.score_layout(layout).tolist()

    def score_layout(self, layout: Layout) -> np.ndarray:
        torch = self._torch
        feeds = {k: torch.from_numpy(v).cuda() for k, v in layout.feeds().items()}
        scores = torch.empty(len(layout.pool_index), dtype=torch.float32, device="cuda")
        for name, t in feeds.items():
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        self.context.set_tensor_address("scores", scores.data_ptr())
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        return scores.cpu().numpy()
