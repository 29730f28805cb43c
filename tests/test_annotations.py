"""Typed public signatures: every function and method of the installed package's source annotates its
parameters and its return type, so an editor, mypy or a reader sees what each call takes and gives.

The source folders are the wheel's (pyproject.toml's [tool.scikit-build.wheel.packages]). Nested functions
and private helpers count too: a closure's callers are the code around it, which reads it the same way.
``*args``/``**kwargs`` count as well: an unannotated ``**options`` hides what a caller may pass (``Any`` is
fine where the values really are of any type). The rule is mypy's ``--disallow-untyped-defs
--disallow-incomplete-defs``: ``self``/``cls`` need no annotation, nor does the return of an ``__init__``
with an annotated parameter (it is None). Triton kernels are exempt: Triton reads a kernel's annotations as
argument types (``H: int`` compiles H as int32), not as Python hints.
"""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _source_files() -> list[Path]:
    """Every .py file the wheel installs, read from the checkout."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["scikit-build"]["wheel"]["packages"]
    return sorted({path for folder in packages.values() for path in (ROOT / folder).rglob("*.py")})


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, FunctionNode]]:
    """(qualified name, node) of every function in ``tree``, methods and nested functions included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _is_triton_kernel(node: FunctionNode) -> bool:
    return any(ast.unparse(d).startswith(("triton.", "tl.")) for d in node.decorator_list)


def _missing(node: FunctionNode) -> list[str]:
    """The parameters of ``node`` without an annotation (``self``/``cls`` as the first one exempt), and
    ``return`` when the return type is missing (implied for an ``__init__`` with an annotated parameter)."""
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    exempt = positional[0].arg if positional and positional[0].arg in ("self", "cls") else None
    missing = [p.arg for p in (*positional, *a.kwonlyargs) if p.annotation is None and p.arg != exempt]
    missing += [f"{stars}{p.arg}" for stars, p in (("*", a.vararg), ("**", a.kwarg)) if p and p.annotation is None]
    params = [p for p in (*positional, *a.kwonlyargs, a.vararg, a.kwarg) if p is not None and p.arg != exempt]
    init_typed = node.name == "__init__" and any(p.annotation is not None for p in params)
    if node.returns is None and not init_typed:
        missing.append("return")
    return missing


def test_every_function_annotates_its_parameters_and_return():
    files = _source_files()
    assert any(p.match("python/codescaler/model.py") for p in files) and any(p.match("kernels/*.py") for p in files)
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in _functions(tree):
            missing = [] if _is_triton_kernel(node) else _missing(node)
            if missing:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}:{name}: {', '.join(missing)}")
    assert offenders == [], f"{len(offenders)} functions lack annotations:\n" + "\n".join(offenders)


def test_the_checker_names_what_is_missing():
    tree = ast.parse("class C:\n    def m(self, a, b: int, *rest, key=None, **kw) -> int: ...\n"
                     "    def ok(self, a: int) -> None:\n        def inner(x): ...\n"
                     "    def __init__(self, a: int): ...\n"
                     "class D:\n    def __init__(self): ...\n")
    found = {name: _missing(node) for name, node in _functions(tree)}
    assert found == {"C.m": ["a", "key", "*rest", "**kw"], "C.ok": [], "C.ok.<locals>.inner": ["x", "return"],
                     "C.__init__": [], "D.__init__": ["return"]}


@pytest.mark.parametrize("package", ["codescaler", "codescaler.serve", "codescaler.integrations"])
def test_all_names_what_the_package_has(package: str):
    """``from package import *`` works: every name in ``__all__`` is there (imported lazily or not)."""
    if package == "codescaler.serve":
        pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
