"""The package's layering beyond what import-linter checks (its contracts are in pyproject.toml's
[tool.importlinter] and run by .ci/run as `lint-imports`): no private name crosses a package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# where each part of the package lives in a checkout (pyproject.toml's [tool.scikit-build.wheel.packages])
FOLDERS = {"codescaler": ROOT / "python" / "codescaler", "codescaler.engine": ROOT / "engine",
           "codescaler.training": ROOT / "training", "codescaler.kernels": ROOT / "kernels"}


def _modules():
    for prefix, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("").parts
            if prefix == "codescaler" and rel[0] in ("engine", "training", "kernels"):
                continue
            name = ".".join((prefix, *rel))
            is_package = rel[-1] == "__init__"
            yield (name.removesuffix(".__init__"), is_package, path)


def _package(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def test_no_private_name_crosses_a_package():
    packages = {module for module, is_package, _ in _modules() if is_package} | set(FOLDERS)
    crossings = []
    for module, is_package, path in _modules():
        here = _package(module, is_package)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if not source.startswith("codescaler"):
                continue
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not name.startswith("__"):
                    # `from package import _module` names a module of that package; `from module import _name`
                    # a name inside it: either way the private name belongs to `source`'s package.
                    owner = source if source in packages else source.rpartition(".")[0]
                    if owner != here:
                        crossings.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {source} import {name}")
    assert crossings == []
