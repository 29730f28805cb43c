"""The knobs a user can turn, declared once.

``RewardModel.from_pretrained`` takes every option as a keyword argument; the ``per_call`` ones can also
be overridden per call (``score(..., policy="last")``) and per server request. The CLI builds its flags
from this table (``max_batch_tokens`` -> ``--max-batch-tokens``) and the server its request fields, so
the names cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .errors import InputError

if TYPE_CHECKING:
    import argparse

BACKENDS = ("auto", "torch", "onnx", "tensorrt")
DTYPES = ("float32", "bfloat16", "float16")
POLICIES = ("codescaler", "last", "best")
LANGUAGES = ("python", "cpp", "java", "javascript", "go", "rust")
TRUNCATIONS = ("right", "question")
COMPILES = ("auto", "off")
REWARD_CACHES = ("memory", "off")
URL_SCHEMES = ("redis://", "rediss://", "unix://")
# --model of every command that loads a model (score, demo, eval, serve)
MODEL_HELP = ("'tiny' (the embedded demo model: random weights, Qwen's real vocabulary), a Hugging Face "
              "reward-model folder (e.g. a downloaded LARK-Lab/CodeScaler-1.7B) or an engine directory from "
              "`codescaler export`")


@dataclass(frozen=True)
class Option:
    """One option: its API name, default, the type of its values and what it does."""

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    per_call: bool = False  # also accepted by score()/score_groups()/best_of_n() and server requests
    nullable: bool = False  # None is a value (meaning "choose for me")
    aliases: tuple[tuple[Any, Any], ...] = ()  # other accepted spellings of a choice, e.g. (True, "now")
    minimum: int = 1  # the least value of an int option
    prefixes: tuple[str, ...] = ()  # a str starting with one of these is accepted besides the choices (URLs)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` if it is valid for this option, else an :class:`InputError` naming the option."""
        if value is None and self.nullable:
            return None
        for alias, choice in self.aliases:
            if value is alias:
                return choice
        if self.kind is bool:
            if not isinstance(value, bool):
                raise InputError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
                what = "a positive integer" if self.minimum == 1 else f"an integer >= {self.minimum}"
                raise InputError(f"{self.name} must be {what}, got {value!r}")
            return value
        if isinstance(value, str) and self.prefixes and value.startswith(self.prefixes):
            return value
        if self.choices is not None and value not in self.choices:
            also = [p + "..." for p in self.prefixes]
            raise InputError(f"{self.name} {value!r} is not available; choose one of {', '.join([*self.choices, *also])}")
        return value


