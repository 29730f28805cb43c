"""Compiled decoder blocks: ``PreAttention`` and ``PostAttention`` exported with ``torch.export`` (dynamic
token count) and compiled by AOTInductor into one ``blocks.pt2`` package (models ``pre`` and ``post``).

The blocks take their weights as inputs, so a package depends only on the layer shape and dtype (an
``Arch``), the torch version and the CPU: one compile serves every layer and every checkpoint of that
shape. ``codescaler export --format aoti`` writes the package into an engine directory; for a model
folder the torch backend builds it once into the cache (``cached_package``) and loads it from then on.
Loading a package compiles nothing: it maps a shared library.

The build also chooses, by measurement on the machine it is built for, how many tokens each call of the
blocks covers (the row tile, see ``decoder``): it times one layer's blocks at every candidate tile and
records the choice and the timings in ``kernels.json`` beside the package (an engine carries it, and its
manifest's ``row_tile``). A package keeps its choice from then on, so every run on the machine gives the
same bits; the choice never changes with load after the build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch

from ..device import cpu_flags
from ..errors import ModelLoadError
from ..tiny import cache_dir as codescaler_cache
from .decoder import BLOCKS_VERSION, ROW_TILE, Arch, PostAttention, PreAttention

PACKAGE = "blocks.pt2"
KERNELS = "kernels.json"  # the measured kernel choice, beside the package
TILES = (128, 256, 512, 1024)  # the row tiles a build times
# The pass size the tile choice is made for: the planner's default max_batch_tokens. A pass wastes half a
# tile of padding on average, so a larger tile must be that much faster per row to be chosen.
CHOICE_PASS_TOKENS = 8192
# A tile other than ROW_TILE is chosen only when it beats ROW_TILE by more than this: timings within the
# noise of a busy machine keep the default, so rebuilding on the same machine keeps the same choice.
CHOICE_MARGIN = 0.03
WEIGHTS = "weights.safetensors"
MIN_TOKENS = 2  # torch.export specialises a dimension of size 0 or 1 (the decoder calls with whole tiles)


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
    with _written_whole(out) as tmp:
        package_aoti(tmp, files)
    return out


@contextlib.contextmanager
def _written_whole(out: Path) -> Iterator[str]:
    """A temporary name beside ``out`` to write it under, renamed to ``out`` when the block ends normally
    and removed otherwise: a reader finds ``out`` whole or not at all."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".partial-", suffix=out.suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class CompiledBlock:
    """One model of a package, called with the same tensors as the block it was compiled from."""

    def __init__(self, path: Path, name: str):
        self._loader = torch._C._aoti.AOTIModelPackageLoader(str(path), name, False, 1, -1)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self._loader.run(list(tensors))
        return out[0] if len(out) == 1 else tuple(out)


def load_package(path: Path) -> tuple[CompiledBlock, CompiledBlock]:
    return CompiledBlock(path, "pre"), CompiledBlock(path, "post")


