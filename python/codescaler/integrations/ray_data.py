"""Offline scoring on Ray Data: ``codescaler score --ray``.

Ray Data reads the input (JSONL or Parquet: a file, a folder or a glob), a pool of actors that each load
the model once scores it (``map_batches`` with an ``ActorPoolStrategy``, one ``RewardModel.score`` call
per batch, so the planner shares each question across the batch), and the rows stream back in input order
to one output file (JSONL or Parquet) on the machine that runs the command, with the input's fields plus
``reward``, ``raw_score``, ``status``, ``truncated`` and ``error``. Every input row gives exactly one output
row: a malformed one becomes an ``input_error`` row, and an actor that dies is restarted by Ray and its
batch retried (``max_restarts``/``max_task_retries``); the count is checked before the output is kept.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

# pyarrow and ray are imported inside the functions that use them: `codescaler --help` and every
# `codescaler score` import this module (add_ray_arguments, wanted), and they are an optional extra; so is
# codescaler.tiny (tempfile, base64), needed only to resolve --model tiny.
from .. import options as opts
from ..errors import CodeScalerError, InputError
from ..model import RewardModel, lone_surrogate
from ..records import (INTERRUPTED, ScoreSummary, dumps, input_error, interrupted_summary, parse_line,
                       replaced_on_success)

if TYPE_CHECKING:
    import argparse
    from types import ModuleType  # the ``ray`` module, imported by _import_ray

    import pyarrow as pa
    from ray.data import Dataset

JSONL, PARQUET = "jsonl", "parquet"
EXTENSIONS = {".jsonl": JSONL, ".ndjson": JSONL, ".json": JSONL, ".parquet": PARQUET, ".pq": PARQUET}
RESULTS = ("reward", "raw_score", "status", "truncated", "error")
# Rows per actor call, i.e. per model.score call: enough for the planner to fill its micro-batches and
# share a GRPO group's question (a group cut by a batch boundary runs its question twice), few enough
# that a retried batch costs little and both actors get work on a small file.
BATCH_ROWS = 256


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Ray (many processes or machines; needs the 'ray' extra)")
    g.add_argument("--ray", action="store_true",
                   help="score on Ray Data with a pool of actors, each loading the model once; the input may "
                   "also be Parquet, a folder or a glob, the output .parquet, and the output keeps every input "
                   "field")
    g.add_argument("--address", default=None,
                   help="Ray cluster to join: 'auto' (the one this machine belongs to), HOST:PORT or "
                   "ray://HOST:10001 (default: $RAY_ADDRESS, else a local Ray instance for this run)")
    g.add_argument("--actors", type=int, default=None,
                   help="scoring actors, each with its own copy of the model and --threads CPUs "
                   "(default: one per node)")


def _format(path: str) -> str:
    return EXTENSIONS.get(os.path.splitext(path)[1].lower(), JSONL)


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def wanted(args: argparse.Namespace) -> bool:
    """Whether ``codescaler score`` runs on Ray; what only Ray can do, asked without ``--ray``, fails."""
    if args.ray:
        return True
    for flag in ("address", "actors"):
        if getattr(args, flag) is not None:
            raise InputError(f"--{flag} needs --ray")
    if args.input != "-" and (os.path.isdir(args.input) or _format(args.input) == PARQUET
                              or (_is_glob(args.input) and not os.path.exists(args.input))):
        raise InputError(f"{args.input}: a folder, a glob or Parquet input needs --ray (without it, score "
                         "reads one JSONL file)")
    if args.output != "-" and _format(args.output) == PARQUET:
        raise InputError(f"{args.output}: Parquet output needs --ray")
    return False


FILE, ROW = "__codescaler_file", "__codescaler_row"  # each row's input file (index) and line or row (from 1)


@dataclass(frozen=True)
class Inputs:
    """The input files in the order their rows are scored and written, their total row count, and the
    chunks Ray reads them in: (file index, first line or row number, start, stop, rows), where start and
    stop are byte offsets in a JSONL file and row indices in a Parquet file."""

    format: str
    paths: list[str]
    rows: int
    chunks: list[tuple[int, int, int, int, int]]


def _jsonl_chunks(index: int, path: str, rows_per_chunk: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Byte ranges of ``rows_per_chunk`` lines each (a line ends at a newline byte, as when iterating a
    binary file, so line numbers match ``codescaler score``)."""
    line, start, at, count, last = 1, 0, 0, 0, b"\n"
    with open(path, "rb") as f:
        while data := f.read(1 << 24):
            pos = 0
            while (nl := data.find(b"\n", pos)) >= 0:
                pos = nl + 1
                count += 1
                if count == rows_per_chunk:
                    yield index, line, start, at + pos, count
                    line, start, count = line + count, at + pos, 0
            at += len(data)
            last = data[-1:]
    if at > start:  # the last lines, the very last perhaps without a newline
        yield index, line, start, at, count + (last != b"\n")


