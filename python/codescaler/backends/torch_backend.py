"""PyTorch backend: a Hugging Face ``*ForSequenceClassification`` checkpoint run by the packed decoder.

The weights are read from the checkpoint's safetensors (no Hugging Face model class is built); the
decoder (``decoder.py``) runs units of prefix + answers packed in one row, its per-layer blocks compiled
once per machine by AOTInductor (``codescaler.backends.aoti``) or eager. Only the pooled rows go through
the final norm and the score head, fused in one Triton kernel on CUDA and by its torch reference
elsewhere (Hugging Face projects every token, then gathers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

    from .decoder import PrefixCache, Rope
    from .engine_dir import EngineDir

from ..errors import ModelLoadError
from ..options import DTYPES
from .base import Unit

# An aoti engine's weights file also holds the rotary inverse frequencies (float32) under this name.
ROPE_INV_FREQ = "codescaler.rope.inv_freq"


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype {dtype} is not supported; use one of {', '.join(DTYPES)}")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)} or a torch.dtype")
    return getattr(torch, dtype)


def default_dtype(device: str) -> tuple[str, str]:
    """The default dtype on ``device`` and why, decided from what the device declares (never timed, so
    every run on one machine makes the same choice): bfloat16 on CUDA (the checkpoints' own dtype) and
    on CPUs that declare native bfloat16 instructions, float32 elsewhere."""
    if device.startswith("cuda"):
        return "bfloat16", "CUDA device"
    from codescaler.device import cpu_bf16_flags

    flags = cpu_bf16_flags()
    if flags:
        return "bfloat16", f"CPU declares {'+'.join(flags)}"
    return "float32", "CPU declares no native bfloat16 (avx512_bf16, amx_bf16)"


def check_model_dir(path: Path) -> dict:
    """Reads ``config.json`` and fails with the reason when the folder is no one-label classifier."""
    if not path.is_dir():
        raise ModelLoadError(f"{path}: model folder does not exist")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ModelLoadError(f"{cfg_path}: missing; not a Hugging Face model folder")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{cfg_path}: unreadable ({exc})") from exc
    archs = cfg.get("architectures") or []
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelLoadError(
            f"{cfg_path}: architectures {archs} have no classification head; a reward model is a "
            "*ForSequenceClassification checkpoint"
        )
    labels = cfg.get("num_labels", len(cfg["id2label"]) if "id2label" in cfg else 1)
    if labels != 1:
        raise ModelLoadError(f"{cfg_path}: num_labels is {labels}; a reward model has exactly one label")
    return cfg


def load_state(path: Path, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by name, cast to ``dtype`` on ``device``: ``model.safetensors``, a sharded
    safetensors index, or ``pytorch_model.bin`` (read with ``weights_only``)."""
    import torch

    single, index, pickle = path / "model.safetensors", path / "model.safetensors.index.json", path / "pytorch_model.bin"
    try:
        if single.is_file():
            files = [single]
        elif index.is_file():
            files = [path / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        elif pickle.is_file():
            raw = torch.load(pickle, map_location="cpu", weights_only=True)
            return {k: v.to(device=device, dtype=dtype) for k, v in raw.items()}
        else:
            raise ModelLoadError(f"{path}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
        from safetensors.torch import load_file

        state = {}
        for f in files:
            for k, v in load_file(f, device="cpu").items():
                state[k] = v.to(device=device, dtype=dtype)
        return state
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot read the weights ({exc})") from exc


def load_state_file(file: Path, where: Path) -> dict:
    """The tensors of one safetensors file as stored (an engine's weights are already at its dtype)."""
    try:
        from safetensors.torch import load_file

        return load_file(file, device="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{file}: cannot read the weights ({exc})") from exc


def load_rope(cfg: dict, path: Path) -> Rope:
    """Hugging Face's rotary frequencies for this config: the default formula here, other static rope types
    (linear, llama3, yarn, ...) from transformers' own initialisers; position-dependent ones are refused."""
    from .decoder import Rope

    text = cfg.get("text_config", cfg)
    params = text.get("rope_parameters") or text.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    theta = float(params.get("rope_theta", text.get("rope_theta", 10000.0)))
    head_dim = int(text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"])
    if kind == "default":
        return Rope.default(head_dim, theta)
    if kind in ("dynamic", "longrope"):
        raise ModelLoadError(f"{path / 'config.json'}: rope type {kind!r} depends on the sequence length; not supported")
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if kind not in ROPE_INIT_FUNCTIONS:
        raise ModelLoadError(f"{path / 'config.json'}: rope type {kind!r} is unknown to this transformers")
    inv_freq, scaling = ROPE_INIT_FUNCTIONS[kind](AutoConfig.from_pretrained(path), "cpu")
    return Rope(inv_freq.float(), float(scaling))


def default_prefix_cache_mb() -> int:
    """1/16 of this machine's physical memory, at most 2048 MB."""
    import os

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return max(1, min(2048, total // 16 >> 20))


class TorchBackend:
    """The :class:`~codescaler.backends.base.Backend` of Hugging Face folders and aoti engines."""

    name = "torch"
    # The planner hands it units (a prefix and the answers continuing it) packed into one row.
    packs = True

    def __init__(self, path: str | Path, *, dtype: str | torch.dtype | None = None, device: str | None = None,
                 compile: str = "auto", prefix_cache_mb: int | None = None):
        """A Hugging Face model folder, its blocks compiled once per machine (``compile="auto"``) or eager;
        a question cache of ``prefix_cache_mb`` (None: the default size, 0: none)."""
        import torch

        path = Path(path)
        cfg = check_model_dir(path)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        reason = "asked for"
        if dtype is None:
            dtype, reason = default_dtype(str(device))
            reason = "default: " + reason
        tdtype = torch_dtype(dtype)
        self._build(path, cfg, load_state(path, tdtype, torch.device(device)), str(tdtype).removeprefix("torch."),
                    torch.device(device), compile=compile, package=None, prefix_cache_mb=prefix_cache_mb)
        self.dtype_reason = reason

    @classmethod
    def from_engine(cls, engine: EngineDir, *, prefix_cache_mb: int | None = None) -> "TorchBackend":
        """An engine directory exported with ``--format aoti``: weights at the engine's dtype, the rotary
        table recorded at export (older engines: derived from the config) and the compiled package it
        carries; nothing is compiled."""
        import torch

        from .aoti import WEIGHTS

        from .decoder import Rope

        self = cls.__new__(cls)
        m = engine.manifest
        state = load_state_file(engine.path / WEIGHTS, engine.path)
        inv_freq = state.pop(ROPE_INV_FREQ, None)
        rope = None if inv_freq is None else Rope(inv_freq, float(m["rope"]["scaling"]))
        self._build(engine.path, m["config"], state, m["dtype"], torch.device("cpu"), compile="auto",
                    package=engine.path / m["package"], rope=rope, prefix_cache_mb=prefix_cache_mb,
                    tile=m.get("row_tile"))
        self.dtype_reason = "fixed at export"
        return self

    def _build(self, path: Path, cfg: dict, state: dict, dtype: str, device: torch.device, *, compile: str,
               package: Path | None, rope: Rope | None = None, prefix_cache_mb: int | None = None,
               tile: int | None = None) -> None:
        """``tile``: the engine's recorded row tile; for a model folder, its cached package's choice."""
        from .decoder import ROW_TILE, Arch, PackedDecoder, PostAttention, PreAttention, PrefixCache

        self.device = str(device)
        self.dtype = dtype
        arch = Arch.from_config(cfg, dtype, source=str(path / "config.json"))
        if "score.weight" not in state:
            raise ModelLoadError(f"{path}: the weights have no score head (score.weight missing)")
        if state["score.weight"].shape[0] != 1:
            raise ModelLoadError(f"{path}: the score head has {state['score.weight'].shape[0]} outputs; expected 1")
        text = cfg.get("text_config", cfg)
        prefix = "model." if "model.embed_tokens.weight" in state else ""

        def take(names: Sequence[str], i: int | None = None) -> list[torch.Tensor]:
            keys = [f"{prefix}{n}" if i is None else f"{prefix}layers.{i}.{n}" for n in names]
            missing = [k for k in keys if k not in state]
            if missing:
                raise ModelLoadError(f"{path}: the weights lack {', '.join(missing)}")
            return [state[k] for k in keys]

        pre, post = PreAttention(arch), PostAttention(arch)
        self.compiled = "eager"
        self.kernels = None  # the compiled package's measured kernel choice (aoti.KernelChoice)
        if compile != "off" and device.type == "cpu":
            from . import aoti

            if package is None:
                package = aoti.cached_package(arch)
            if package.with_name(aoti.KERNELS).is_file():  # engines exported before it have only row_tile
                self.kernels = aoti.read_choice(package)
                tile = tile or self.kernels.row_tile
            pre, post = aoti.load_package(package)
            self.compiled = f"AOTInductor ({package}), {tile}-token tiles"
        tile = tile or ROW_TILE
        embed, norm = take(["embed_tokens.weight", "norm.weight"])
        mb = default_prefix_cache_mb() if prefix_cache_mb is None else prefix_cache_mb
        if rope is None:
            rope = load_rope(cfg, path)
        self.decoder = PackedDecoder(
            arch, embed=embed, norm=norm, score=state["score.weight"], rope=rope, pre=pre, post=post,
            layers=[(take(arch.pre_names(), i), take(arch.post_names(), i)) for i in range(int(text["num_hidden_layers"]))],
            prefix_cache=PrefixCache(mb << 20) if mb else None, tile=tile,
        )
        self.arch = arch
        self.pad_id = text.get("pad_token_id", cfg.get("pad_token_id"))

    @property
    def invariant(self) -> bool:
        """True unless a benchmark switched the decoder's batch invariance off to measure its cost."""
        return self.decoder.invariant

    @property
    def row_tile(self) -> int:
        """Tokens per call of the decoder blocks (recorded in the package or engine; see ``decoder``)."""
        return self.decoder.tile

    @property
    def prefix_cache(self) -> PrefixCache | None:
        return self.decoder.prefix_cache

    def score(self, units: Sequence[Unit]) -> list[float]:
        """Raw scores of every answer of ``units`` (one packed pass), in order."""
        return self.decoder.scores(units).double().cpu().tolist()
