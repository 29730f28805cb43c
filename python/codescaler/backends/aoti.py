"""Compiled decoder blocks: ``PreAttention`` and ``PostAttention`` exported with ``torch.export`` (dynamic
token count) and compiled by AOTInductor into one ``blocks.pt2`` package (models ``pre`` and ``post``).

The blocks take their weights as inputs, so a package depends only on the layer shape and dtype (an
``Arch``), the torch version and the CPU: one compile serves every layer and every checkpoint of that
shape. ``codescaler export --format aoti`` writes the package into an engine directory; for a model
folder the torch backend builds it once into the cache (``cached_package``) and loads it from then on.
Loading a package compiles nothing: it maps a shared library.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..device import cpu_flags
from ..errors import ModelLoadError
from ..tiny import cache_dir as codescaler_cache
from .decoder import BLOCKS_VERSION, Arch, PostAttention, PreAttention

PACKAGE = "blocks.pt2"
WEIGHTS = "weights.safetensors"
MIN_TOKENS = 2  # torch.export specialises a dimension of size 0 or 1 (the decoder always calls with ROW_TILE rows)


def _examples(arch: Arch, n: int = 64) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    dt = getattr(torch, arch.dtype)
    g = torch.Generator().manual_seed(0)

    def w(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.02).to(dt)

    hidden = w(n, arch.hidden)
    cos, sin = w(n, arch.head_dim), w(n, arch.head_dim)
    qd, kvd = arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim
    shapes = {"input_layernorm.weight": (arch.hidden,), "self_attn.q_proj.weight": (qd, arch.hidden),
              "self_attn.k_proj.weight": (kvd, arch.hidden), "self_attn.v_proj.weight": (kvd, arch.hidden),
              "self_attn.q_proj.bias": (qd,), "self_attn.k_proj.bias": (kvd,), "self_attn.v_proj.bias": (kvd,),
              "self_attn.q_norm.weight": (arch.head_dim,), "self_attn.k_norm.weight": (arch.head_dim,),
              "self_attn.o_proj.weight": (arch.hidden, qd), "post_attention_layernorm.weight": (arch.hidden,),
              "mlp.gate_proj.weight": (arch.intermediate, arch.hidden),
              "mlp.up_proj.weight": (arch.intermediate, arch.hidden),
              "mlp.down_proj.weight": (arch.hidden, arch.intermediate)}
    pre = (hidden, cos, sin, *[w(*shapes[k]) for k in arch.pre_names()])
    oa, ob = w(n, arch.heads, arch.head_dim), w(n, arch.heads, arch.head_dim)
    la, lb = torch.randn(1, arch.heads, n, generator=g), torch.randn(1, arch.heads, n, generator=g)
    post = (hidden, oa, la, ob, lb, *[w(*shapes[k]) for k in arch.post_names()])
    return pre, post


def build_package(arch: Arch, out: Path) -> Path:
    """Export and compile both blocks for ``arch`` into the package ``out`` (written atomically)."""
    # inside the function: torch._inductor and torch.export take seconds to import; only a compile needs them
    from torch._inductor import aot_compile
    from torch._inductor.package import package_aoti
    from torch.export import Dim, export

    tokens = Dim("tokens", min=MIN_TOKENS, max=1 << 22)
    pre_args, post_args = _examples(arch)
    pre_shapes = ({0: tokens}, {0: tokens}, {0: tokens}, (None,) * (len(pre_args) - 3))  # *weights
    post_shapes = ({0: tokens}, {0: tokens}, {2: tokens}, {0: tokens}, {2: tokens}) + (None,) * (len(post_args) - 5)
    files = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export's deprecation chatter, not the user's concern
        for name, module, args, shapes in (("pre", PreAttention(arch), pre_args, pre_shapes),
                                           ("post", PostAttention(arch), post_args, post_shapes)):
            program = export(module, args, dynamic_shapes=shapes)
            files[name] = aot_compile(program.module(), args, options={"aot_inductor.package": True})
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".partial-", suffix=".pt2")
    os.close(fd)
    try:
        package_aoti(tmp, files)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


class CompiledBlock:
    """One model of a package, called with the same tensors as the block it was compiled from."""

    def __init__(self, path: Path, name: str):
        self._loader = torch._C._aoti.AOTIModelPackageLoader(str(path), name, False, 1, -1)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self._loader.run(list(tensors))
        return out[0] if len(out) == 1 else tuple(out)


def load_package(path: Path) -> tuple[CompiledBlock, CompiledBlock]:
    return CompiledBlock(path, "pre"), CompiledBlock(path, "post")


def machine_key() -> str:
    """What a compiled package is valid for besides its ``Arch``: torch build, CPU features and the
    version of the blocks' code."""
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma", "f16c", "sse4")))
    return json.dumps({"torch": torch.__version__, "machine": platform.machine(), "flags": flags,
                       "blocks": BLOCKS_VERSION}, sort_keys=True)


def package_key(arch: Arch) -> str:
    return hashlib.sha256((arch.key() + machine_key()).encode()).hexdigest()[:20]


def cache_dir() -> Path:
    return codescaler_cache() / "aoti"


def cached_package(arch: Arch, *, notify: Callable[[str], None] | None = None) -> Path:
    """The cached package for ``arch`` on this machine, built first when there is none. Concurrent
    processes wait for one build (a file lock) instead of compiling the same package twice."""
    folder = cache_dir() / package_key(arch)
    out = folder / PACKAGE
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arch.json").write_text(arch.key() + "\n" + machine_key() + "\n")
    say = notify or (lambda msg: print(msg, file=sys.stderr, flush=True))
    with open(folder / "build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"codescaler: waiting for another process that is compiling the decoder blocks for this "
                f"machine ({arch.dtype}, hidden {arch.hidden}) into {folder}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():  # another process built it while this one waited
            return out
        say(f"codescaler: compiling the decoder blocks for this machine ({arch.dtype}, hidden {arch.hidden}); "
            f"once, cached in {folder}")
        start = time.perf_counter()
        try:
            build_package(arch, out)
        except Exception as exc:
            raise ModelLoadError(f"compiling the decoder blocks failed ({type(exc).__name__}: {exc}); "
                                 "compile='off' runs them eagerly") from exc
        say(f"codescaler: compiled in {time.perf_counter() - start:.0f} s")
    return out
