"""Reading evaluation files (a JSON list or JSON Lines) and the provenance every result carries."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from codescaler.errors import InputError
from codescaler.records import objects, replaced_on_success
from codescaler.version import __version__

if TYPE_CHECKING:
    from codescaler.model import RewardModel


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_records(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for every object in ``path``: a JSON list (where = "item N", from 0) or JSON Lines
    (where = "line N", from 1, read as ``codescaler score`` reads its input; blank lines are skipped).
    Anything else is an :class:`InputError` naming the file and the line or item."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    body = raw.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not body:
        raise InputError(f"{path}: the file is empty")
    if not body.startswith(b"["):
        yield from ((f"line {n}", rec) for n, rec in objects(path, io.BytesIO(raw)))
        return
    try:
        items = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start + 1})") from None
    except ValueError as exc:
        raise InputError(f"{path}: invalid JSON ({exc})") from None
    for i, rec in enumerate(items):
        if not isinstance(rec, dict):
            raise InputError(f"{path}: item {i}: expected a JSON object, got {type(rec).__name__}")
        yield f"item {i}", rec


def field(path: str | os.PathLike, where: str, rec: dict[str, Any], name: str, kind: type[str] | type[list], *,
          count: int | None = None) -> Any:
    """``rec[name]``, checked: a ``kind`` (for lists: of strings, ``count`` of them when given)."""
    value = rec.get(name)
    if not isinstance(value, kind):
        got = "missing" if name not in rec else type(value).__name__
        raise InputError(f"{path}: {where}: field {name!r} must be a {'list' if kind is list else 'string'} ({got})")
    if kind is list:
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise InputError(f"{path}: {where}: {name}[{i}] must be a string, got {type(v).__name__}")
        if count is not None and len(value) != count:
            raise InputError(f"{path}: {where}: field {name!r} must hold {count} responses, got {len(value)}")
    return value


def provenance(model: RewardModel, data_path: str | os.PathLike | None, data_label: str) -> dict[str, Any]:
    """What a result was computed with: model path, backend and dtype, package version, data file hash."""
    return {
        "model": {"path": model.source, "backend": model.backend_name, "dtype": model.dtype},
        "version": __version__,
        "data": {"path": data_label, "sha256": None if data_path is None else sha256_file(data_path)},
    }


def write_json(path: str | os.PathLike, obj: dict[str, Any]) -> None:
    """``obj`` as JSON at ``path``, written under ``PATH.part`` and renamed when complete."""
    with replaced_on_success(os.fspath(path)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
