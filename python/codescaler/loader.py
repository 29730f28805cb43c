"""What a model path resolves to: the backend that runs it, its tokenizer and its chat template, with the
load-time options checked and completed by what the load decided (backend, dtype, max_length).

A Hugging Face folder runs on torch with the tokenizer transformers builds. An engine directory runs on
the backend its kind needs, and imports only what that backend uses: an aoti engine whose template the
export recorded as a splice reads ``tokenizer.json`` with the ``tokenizers`` library alone and no
transformers (whose import and tokenizer build cost seconds); transformers is loaded only if a pair the
splice refuses ever comes (see ``ChatTemplate``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from . import options as opts
from . import reward_cache as rcache
from .backends.base import Backend
from .backends.engine_dir import EngineDir
from .encode import RustTokenizer
from .errors import InputError, ModelLoadError
from .template import ChatTemplate, Splice
from .tiny import resolve_model

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Loaded:
    """A resolved model: ``options`` holds every option, checked, with ``backend``, ``dtype`` and
    ``max_length`` as loaded; ``store`` is the reward cache's store (None: off), opened before the load
    so that a bad Redis URL fails at once."""

    path: Path
    backend: Backend
    tokenizer: Any
    template: ChatTemplate
    options: dict[str, Any]
    store: rcache.MemoryStore | rcache.RedisStore | None


def load(path: str | Path, given: Mapping[str, Any], *, dtype: str | torch.dtype | None = None,
         device: str | None = None, providers: Sequence[str | tuple[str, dict]] | None = None) -> Loaded:
    """Resolve ``path`` (``"tiny"``, a Hugging Face folder or an engine directory) with the options
    ``given`` (names of :mod:`codescaler.options`; None values are left out by the caller); ``dtype`` may
    also be a ``torch.dtype``; ``device`` and ``providers`` as ``RewardModel.from_pretrained`` says."""
    checked = {**opts.defaults(), **opts.checked(given)}
    store = rcache.open_store(checked)
    path = resolve_model(path)
    if EngineDir.is_engine(path):
        backend, tokenizer, template = _engine(path, checked, providers)
    else:
        backend, tokenizer, template = _model_dir(path, checked, dtype, device)
    checked["backend"] = backend.name
    checked["dtype"] = backend.dtype
    checked["max_length"] = checked["max_length"] or 4096
    return Loaded(path, backend, tokenizer, template, checked, store)


def _engine(path: Path, checked: dict[str, Any],
            providers: Sequence[str | tuple[str, dict]] | None) -> tuple[Backend, Any, ChatTemplate]:
    engine = EngineDir.open(path)
    kind, backend, threads = engine.kind, checked["backend"], checked["threads"]
    allowed = ("auto", "torch") if kind == "aoti" else ("auto", "onnx", "tensorrt")
    if backend not in allowed:
        raise InputError(f"{path} is an engine directory ({kind}); it runs on backend "
                         f"{allowed[1]!r}, not {backend!r}")
    if checked["dtype"] is not None and checked["dtype"] != engine.manifest["dtype"]:
        raise InputError(f"{path}: the engine was exported as {engine.manifest['dtype']}; "
                         f"dtype={checked['dtype']!r} needs another export")
    if checked["max_length"] is None:
        checked["max_length"] = engine.max_length
    elif checked["max_length"] > engine.max_length:
        raise InputError(f"max_length {checked['max_length']} exceeds the engine's {engine.max_length} "
                         f"({path / 'manifest.json'}); re-export with --max-length {checked['max_length']}")
    recorded = engine.manifest.get("template")
    if kind == "aoti" and recorded:
        # The C++ scorer reads the same splice; the pairs a guarded one refuses go to the tokenizer's own
        # template, loaded only when such a pair comes.
        tokenizer = RustTokenizer(path / "tokenizer.json", engine.manifest["tokenizer"]["pad_id"])
        template = ChatTemplate(None, splice=Splice(**recorded),
                                reference=lambda: load_tokenizer(_auto_tokenizer(), path))
    else:
        tokenizer = load_tokenizer(_auto_tokenizer(), path)
        template = ChatTemplate(tokenizer, source=str(path))
    engine.check_tokenizer(tokenizer)
    if kind == "aoti":
        import torch

        from .backends.torch_backend import TorchBackend

        engine.check_machine()
        if threads is not None:
            torch.set_num_threads(threads)
        return TorchBackend.from_engine(engine, prefix_cache_mb=checked["prefix_cache_mb"]), tokenizer, template
    if backend == "auto" and "tensorrt" in engine.manifest and _cuda_available():
        backend = "tensorrt"
    if backend == "tensorrt":
        from .backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(engine), tokenizer, template
    from .backends.onnx_backend import OnnxBackend

    return OnnxBackend(engine, providers=providers, threads=threads), tokenizer, template


def _model_dir(path: Path, checked: dict[str, Any], dtype: str | torch.dtype | None,
               device: str | None) -> tuple[Backend, Any, ChatTemplate]:
    import torch

    from .backends.torch_backend import TorchBackend, check_model_dir

    if checked["backend"] in ("onnx", "tensorrt"):
        raise InputError(f"{path} is a Hugging Face folder; backend {checked['backend']!r} needs an engine "
                         f"directory (codescaler export --model {path} --out ENGINE_DIR)")
    check_model_dir(path)
    tokenizer = load_tokenizer(_auto_tokenizer(), path)
    if checked["threads"] is not None:
        torch.set_num_threads(checked["threads"])
    with _quiet_transformers():
        backend = TorchBackend(path, dtype=dtype, device=device, compile=checked["compile"],
                               prefix_cache_mb=checked["prefix_cache_mb"])
    return backend, tokenizer, ChatTemplate(tokenizer, source=str(path))


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and warnings while loading, restoring the user's settings."""
    from transformers.utils import logging as hf_logging

    bar, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _auto_tokenizer() -> Any:
    """``transformers.AutoTokenizer``, imported here: only the loads that need it pay for transformers."""
    from transformers import AutoTokenizer

    return AutoTokenizer


def load_tokenizer(auto: Any, path: Path) -> Any:
    """``auto.from_pretrained(path)`` (a Hugging Face tokenizer class), its failure a :class:`ModelLoadError`."""
    try:
        tokenizer = auto.from_pretrained(path)
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load the tokenizer ({exc})") from exc
    # transformers warns once that a text longer than the tokenizer's model_max_length "will result in
    # indexing errors"; not here: the encoder truncates every conversation to max_length itself.
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    return tokenizer
