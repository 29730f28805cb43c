"""Small things a reader trips on ([17/17]): the package's entry points and types, help that tells the
truth, tables that read the same on a terminal and in a pipe."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path

import torch

import codescaler
from codescaler import RewardModel
from codescaler import options as opts


def test_python_dash_m_codescaler_is_the_command():
    proc = subprocess.run([sys.executable, "-m", "codescaler", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"codescaler {codescaler.__version__}"
    proc = subprocess.run([sys.executable, "-m", "codescaler", "score", "--model", "/nonexistent/model",
                           "--input", "/nonexistent/in.jsonl", "--output", "-"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("codescaler: error: /nonexistent/in.jsonl")


def test_the_package_declares_its_types():
    assert (Path(codescaler.__file__).parent / "py.typed").is_file()


def test_from_pretrained_takes_exactly_the_option_table_as_typed_keywords():
    sig = inspect.signature(RewardModel.from_pretrained)
    hints = typing.get_type_hints(RewardModel.from_pretrained, localns={"torch": torch})
    assert not [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
    names = [n for n in sig.parameters if n not in ("path", "device", "providers")]
    assert sorted(names) == sorted(o.name for o in opts.OPTIONS)  # cannot drift from the table
    for o in opts.OPTIONS:
        p = sig.parameters[o.name]
        assert o.name in hints, o.name
        if o.name != "backend":
            assert p.default is None, o.name  # None: the option's default, so the table stays the one source
        args = typing.get_args(hints[o.name])
        literal = next((a for a in args if typing.get_origin(a) is typing.Literal), None)
        if hints[o.name] is not None and typing.get_origin(hints[o.name]) is typing.Literal:
            literal = hints[o.name]
        if o.choices is not None and not o.prefixes:
            assert literal is not None and typing.get_args(literal) == o.choices, o.name
        else:
            assert o.kind in args, (o.name, args)
