"""The engine directory: ``manifest.json``, the tokenizer files and the model: an ONNX graph
(``model.onnx``) or, for ``"format": "aoti"``, the compiled decoder blocks (``blocks.pt2``) and the
weights (``weights.safetensors``).

``EngineDir.open`` validates a directory completely before any session is created, and every failure
names the file at fault.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPH = "model.onnx"
INPUTS = ("input_ids", "position_ids", "segment_ids", "prefix_ids", "pool_index")
OUTPUTS = ("scores",)
REQUIRED_KEYS = ("format_version", "architecture", "dtype", "pad_id", "max_length", "chat_template",
                 "pooling", "files", "tokenizer")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_hash(model_dir: Path) -> str:
    return sha256_file(model_dir / "config.json")


@dataclass(frozen=True)
class EngineDir:
    path: Path
    manifest: dict

    @property
    def graph(self) -> Path:
        return self.path / GRAPH

    @property
    def kind(self) -> str:
        """``"onnx"`` (an ONNX graph, TensorRT plan optional) or ``"aoti"`` (compiled blocks + weights)."""
        return self.manifest.get("format", "onnx")

    def check_machine(self) -> None:
        """A compiled package runs only where it was compiled for: the same torch build and CPU features
        (a package using instructions this CPU lacks would crash, not fail)."""
        from .aoti import machine_key  # imports torch: only for a compiled engine

        here = json.loads(machine_key())
        there = self.manifest.get("machine")
        if there != here:
            diff = [f"{k}: engine {there.get(k) if isinstance(there, dict) else None!r}, here {v!r}"
                    for k, v in here.items() if not isinstance(there, dict) or there.get(k) != v]
            raise ModelLoadError(f"{self.path / MANIFEST}: compiled for another machine ({'; '.join(diff)}); "
                                 "re-export it here with codescaler export --format aoti")

    @property
    def max_length(self) -> int:
        return int(self.manifest["max_length"])

    @staticmethod
    def is_engine(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @classmethod
    def open(cls, path: str | Path) -> "EngineDir":
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise ModelLoadError(f"{mpath}: missing; not an engine directory")
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{mpath}: unreadable ({exc})") from exc
        if not isinstance(manifest, dict):
            raise ModelLoadError(f"{mpath}: expected a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise ModelLoadError(f"{mpath}: missing field(s) {', '.join(missing)}")
        version = manifest["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelLoadError(
                f"{mpath}: format_version {version!r} is newer than this codescaler reads ({FORMAT_VERSION}); "
                "upgrade codescaler or re-export the engine"
            )
        for name, meta in manifest["files"].items():
            f = path / name
            if not f.is_file():
                raise ModelLoadError(f"{f}: missing (listed in {MANIFEST})")
            size = f.stat().st_size
            if size != meta["size"]:
                raise ModelLoadError(f"{f}: {size} bytes, the manifest says {meta['size']}; truncated or replaced")
        return cls(path, manifest)

    def check_tokenizer(self, tokenizer: Any) -> None:
        """The tokenizer in the directory must be the one the engine was exported with."""
        want = self.manifest["tokenizer"]
        where = self.path / "tokenizer.json"
        got_pad = tokenizer.pad_token_id
        if want.get("pad_id") != got_pad:
            raise ModelLoadError(f"{where}: pad id {got_pad} does not match the manifest's {want.get('pad_id')}")
        if want.get("size") != len(tokenizer):
            raise ModelLoadError(f"{where}: {len(tokenizer)} tokens, the manifest says {want.get('size')}")
        for text, ids in want.get("probes", {}).items():
            got = tokenizer(text, add_special_tokens=True)["input_ids"]
            if list(got) != ids:
                raise ModelLoadError(f"{where}: encodes {text!r} as {got}, the manifest says {ids}")
