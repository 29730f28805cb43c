"""The C++ scorer as an installed CMake package: `cmake --install` to a prefix, a service outside the source
tree that writes find_package(codescaler) and links codescaler::scorer gets Python's reward bit for bit, the
library exports the public API and nothing else, and no runpath (build tree or installed) holds an empty
entry (the working directory) or a directory that does not exist.

It reuses tests/test_cpp_scorer.py's build directory (build/cpp, or $CODESCALER_CPP_BUILD).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codescaler import RewardModel
from codescaler.engine.export import export_aoti
from codescaler.tiny import resolve_model

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("CODESCALER_CPP_BUILD") or ROOT / "build" / "cpp")

CONSUMER_CMAKE = """cmake_minimum_required(VERSION 3.18)
project(reward_service LANGUAGES CXX)
find_package(codescaler 0.1 CONFIG REQUIRED)
add_executable(reward_service main.cpp)
target_link_libraries(reward_service PRIVATE codescaler::scorer)
"""

# Public headers only: the C++ API and the C ABI, both from the installed include directory.
CONSUMER_MAIN = r"""#include <codescaler/codescaler.h>
#include <codescaler/scorer.hpp>

#include <cstdio>
#include <memory>

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  std::unique_ptr<codescaler::Scorer> scorer;
  codescaler::ScorerStatus s = codescaler::Scorer::open(argv[1], codescaler::ScorerOptions{}, &scorer);
  codescaler::Reward r;
  if (s.ok()) s = scorer->score(argv[2], argv[3], &r);
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", codescaler::scorer_code_name(s.code), s.message.c_str());
    return 1;
  }
  std::printf("%s %s %.17g\n", codescaler_status_name(CODESCALER_OK), codescaler::status_name(r.status), r.reward);
  return 0;
}
"""

# What the public headers declare CODESCALER_API (demangled, up to the parameter list).
PUBLIC_CXX = re.compile(r"codescaler::(Scorer::|SyntaxChecker::|Tokenizer::|json::|(scorer_code_name|tokenizer_code_name"
                        r"|status_name|policy_from_name|strip_range|extract|extract_batch|scan_codescaler|scan_tolerant"
                        r"|language_from_tag|language_name)\()")
C_ABI = {"codescaler_options_init", "codescaler_open", "codescaler_close", "codescaler_score_batch",
         "codescaler_best_of_n", "codescaler_describe", "codescaler_status_name", "codescaler_extraction_name"}


def _run(*cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """The scorer built (tests/test_cpp_scorer.py's build directory and options) and installed to a prefix."""
    if shutil.which("cmake") is None:
        pytest.fail("cmake is needed to build the C++ scorer (pip install cmake)")
    _run("cmake", "-S", ROOT, "-B", BUILD, "-DCODESCALER_BUILD_TESTS=ON", f"-DPython3_EXECUTABLE={sys.executable}")
    _run("cmake", "--build", BUILD, "-j2", "--target", "codescaler")
    out = tmp_path_factory.mktemp("prefix")
    _run("cmake", "--install", BUILD, "--prefix", out)
    return out


def _runpath(library: Path) -> list[str]:
    dynamic = _run("readelf", "-d", library).stdout
    lines = [line for line in dynamic.splitlines() if "(RUNPATH)" in line or "(RPATH)" in line]
    assert len(lines) == 1 and "(RUNPATH)" in lines[0], lines
    return lines[0].split("[", 1)[1].rstrip("]").split(":")


def _soname(library: Path) -> str:
    dynamic = _run("readelf", "-d", library).stdout
    return next(line for line in dynamic.splitlines() if "(SONAME)" in line).split("[", 1)[1].rstrip("]")


def test_installed_layout(prefix):
    lib = prefix / "lib" / "libcodescaler.so"
    soname = _soname(lib)
    assert re.fullmatch(r"libcodescaler\.so\.0\.\d+", soname), soname
    assert (lib.parent / soname).is_symlink() and lib.resolve().name.startswith(soname + ".")
    headers = {p.name for p in (prefix / "include" / "codescaler").iterdir()}
    assert {"codescaler.h", "scorer.hpp", "export.h"} <= headers
    # Every installed header includes only the standard library and other installed headers.
    for h in (prefix / "include" / "codescaler").iterdir():
        for inc in re.findall(r'#include ["<]([^">]+)[">]', h.read_text()):
            assert "/" not in inc or (prefix / "include" / inc).is_file(), (h.name, inc)
    assert (prefix / "lib" / "cmake" / "codescaler" / "codescalerConfig.cmake").is_file()


def test_examples_and_bindings_include_public_headers_only():
    """What a user copies (the examples) and what the wheel's production module is built from (csrc/bindings)
    name only installed headers, and the bindings' own header beside them; private code (csrc/scorer,
    csrc/extract, ...) is reached by the library and by tests/ only."""
    sources = [*(ROOT / "csrc" / "examples").iterdir(), *(ROOT / "csrc" / "bindings").iterdir()]
    assert len(sources) >= 5
    for source in sources:
        for quoted, inc in re.findall(r'#include (["<])([^">]+)[">]', source.read_text()):
            public = inc.startswith("codescaler/") and ".." not in inc and (ROOT / "csrc" / "include" / inc).is_file()
            own = quoted == '"' and source.parent.name == "bindings" and "/" not in inc and (source.parent / inc).is_file()
            system = quoted == "<" and not inc.startswith("codescaler/")  # the standard library, nanobind
            assert public or own or system, (source.name, inc)


def test_runpaths_hold_no_empty_or_missing_entry(prefix):
    """Build tree: torch/lib relative to the library, then absolute; installed: the absolute torch/lib alone."""
    torch_lib = Path(__import__("torch").__file__).parent / "lib"
    built = _runpath(BUILD / "libcodescaler.so")
    installed = _runpath(prefix / "lib" / "libcodescaler.so")
    for origin, entries in ((BUILD, built), (prefix / "lib", installed)):
        assert all(entries), entries  # an empty entry is the working directory
        assert all(Path(e.replace("$ORIGIN", str(origin))).is_dir() for e in entries), entries
    assert built[0].startswith("$ORIGIN/") and Path(os.path.normpath(BUILD / built[0][8:])) == torch_lib
    assert installed == [str(torch_lib.resolve())]


def test_only_the_public_api_is_exported(prefix):
    names = _run("nm", "-D", "--defined-only", "-C", prefix / "lib" / "libcodescaler.so").stdout.splitlines()
    symbols = [line.split(" ", 2)[2] for line in names if line.count(" ") >= 2]
    c_abi = {s for s in symbols if s.startswith("codescaler_")}
    cxx = [s for s in symbols if not s.startswith("codescaler_")]
    print(f"{len(c_abi)} C functions, {len(cxx)} C++ symbols exported")
    assert c_abi == C_ABI
    assert not [s for s in cxx if not PUBLIC_CXX.match(s)], [s for s in cxx if not PUBLIC_CXX.match(s)][:20]
    assert any(s.startswith("codescaler::Scorer::open(") for s in cxx)


def test_out_of_tree_consumer_scores_as_python(prefix, tmp_path):
    src = tmp_path / "service"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(CONSUMER_CMAKE)
    (src / "main.cpp").write_text(CONSUMER_MAIN)
    _run("cmake", "-S", src, "-B", src / "build", f"-DCMAKE_PREFIX_PATH={prefix}")
    _run("cmake", "--build", src / "build")
    binary = src / "build" / "reward_service"
    assert str(prefix / "lib" / "libcodescaler.so.") in _run("ldd", binary).stdout

    engine = tmp_path / "engine"
    export_aoti(resolve_model("tiny"), engine, dtype="float32", max_length=384, log=lambda *_: None)
    question, response = "Write add(a, b).", "Sure:\n\n```python\ndef add(a, b):\n    return a + b\n```"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
           "CODESCALER_CACHE": str(tmp_path / "cache")}
    got = _run(binary, engine, question, response, env=env, timeout=600).stdout.split()
    want = RewardModel.from_pretrained(engine).score([question], [response])[0]
    assert got[:2] == ["ok", want.status] and float(got[2]) == want.reward > 0, (got, want)
