"""JSON Lines records of ``codescaler score``: reading input lines, writing output lines, the run's summary.

Shared by the entry points that read or write such files (the CLI, ``score --ray`` in
``codescaler.integrations.ray_data``, ``codescaler eval``), so none of them imports another.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .errors import InputError
from .model import lone_surrogate

INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT), as a shell reports it
INPUT_ERROR = "input_error"  # the status of a line or row that cannot be scored


def _decode(n: int, raw: bytes) -> tuple[str | None, str | None]:
    """Line ``n``'s text, or an error naming what is wrong with its bytes."""
    if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"line {n}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})"


def parse_object(n: int, raw: bytes) -> tuple[dict | None, str | None]:
    """Line ``n`` of a JSON Lines file (its bytes, as iterating a binary file gives them): (object, None),
    or (None, an error naming the line and the problem: not UTF-8, blank, not JSON, not an object).
    Shared by ``score`` (:func:`parse_line`) and the data files of ``codescaler eval``."""
    line, err = _decode(n, raw)
    if err is not None:
        return None, err
    if not line.strip():
        return None, f"line {n}: blank line"
    try:
        rec = json.loads(line)
    except ValueError as exc:
        return None, f"line {n}: invalid JSON ({exc})"
    except RecursionError:  # Python's json gives up near 1,000 levels; the line is refused, not the run
        return None, f"line {n}: invalid JSON (nesting too deep)"
    if not isinstance(rec, dict):
        return None, f"line {n}: expected a JSON object, got {type(rec).__name__}"
    return rec, None


def parse_line(n: int, raw: bytes) -> tuple[dict | None, str | None]:
    """Input line ``n`` (its bytes): (record or None, None) when it can be scored, else (record or None,
    an error naming the line and the problem). Shared by ``score`` and ``score --ray``."""
    rec, err = parse_object(n, raw)
    if err is not None:
        return None, err
    # Text that is not valid Unicode is never scored nor echoed, as in the API, the server and the C++
    # example: an error row carries the id only when it is valid Unicode (else "id": null).
    bad_id = "id" in rec and lone_surrogate(json.dumps(rec["id"], ensure_ascii=False)) is not None
    echo = None if bad_id else rec
    for field in ("question", "response"):
        value = rec.get(field)
        if not isinstance(value, str):
            got = "missing" if field not in rec else type(value).__name__
            return echo, f"line {n}: field {field!r} must be a string ({got})"
    for field in ("question", "response"):
        at = lone_surrogate(rec[field])
        if at is not None:
            return echo, f"line {n}: field {field!r} is not valid Unicode (lone surrogate at character {at})"
    if bad_id:
        return None, f"line {n}: field 'id' is not valid Unicode (a lone surrogate)"
    return rec, None


def objects(path: str | os.PathLike, lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every line of the JSON Lines file at ``path`` but blank ones, each read
    as :func:`parse_object` reads it; the first bad line is an :class:`InputError` naming the file and the
    line. For data files that are refused whole when a line is bad (``eval``'s, ``train-rm``'s), where
    ``score`` answers each line."""
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        rec, err = parse_object(n, raw)
        if err is not None:
            raise InputError(f"{os.fspath(path)}: {err}")
        yield n, rec


def records(lines: Iterator[bytes]) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, record or None, error or None) for every input line, blank ones included."""
    for n, raw in enumerate(lines, 1):
        yield n, *parse_line(n, raw)


def input_error(err: str) -> dict[str, Any]:
    """The result fields of a line or row that cannot be scored (a scored one's are ``Reward.as_dict()``)."""
    return {"reward": None, "raw_score": None, "status": INPUT_ERROR, "error": err}


def dumps(obj: dict[str, Any], default: Callable[[Any], Any] | None = None) -> str:
    """``obj`` as one JSON line's text, UTF-8 where it can be; ``default`` as for ``json.dumps`` (e.g.
    ``str`` for the dates and decimals of a Parquet row)."""
    text = json.dumps(obj, ensure_ascii=False, default=default)
    # a lone surrogate (from a JSON escape) cannot be written as UTF-8: keep it escaped
    return text if lone_surrogate(text) is None else json.dumps(obj, default=default)


@contextlib.contextmanager
def replaced_on_success(path: str) -> Iterator[str]:
    """The name to write ``path``'s content under: ``PATH.part``, renamed to ``path`` when the block ends
    normally and removed when it ends by an error or an interrupt, so a file at ``path`` is always whole
    (and one that was there before stays as it was until then). A path that exists and is not a regular
    file (``/dev/null``, a pipe) is written directly."""
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder; name the file to write")
    if os.path.exists(path) and not os.path.isfile(path):
        yield path
        return
    tmp = f"{path}.part"
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    os.replace(tmp, path)


@dataclass
class ScoreSummary:
    lines: int = 0
    ok: int = 0
    no_code: int = 0
    errors: int = 0
    truncated: int = 0
    model: str | None = None  # RewardModel.describe(), or None when no line needed the model
    reward_cache: str | None = None  # RewardCache.summary() after the run, or None without a cache

    def add(self, status: str, truncated: bool | None) -> None:
        """Count one written line or row by its result's status."""
        self.lines += 1
        self.ok += status == "ok"
        self.errors += status == INPUT_ERROR
        self.no_code += status not in ("ok", INPUT_ERROR)
        self.truncated += bool(truncated)


def interrupted_summary(done: int, unit: str, where: str, total: int | None = None) -> str:
    """The line ``score`` prints after Ctrl-C: how far it got and what it left at ``where``."""
    of = f" of {total}" if total is not None else ""
    if where == "stdout":
        return f"codescaler: interrupted after {done}{of} {unit}(s), written to stdout"
    return f"codescaler: interrupted after {done}{of} {unit}(s) were scored; {where} was not written"