def _parquet_chunks(index: int, path: str, rows_per_chunk: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Row ranges that never span two row groups; a large row group is cut into at most 16 ranges (each
    range decodes its whole row group once)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    first = 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        size = max(rows_per_chunk, -(-n // 16))
        for a in range(0, n, size):
            b = min(n, a + size)
            yield index, first + a + 1, first + a, first + b, b - a
        first += n


def resolve_inputs(path: str, rows_per_chunk: int = BATCH_ROWS) -> Inputs:
    """The files ``path`` names (a file, a folder searched recursively, or a glob), sorted, of one format,
    cut into chunks of about ``rows_per_chunk`` rows."""
    if path == "-":
        raise InputError("--ray reads files, not stdin: give --input a file, a folder or a glob")
    if os.path.isdir(path):
        found = sorted(p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                       if os.path.isfile(p) and os.path.splitext(p)[1].lower() in EXTENSIONS
                       and not os.path.basename(p).startswith((".", "_")))
        if not found:
            raise InputError(f"{path}: the folder holds no {', '.join(EXTENSIONS)} file")
    elif os.path.isfile(path):
        found = [path]
    elif _is_glob(path):
        found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not found:
            raise InputError(f"{path}: no file matches")
    else:
        raise InputError(f"{path}: no such file or folder")
    kinds = {_format(p) for p in found}
    if len(kinds) > 1:
        raise InputError(f"{path}: holds both JSONL and Parquet files; score them separately")
    kind = kinds.pop()
    chunks = []
    for i, p in enumerate(found):
        try:
            chunks += (_parquet_chunks if kind == PARQUET else _jsonl_chunks)(i, p, rows_per_chunk)
        except OSError as exc:
            raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from exc
        except Exception as exc:  # pyarrow's ArrowInvalid for a file that is not Parquet
            raise InputError(f"{p}: not a readable Parquet file ({exc})") from exc
    return Inputs(kind, [os.path.abspath(p) for p in found], sum(c[-1] for c in chunks), chunks)


# ----------------------------------------------------------------------------------------------- actors

def _read_chunks(batch: pa.Table) -> pa.Table:
    """Chunks (see :class:`Inputs`) -> their rows plus ``FILE`` and ``ROW`` columns. A JSONL row is its
    line's bytes (``_raw``), parsed in the actor, so a bad line becomes an error row, never a failed read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for fmt, path, index, first, start, stop in zip(*(batch.column(c).to_pylist() for c in
                                                      ("format", "path", "file", "first", "start", "stop"))):
        if fmt == PARQUET:
            pf, at = pq.ParquetFile(path), 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if at <= start < at + n:
                    table = pf.read_row_group(g).slice(start - at, stop - start)
                    break
                at += n
        else:
            with open(path, "rb") as f:
                f.seek(start)
                lines = f.read(stop - start).split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            table = pa.table({"_raw": pa.array(lines, pa.binary())})
        n = table.num_rows
        table = table.append_column(FILE, pa.array([index] * n, pa.int32()))
        tables.append(table.append_column(ROW, pa.array(range(first, first + n), pa.int64())))
    return pa.concat_tables(tables)


def _result_types() -> dict[str, pa.DataType]:
    """The Arrow types of the result columns."""
    import pyarrow as pa

    return {"reward": pa.float64(), "raw_score": pa.float64(), "status": pa.string(), "truncated": pa.bool_(),
            "error": pa.string()}


def _result_columns(results: list[dict[str, Any]]) -> dict[str, pa.Array]:
    import pyarrow as pa

    types = _result_types()
    return {k: pa.array([r.get(k) for r in results], types[k]) for k in RESULTS}


class Scorer:
    """A Ray Data actor: loads the model once, then scores one batch of rows per call (one
    ``RewardModel.score`` call, so rows of one question share its forward pass)."""

    def __init__(self, model: str, load: dict[str, Any], per_call: dict[str, Any], fmt: str,
                 paths: list[str] | None) -> None:
        self.model = RewardModel.from_pretrained(model, **load)
        self.per_call, self.fmt, self.paths = per_call, fmt, paths

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self._jsonl(batch) if self.fmt == JSONL else self._parquet(batch)

    def _where(self, batch: pa.Table) -> list[str]:
        """Each row's place for error messages: "line N" / "row N", after the file when there are several."""
        unit = "line" if self.fmt == JSONL else "row"
        files, rows = batch.column(FILE).to_pylist(), batch.column(ROW).to_pylist()
        return [f"{self.paths[f]}: {unit} {n}" if self.paths else f"{unit} {n}" for f, n in zip(files, rows)]

    def _results(self, pairs: list[tuple[str, str] | None], errors: list[str | None]) -> list[dict[str, Any]]:
        """One result per row: the model's for rows with a pair, an ``input_error`` for the others."""
        todo = [p for p in pairs if p is not None]
        got = iter(self.model.score([q for q, _ in todo], [r for _, r in todo], **self.per_call) if todo else ())
        out = []
        for pair, err in zip(pairs, errors):
            out.append(input_error(err) if pair is None else next(got).as_dict())
        return out

    def _jsonl(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        parsed = [parse_line(n, raw) for n, raw in zip(batch.column(ROW).to_pylist(),
                                                       batch.column("_raw").to_pylist())]
        errors = [err if err is None or not self.paths else f"{self.paths[f]}: {err}"
                  for f, (_rec, err) in zip(batch.column(FILE).to_pylist(), parsed)]
        results = self._results([(rec["question"], rec["response"]) if err is None else None
                                 for rec, err in parsed], errors)
        rows = []
        for (rec, _err), res in zip(parsed, results):
            fields = {k: v for k, v in rec.items() if k not in RESULTS} if isinstance(rec, dict) else {"id": None}
            rows.append(dumps({**fields, **{k: v for k, v in res.items() if v is not None or k != "error"}}))
        return pa.table({FILE: batch.column(FILE), ROW: batch.column(ROW), "_row": pa.array(rows, pa.string()),
                         **_result_columns(results)})

    def _parquet(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        columns = {}
        for name in ("question", "response"):
            kind = batch.schema.field(name).type if name in batch.column_names else None
            if kind is None:
                columns[name] = (None, "missing")
            elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
                columns[name] = (batch.column(name).to_pylist(), "null")
            else:
                columns[name] = (None, f"a column of type {kind}")
        pairs, errors = [], []
        for i, where in enumerate(self._where(batch)):
            bad = next((f"{where}: field {name!r} must be a string ({why})" for name, (values, why) in columns.items()
                        if values is None or values[i] is None), None)
            pairs.append(None if bad else (columns["question"][0][i], columns["response"][0][i]))
            errors.append(bad)
        table = batch.drop_columns([c for c in RESULTS if c in batch.column_names])
        for name, column in _result_columns(self._results(pairs, errors)).items():
            table = table.append_column(name, column)
        return table


# ---------------------------------------------------------------------------------------------- driver

def _import_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise InputError(f"--ray needs Ray Data ({exc.name or exc} is not installed): "
                         "pip install 'codescaler[ray]'") from None
    return ray


def start(address: str | None) -> tuple[ModuleType, bool]:
    """Connect to the cluster at ``address`` ($RAY_ADDRESS when None), or start a local Ray instance.
    Returns ``ray`` and whether this call initialised it (and so should shut it down)."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    if address is None and not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a throw-away local instance reports nothing
    try:
        ray.init(address=address, include_dashboard=False)
    except ConnectionError as exc:
        raise InputError(f"--address {address or os.environ.get('RAY_ADDRESS')}: cannot join the Ray cluster "
                         f"({exc})") from None
    return ray, True


def pool_shape(ray: ModuleType, actors: int | None, threads: int | None) -> tuple[int, int]:
    """(actors, CPUs per actor): one actor per node by default, each with as many CPUs as the smallest
    node shares out among the actors, unless ``threads`` says."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes] or [1]
    actors = actors or len(nodes) or 1
    if actors < 1:
        raise InputError(f"--actors must be a positive integer, got {actors}")
    return actors, threads or max(1, min(min(cpus), sum(cpus) // actors))


def scored_dataset(ray: ModuleType, inputs: Inputs, model: str, load: dict[str, Any], per_call: dict[str, Any],
                   actors: int, cpus: int) -> Dataset:
    """The Ray Dataset of ``inputs`` scored by ``actors`` actors of ``cpus`` CPUs each, in input order."""
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    chunks = [{"format": inputs.format, "path": inputs.paths[i], "file": i, "first": first, "start": start,
               "stop": stop} for i, first, start, stop, _rows in inputs.chunks]
    # One block per chunk, so every actor gets work from the first file on; Ray Data's own readers give one
    # block per file (or row group), and its JSON reader fails a whole file on one malformed line. Reading
    # asks for no CPU: the actors hold the CPUs, and a read waiting for one of them would wait for ever.
    ds = ray.data.from_items(chunks, override_num_blocks=len(chunks))
    ds = ds.map_batches(_read_chunks, batch_size=1, batch_format="pyarrow", num_cpus=0)
    return ds.map_batches(
        Scorer, batch_size=BATCH_ROWS, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus, fn_constructor_kwargs=dict(model=model, load={**load, "threads": cpus}, per_call=per_call,
                                                  fmt=inputs.format,
                                                  paths=inputs.paths if len(inputs.paths) > 1 else None),
        # A dead actor is restarted and the batch it held is run again (Ray Data's defaults, stated here).
        max_restarts=-1, max_task_retries=-1)


# A Parquet file has one type per column, fixed before its first row is written; JSON rows and Parquet
# files need not agree, so the output's schema is built from every row (JSONL input: the rows wait in a
# spool file until the last one is read) or from every input file's schema (Parquet input). A field's
# common type, when its values differ in type between rows or files: integers and floats together are
# float64 if every integer is exact in a float64 (|i| <= 2**53, JSON input); integer columns of different
# widths are int64 (Parquet input); anything else that differs (e.g. ids that are strings on some rows and
# integers on others) is a string column holding strings as they are and other values as their JSON text
# (7 -> "7", {"k": 1} -> '{"k": 1}'), as is a value Parquet cannot hold (an integer past int64, an empty
# object, text that is not valid Unicode).
EXACT_INT = 2 ** 53
SPOOL_ROWS = 4096  # rows per Parquet write when the spool is read back


def _as_text(value: object) -> str | None:
    """A value of a string column of mixed types: strings as they are, other values as JSON text."""
    if value is None or (isinstance(value, str) and lone_surrogate(value) is None):
        return value
    return dumps(value)


class _JsonFields:
    """The input fields of JSON rows, in order of first appearance, and what their values have been."""

    def __init__(self) -> None:
        self.kinds: dict[str, set[str]] = {}
        self.nested: dict[str, set[pa.DataType]] = {}  # Arrow types of the object and list values, batch by batch
        self.text: set[str] = set()  # fields that can only be a string column of JSON text

    def add(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa

        nested: dict[str, list[Any]] = {}
        for row in rows:
            for name, value in row.items():
                kinds = self.kinds.setdefault(name, set())
                if value is None:
                    continue
                if isinstance(value, bool):
                    kinds.add("bool")
                elif isinstance(value, int):
                    kinds.add("int" if -EXACT_INT <= value <= EXACT_INT else
                              "bigint" if -2 ** 63 <= value < 2 ** 63 else "text")
                elif isinstance(value, float):
                    kinds.add("float")
                elif isinstance(value, str):
                    kinds.add("str")
                else:
                    kinds.add("nested")
                    nested.setdefault(name, []).append(value)
        for name, values in nested.items():
            try:
                self.nested.setdefault(name, set()).add(pa.array(values).type)
            except Exception:  # noqa: BLE001 - pyarrow's ArrowInvalid/TypeError: no one Arrow type holds them
                self.text.add(name)

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        fields = [pa.field(name, self._type(name)) for name in self.kinds]
        return pa.schema(fields + [pa.field(k, t) for k, t in _result_types().items()])

    def _type(self, name: str) -> pa.DataType:
        import pyarrow as pa

        kinds = self.kinds[name]
        if name in self.text or "text" in kinds:
            return pa.string()
        if not kinds:
            return pa.null()
        if kinds <= {"int", "bigint"}:
            return pa.int64()
        if kinds <= {"int", "float"}:
            return pa.float64()
        if len(kinds) > 1:
            return pa.string()
        kind = next(iter(kinds))
        if kind != "nested":
            return {"bool": pa.bool_(), "str": pa.string()}[kind]
        import pyarrow.parquet as pq

        try:
            unified = pa.unify_schemas([pa.schema([pa.field(name, t)]) for t in self.nested[name]],
                                       promote_options="permissive").field(name).type
            pq.ParquetWriter(pa.BufferOutputStream(), pa.schema([pa.field(name, unified)])).close()
        except Exception:  # noqa: BLE001 - no common nested type, or one Parquet cannot store (an empty struct)
            self.text.add(name)
            return pa.string()
        return unified


class _NotThisType(Exception):
    """A column's values do not fit the type the schema gave it; the field becomes a string column."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _column(name: str, values: list[Any], kind: pa.DataType, text: bool) -> pa.Array:
    import pyarrow as pa

    try:
        return pa.array([_as_text(v) for v in values] if text else values, kind)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors, a str that cannot be UTF-8
        if text:
            raise
        raise _NotThisType(name) from exc


def _parquet_schema(paths: list[str]) -> tuple[pa.Schema, set[str]]:
    """The output schema for Parquet input files: every column of every file, in order of first
    appearance, at its common type (see above), then the result columns; and the names of the columns
    that hold JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types: dict[str, list[pa.DataType]] = {}
    for p in paths:
        for field in pq.read_schema(p):
            if field.name not in RESULTS:
                types.setdefault(field.name, []).append(field.type)
    fields, text = [], set()
    for name, seen in types.items():
        known = {t for t in seen if not pa.types.is_null(t)}
        if len(known) <= 1:
            kind = known.pop() if known else pa.null()
        elif all(pa.types.is_integer(t) and t != pa.uint64() for t in known):
            kind = pa.int64()
        else:
            kind = pa.string()
            text.add(name)
        fields.append(pa.field(name, kind))
    return pa.schema(fields + [pa.field(k, t) for k, t in _result_types().items()]), text


class _Writer:
    """One output file, JSONL or Parquet, written under the name ``name`` (``PATH.part`` from
    :func:`codescaler.records.replaced_on_success`, which renames it when complete, or "-" for stdout).
    JSONL rows bound for Parquet wait in an unnamed spool file beside it until the schema is known."""

    def __init__(self, path: str, name: str, parquet_inputs: list[str] | None = None):
        self.path, self.format = path, _format(path)
        self.tmp = None if name == "-" else name
        self._text = self._spool = self._fields = None
        self._schema, self._text_columns = (_parquet_schema(parquet_inputs) if parquet_inputs and self.format == PARQUET
                                       else (None, set()))
        self._parquet = None
        try:
            self._text = (sys.stdout if self.tmp is None else
                          open(self.tmp, "w", encoding="utf-8") if self.format == JSONL else None)
            if self.format == PARQUET:
                open(self.tmp, "wb").close()
        except OSError as exc:
            raise InputError(f"{path}: cannot write ({exc.strerror})") from exc

    def write(self, table: pa.Table, in_format: str) -> None:
        if self.format == JSONL:
            if in_format == JSONL:
                lines = table.column("_row").to_pylist()
            else:
                lines = [dumps(r, default=str) for r in table.to_pylist()]
            self._text.write("".join(line + "\n" for line in lines))
        elif in_format == JSONL:
            import tempfile

            if self._spool is None:
                self._spool = tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(self.path)))
                self._fields = _JsonFields()
            lines = table.column("_row").to_pylist()
            self._fields.add([{k: v for k, v in json.loads(line).items() if k not in RESULTS} for line in lines])
            self._spool.write("".join(line + "\n" for line in lines).encode("utf-8"))
        else:
            self._write_parquet_input(table)

    def _write_parquet_input(self, table: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.tmp, self._schema)
        columns = []
        for field in self._schema:
            if field.name not in table.column_names:
                columns.append(pa.nulls(table.num_rows, field.type))
            elif field.name in self._text_columns:
                columns.append(_column(field.name, table.column(field.name).to_pylist(), pa.string(), True))
            else:
                columns.append(table.column(field.name).cast(field.type))
        self._parquet.write_table(pa.Table.from_arrays(columns, schema=self._schema))

    def _write_spool(self) -> None:
        """The spooled JSON rows as Parquet, with the schema of every row; a field whose values do not fit
        the type their kinds gave it becomes a string column, and the file is written again."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        text: set[str] = set(self._fields.text)
        while True:
            schema = self._fields.schema()
            schema = pa.schema([pa.field(f.name, pa.string()) if f.name in text else f for f in schema])
            try:
                with pq.ParquetWriter(self.tmp, schema) as out:
                    self._spool.seek(0)
                    while lines := [line for _, line in zip(range(SPOOL_ROWS), self._spool)]:
                        rows = [json.loads(line) for line in lines]
                        out.write_table(pa.Table.from_arrays(
                            [_column(f.name, [r.get(f.name) for r in rows], f.type, f.name in text) for f in schema],
                            schema=schema))
                return
            except _NotThisType as exc:
                text.add(exc.name)
                self._fields.text.add(exc.name)

    def close(self, keep: bool) -> None:
        """Close the file, completed (the spooled rows written, an empty Parquet file given its schema) when
        ``keep``; renaming or removing it is the caller's (``replaced_on_success``)."""
        try:
            if self._text is not None and self._text is not sys.stdout:
                self._text.close()
            if self._parquet is not None:
                self._parquet.close()
            if keep and self._spool is not None:
                self._write_spool()
            if self.tmp is None:
                sys.stdout.flush()
            elif keep and self.format == PARQUET and self._parquet is None and self._spool is None:
                import pyarrow as pa  # no rows: still a valid, empty file
                import pyarrow.parquet as pq

                pq.write_table(pa.table(_result_columns([])) if self._schema is None else
                               self._schema.empty_table(), self.tmp)
        finally:
            if self._spool is not None:
                self._spool.close()


def write_scored(tables: Iterable[pa.Table], inputs: Inputs, output: str, *,
                 on_rows: Callable[[int], None] | None = None) -> ScoreSummary:
    """Write the scored tables, in order, to ``output``; check that every input row came back once.
    Returns a :class:`codescaler.records.ScoreSummary`. ``on_rows(n)`` is called after each written table."""
    summary = ScoreSummary()
    # (file, line or row) of every input row, in order: each output row must be the next one
    expected = ((f, n) for f, first, _start, _stop, rows in inputs.chunks for n in range(first, first + rows))
    with replaced_on_success(output) if output != "-" else contextlib.nullcontext("-") as name:
        writer = _Writer(output, name, inputs.paths if inputs.format == PARQUET else None)
        done = False
        try:
            for table in tables:
                for got in zip(table.column(FILE).to_pylist(), table.column(ROW).to_pylist()):
                    want = next(expected, None)
                    if got != want:
                        raise CodeScalerError(f"Ray returned row {got[1]} of {inputs.paths[got[0]]} where row "
                                              f"{want and want[1]} of {want and inputs.paths[want[0]]} belongs; "
                                              "the output was not kept")
                writer.write(table.drop_columns([FILE, ROW]), inputs.format)
                for status, truncated in zip(table.column("status").to_pylist(),
                                             table.column("truncated").to_pylist()):
                    summary.add(status, truncated)
                if on_rows is not None:
                    on_rows(summary.lines)
            if summary.lines != inputs.rows:
                raise CodeScalerError(f"Ray returned {summary.lines} rows for {inputs.rows} input rows; the "
                                      "output was not kept")
            done = True
        finally:
            writer.close(keep=done)
    return summary


def score_with_ray(model: str, input: str, output: str, *, actors: int | None = None, address: str | None = None,
                   options: dict[str, Any] | None = None, on_rows: Callable[[int], None] | None = None
                   ) -> tuple[ScoreSummary, dict[str, int | float]]:
    """Score ``input`` (JSONL or Parquet: file, folder or glob) into ``output`` on Ray; returns
    ``(summary, info)`` where ``info`` holds ``actors``, ``cpus_per_actor``, ``ray_start_s``."""
    from ..tiny import resolve_model

    _import_ray()  # a missing extra is the first thing said
    per_call, load = opts.split(options or {})
    inputs = resolve_inputs(input)
    if output != "-" and any(os.path.exists(output) and os.path.samefile(p, output) for p in inputs.paths):
        raise InputError(f"{output}: is also an input; writing it would destroy the input")
    if not os.path.exists(resolve_model(model)):  # each actor resolves it again, on its own node
        raise InputError(f"{model}: no such model folder or engine directory")
    started = time.perf_counter()
    ray, owned = start(address)
    ray_start = time.perf_counter() - started
    try:
        n, cpus = pool_shape(ray, actors, load.get("threads"))
        if inputs.rows == 0:
            tables = []
        else:
            tables = scored_dataset(ray, inputs, model, load, per_call, n, cpus).iter_batches(
                batch_size=None, batch_format="pyarrow")
        try:
            summary = write_scored(tables, inputs, output, on_rows=on_rows)
        except Exception as exc:
            raise _unwrapped(exc) from None
    finally:
        if owned:
            ray.shutdown()
    return summary, {"actors": n, "cpus_per_actor": cpus, "ray_start_s": ray_start}


def _unwrapped(exc: BaseException) -> BaseException:
    """A codescaler error raised in an actor (e.g. a model folder that does not load), as itself."""
    seen = exc
    while seen is not None:
        if isinstance(seen, CodeScalerError):
            return seen
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return exc


def cmd_score(args: argparse.Namespace) -> int:
    """``codescaler score --ray``: the options as for ``score``, then the run and its summary on stderr."""
    started = time.perf_counter()
    where = "stdout" if args.output == "-" else args.output
    written = [0]
    try:
        summary, info = score_with_ray(args.model, args.input, args.output, actors=args.actors,
                                       address=args.address, options=opts.from_args(args),
                                       on_rows=lambda n: written.__setitem__(0, n))
    except KeyboardInterrupt:
        print(interrupted_summary(written[0], "row", where), file=sys.stderr)
        return INTERRUPTED
    took = time.perf_counter() - started
    parts = [f"{summary.ok} ok", f"{summary.no_code} without valid code", f"{summary.errors} input error(s)",
             f"{summary.truncated} truncated"]
    print(f"codescaler: {summary.lines} row(s) in {took:.1f} s (Ray start {info['ray_start_s']:.1f} s) on "
          f"{info['actors']} Ray actor(s) x {info['cpus_per_actor']} CPU -> {where}: {', '.join(parts)}",
          file=sys.stderr)
    if summary.errors:
        print("codescaler: rows with status input_error carry an 'error' naming the row and the problem",
              file=sys.stderr)
    return 0