OPTIONS: tuple[Option, ...] = (
    Option("backend", str, "auto", "where the model runs: auto picks torch for a model folder and for an aoti "
           "engine directory, ONNX Runtime for an onnx one, TensorRT for one holding a plan when a GPU is "
           "present", BACKENDS),
    Option("dtype", str, None, "compute dtype; default bfloat16 on CUDA and on CPUs that declare native "
           "bfloat16 (avx512_bf16 or amx_bf16), float32 elsewhere; an engine's dtype is fixed at export",
           DTYPES, nullable=True),
    Option("max_length", int, None, "right-truncation length in tokens (default 4096, or the engine's)",
           nullable=True),
    Option("truncation", str, "right", "'right' cuts the conversation at max_length as upstream does; "
           "'question' shortens the question instead so the code is seen whole", TRUNCATIONS, per_call=True),
    Option("policy", str, "codescaler", "extraction policy: 'codescaler' (exactly one block, the published "
           "recipe), 'last' (last block of the language), 'best' (longest block that parses)", POLICIES,
           per_call=True),
    Option("language", str, "python", "language of the extracted program (validity by CPython for python, "
           "tree-sitter otherwise)", LANGUAGES, per_call=True),
    Option("score_empty", bool, False, "run the model on answers without valid code too, to fill raw_score "
           "(their reward stays 0.0)", per_call=True),
    Option("share_prefix", bool, True, "run a group's question once and score its answers as continuations"),
    Option("max_batch_tokens", int, 8192, "tokens per forward pass at most: on torch the tokens it runs (no "
           "padding; a question shared by several answers counts once), on ONNX Runtime and TensorRT batch "
           "size x longest sequence (padding included); one longer sequence runs alone"),
    Option("max_batch_size", int, 64, "sequences per forward pass at most"),
    Option("prefix_cache_mb", int, None, "memory for the question cache (keys/values of recent questions, "
           "per layer, kept across calls so a later answer to a cached question runs only its own tokens; "
           "torch backend); 0 turns it off (default: 1/16 of this machine's memory, at most 2048)",
           nullable=True, minimum=0),
    Option("threads", int, None, "CPU threads for the model and for extraction (default: the cores this "
           "process may use)", nullable=True),
    Option("compile", str, "auto", "decoder blocks compiled by AOTInductor (torch backend on CPU): 'auto' loads "
           "them from the cache, building them first if this machine has none for the model's layer shape "
           "and dtype (once, ~20-60 s); 'off' runs them eagerly (rewards differ from compiled ones by "
           "rounding in bfloat16)", COMPILES, aliases=((True, "auto"), (False, "off"))),
    Option("reward_cache", str, "memory", "exact reward cache (torch backend): a sequence scored once is not "
           "run again. 'memory' keeps raw scores in this process, 'redis://HOST:PORT/DB' in Redis shared by "
           "processes and replicas (a Redis outage costs speed, never a reward), 'off' none", REWARD_CACHES,
           prefixes=URL_SCHEMES),
    Option("reward_cache_entries", int, 1_000_000, "raw scores the in-process reward cache keeps, least "
           "recently used evicted first (~180 bytes each)"),
    Option("reward_cache_ttl", int, 7 * 24 * 3600, "seconds a raw score stays in a Redis reward cache; 0 keeps "
           "it until Redis evicts it (its maxmemory policy bounds the size)", minimum=0),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
PER_CALL: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.per_call)


def defaults() -> dict[str, Any]:
    return {o.name: o.default for o in OPTIONS}


def checked(values: Mapping[str, Any], *, names: Iterable[str] | None = None) -> dict[str, Any]:
    """``values`` validated against the table (unknown names are an error); only the names given."""
    allowed = BY_NAME if names is None else {n: BY_NAME[n] for n in names}
    out = {}
    for name, value in values.items():
        opt = allowed.get(name)
        if opt is None:
            raise InputError(f"unknown option {name!r}; known: {', '.join(allowed)}")
        out[name] = opt.check(value)
    return out


def split(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` checked against the table, None values left out, as (per-call options, load-time
    options): what a caller holding both passes to ``score`` and to ``from_pretrained``."""
    given = checked({k: v for k, v in values.items() if v is not None})
    return ({k: v for k, v in given.items() if k in PER_CALL},
            {k: v for k, v in given.items() if k not in PER_CALL})


def per_call(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Every per-call option: ``given``'s checked (None: not given, an unknown or load-time name: an
    :class:`InputError`), the others from ``defaults`` (a model's options)."""
    return {**{n: defaults[n] for n in PER_CALL},
            **checked({k: v for k, v in given.items() if v is not None}, names=PER_CALL)}


def add_arguments(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """Add one command-line flag per option (``max_batch_tokens`` -> ``--max-batch-tokens``); booleans
    get ``--x``/``--no-x``. Flags left unset keep the API's defaults."""
    import argparse

    for opt in OPTIONS if names is None else [BY_NAME[n] for n in names]:
        default = "" if opt.default is None else f" (default: {str(opt.default).lower() if opt.kind is bool else opt.default})"
        if opt.kind is bool:
            parser.add_argument(opt.flag, dest=opt.name, action=argparse.BooleanOptionalAction, default=None,
                                help=opt.help + default)
        else:
            choices = None if opt.prefixes else opt.choices  # checked by the table, URLs included
            parser.add_argument(opt.flag, dest=opt.name, type=opt.kind, choices=choices, default=None,
                                metavar=None if choices else opt.name.upper(), help=opt.help + default)


def from_args(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The options a parsed command line set explicitly (the rest keep the API's defaults)."""
    picked = OPTIONS if names is None else [BY_NAME[n] for n in names]
    return {o.name: getattr(args, o.name) for o in picked if getattr(args, o.name, None) is not None}