@dataclass(frozen=True)
class KernelChoice:
    """What a build chose by measurement, and the measurements: microseconds per row of one layer's two
    blocks at each candidate tile (best of the timed rounds), and the padding-adjusted cost compared."""

    row_tile: int
    us_per_row: dict[int, float]
    cost: dict[int, float]
    rule: str

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping, where: Path) -> "KernelChoice":
        try:
            tile = int(data["row_tile"])
            if not 2 <= tile <= 1 << 16:
                raise ValueError(f"row_tile {tile} outside 2..65536")
            return cls(tile, {int(k): float(v) for k, v in data.get("us_per_row", {}).items()},
                       {int(k): float(v) for k, v in data.get("cost", {}).items()}, str(data.get("rule", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{where}: not a kernel choice ({exc})") from exc


def choose_row_tile(us_per_row: Mapping[int, float], *, pass_tokens: int = CHOICE_PASS_TOKENS,
                    margin: float = CHOICE_MARGIN) -> KernelChoice:
    """The row tile to run, from measured microseconds per row at each tile: the cost of a tile is its
    time per row times the padding a pass of ``pass_tokens`` carries on average (half a tile); ROW_TILE
    is kept unless a tile costs ``margin`` less, and among the tiles that do, the cheapest is taken."""
    cost = {t: us * (1 + t / (2 * pass_tokens)) for t, us in sorted(us_per_row.items())}
    best = min(cost, key=lambda t: (cost[t], t))
    tile = ROW_TILE if ROW_TILE in cost and cost[ROW_TILE] <= cost[best] * (1 + margin) else best
    rule = (f"min over tiles of us/row x (1 + tile / {2 * pass_tokens}) (half a tile of padding per "
            f"{pass_tokens}-token pass); {ROW_TILE} unless another tile is {margin:.0%} cheaper")
    return KernelChoice(tile, dict(sorted(us_per_row.items())), cost, rule)


def measure_tiles(arch: Arch, pre: Callable, post: Callable, tiles: Sequence[int] = TILES, rows: int = 2048,
                  rounds: int = 3, max_rounds: int = 20, seconds: float = 0.5) -> dict[int, float]:
    """Microseconds per row of one layer's blocks (``pre`` then ``post``) over ``rows`` rows run in tiles
    of each size, the tiles timed round-robin (a burst of load falls on all alike), best round each: at
    least ``rounds`` rounds, more for small layers (up to ``max_rounds``, about ``seconds`` in all), whose
    millisecond rounds a single interruption would decide. Random inputs of ``arch``'s shapes: the time
    of a GEMM does not depend on the values."""
    pre_args, post_args = _examples(arch, rows)
    best = {t: float("inf") for t in tiles}

    def run(tile: int) -> None:
        for t in range(0, rows, tile):
            pre(*(a[t:t + tile] for a in pre_args[:3]), *pre_args[3:])
            post(*(a[t:t + tile] for a in post_args[:2]), post_args[2][:, :, t:t + tile].contiguous(),
                 post_args[3][t:t + tile], post_args[4][:, :, t:t + tile].contiguous(), *post_args[5:])

    with torch.inference_mode():
        start = time.perf_counter()
        for tile in tiles:  # warm-up: first calls at a new size allocate
            run(tile)
        warm = time.perf_counter() - start
        for _ in range(min(max_rounds, max(rounds, int(seconds / max(warm, 1e-6))))):
            for tile in tiles:
                start = time.perf_counter()
                run(tile)
                best[tile] = min(best[tile], time.perf_counter() - start)
    return {t: best[t] / (-(-rows // t) * t) * 1e6 for t in tiles}


def read_choice(package: Path) -> KernelChoice:
    """The kernel choice recorded beside ``package``."""
    path = package.with_name(KERNELS)
    try:
        return KernelChoice.from_json(json.loads(path.read_text()), path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc})") from exc


def _record_choice(arch: Arch, package: Path, say: Callable[[str], None], lead: str = "codescaler: ") -> KernelChoice:
    """Time the tiles on ``package``, write ``kernels.json`` beside it and say the choice after ``lead``."""
    pre, post = load_package(package)
    choice = choose_row_tile(measure_tiles(arch, pre, post))
    with _written_whole(package.with_name(KERNELS)) as tmp:
        Path(tmp).write_text(json.dumps(choice.as_json(), indent=2) + "\n")
    say(f"{lead}row tile {choice.row_tile} chosen by measurement ("
        + ", ".join(f"{t}: {us:.1f} us/row" for t, us in choice.us_per_row.items()) + ")")
    return choice


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
    """The cached package for ``arch`` on this machine, built first when there is none, with its kernel
    choice (``read_choice``) measured and recorded. Concurrent processes wait for one build (a file lock)
    instead of compiling the same package twice."""
    folder = cache_dir() / package_key(arch)
    out = folder / PACKAGE
    if out.is_file() and (folder / KERNELS).is_file():
        return out
    if out.is_file() and not os.access(folder, os.W_OK):
        return out  # cached read-only before kernel choices were recorded: it runs the default tile
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
        if out.is_file() and (folder / KERNELS).is_file():  # another process built it while this one waited
            return out
        if out.is_file():  # built before kernel choices were recorded: measure only
            _record_choice(arch, out, say)
            return out
        say(f"codescaler: compiling the decoder blocks for this machine ({arch.dtype}, hidden {arch.hidden}); "
            f"once, cached in {folder}")
        start = time.perf_counter()
        try:
            build_package(arch, out)
        except Exception as exc:
            raise ModelLoadError(f"compiling the decoder blocks failed ({type(exc).__name__}: {exc}); "
                                 "compile='off' runs them eagerly") from exc
        # one line for the build: a script that filters the compile's "codescaler: compil..." lines
        # from stderr filters this one too
        _record_choice(arch, out, say, lead=f"codescaler: compiled in {time.perf_counter() - start:.0f} s; ")
    return out
