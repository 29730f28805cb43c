"""The sandbox's verdict: HumanEval's own solutions pass, wrong ones fail, and no way of ending, patching or
talking out of the candidate's process turns a failing program into a passing one."""

from __future__ import annotations

import os
import time

import pytest

from codescaler.errors import CodeScalerError
from codescaler.eval import bon
from codescaler.training.sandbox import Limits, check_program, network_isolated

AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def he(humaneval) -> dict[str, dict]:
    return {p["task_id"]: p for p in humaneval}


def _check(p: dict, program: str, limits: Limits = Limits()):
    return check_program(program, p["test"], p["entry_point"], limits)


# HumanEval/32 and /38 call helpers the program defines (poly, encode_cyclic); /2 compares floats with abs.
@pytest.mark.parametrize("task", ["HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/32", "HumanEval/38",
                                  "HumanEval/107"])
def test_canonical_solutions_pass_and_wrong_ones_fail(he, task):
    p = he[task]
    good = _check(p, p["prompt"] + p["canonical_solution"])
    assert good.passed and good.status == "passed", good.detail
    bad = _check(p, p["prompt"] + "    return None\n")
    assert not bad.passed and bad.status == "failed"
    assert "<test>" in bad.detail  # the report points at the test's failing line


EXITS = ["import sys; sys.exit(0)", "exit()", "quit()", "import os; os._exit(0)", "raise SystemExit(0)",
         "raise KeyboardInterrupt", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
         "import atexit, os; atexit.register(os._exit, 0); raise SystemExit(0)"]


@pytest.mark.parametrize("cheat", EXITS)
def test_exiting_at_import_fails(he, cheat):
    p = he["HumanEval/0"]
    assert not _check(p, cheat + "\n").passed
    assert not _check(p, p["prompt"] + p["canonical_solution"] + cheat + "\n").passed  # right code, then exit


@pytest.mark.parametrize("cheat", EXITS)
def test_exiting_inside_the_function_fails(he, cheat):
    p = he["HumanEval/0"]
    verdict = _check(p, p["prompt"] + f"    {cheat}\n")
    assert not verdict.passed and verdict.status == "failed"


def test_an_exit_the_test_catches_still_fails():
    """A test that swallows everything would, in one process, let SystemExit or a dead process through."""
    test = "def check(candidate):\n    try:\n        candidate()\n    except BaseException:\n        pass\n"
    for body in ("raise SystemExit(0)", "import os; os._exit(0)", "raise KeyboardInterrupt"):
        assert not check_program(f"def f():\n    {body}\n", test, "f").passed, body
    assert check_program("def f():\n    raise ValueError('no')\n", test, "f").passed  # an ordinary exception


PRINTS = ["print('passed'); print('PASSED'); print('OK'); import sys; sys.stdout.flush(); sys.exit(0)",
          # every descriptor the process has, with success-looking text and protocol-looking frames
          "import os, json, struct\n"
          "for fd in range(256):\n"
          "    for text in (b'passed\\n', b'0\\n', json.dumps({'value': True}).encode()):\n"
          "        try:\n"
          "            os.write(fd, struct.pack('>I', len(text)) + text)\n"
          "            os.write(fd, text)\n"
          "        except OSError:\n"
          "            pass\n"
          "os._exit(0)",
          "import os; os.closerange(0, 1024)",
          "import os; os.closerange(0, 1024); os._exit(0)"]


@pytest.mark.parametrize("cheat", PRINTS)
def test_printing_writing_or_closing_descriptors_fails(he, cheat):
    p = he["HumanEval/0"]
    assert not _check(p, cheat + "\n").passed
    indented = "\n".join("    " + line for line in cheat.splitlines())
    assert not _check(p, p["prompt"] + indented + "\n").passed


@pytest.mark.parametrize("cheat", ["import os, signal; os.kill(os.getppid(), signal.SIGKILL)",
                                   "import os, signal; os.killpg(0, signal.SIGKILL)"])
def test_killing_the_judge_fails(he, cheat):
    """The candidate's parent is the judge and its process group the sandbox's own (never the test runner)."""
    p = he["HumanEval/0"]
    assert not _check(p, p["prompt"] + f"    {cheat}\n    return True\n").passed


def test_patching_builtins_or_faking_equality_fails(he):
    p = he["HumanEval/2"]  # assert abs(candidate(3.5) - 0.5) < 1e-6, ...
    patched = ("import builtins, math\nbuiltins.abs = lambda x: 0\nmath.isclose = lambda *a, **k: True\n"
               + p["prompt"] + "    return 0\n")
    assert not _check(p, patched).passed
    always = "class Yes(float):\n    pass\nclass Eq:\n    __eq__ = lambda s, o: True\n    __lt__ = lambda s, o: True\n"
    assert not _check(p, always + p["prompt"] + "    return Eq()\n").passed
    assert not _check(p, always + "def check(candidate):\n    pass\n" + p["prompt"] + "    return Eq()\n").passed
    assert _check(p, always + p["prompt"] + "    return Yes(number % 1.0)\n").passed  # a float subclass is a float


def test_the_test_is_not_in_the_candidates_memory():
    """The candidate searches its whole address space for a marker that only the test contains."""
    secret = os.urandom(8).hex()
    program = (
        "import re\n"
        "def search(prefix):\n"
        "    found, pattern = set(), re.compile(prefix.encode() + rb'-([0-9a-f]{16})')\n"
        "    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "        for line in maps:\n"
        "            span, perms = line.split()[:2]\n"
        "            if not perms.startswith('r'):\n"
        "                continue\n"
        "            start, end = (int(x, 16) for x in span.split('-'))\n"
        "            try:\n"
        "                mem.seek(start)\n"
        "                found.update(m.decode() for m in pattern.findall(mem.read(end - start)))\n"
        "            except (OSError, OverflowError, ValueError):\n"
        "                pass\n"
        "    return found\n")
    test = f"SECRET = 'EXPECTED-{secret}'\ndef check(candidate):\n    assert {secret!r} not in candidate('EXPECTED')\n"
    canary = check_program(program + f"HERE = 'EXPECTED-' + {secret!r}\n", test, "search", Limits(wall_s=30))
    assert not canary.passed  # the search works: it finds the marker when the program holds it
    verdict = check_program(program, test, "search", Limits(wall_s=30))
    assert verdict.passed, verdict.detail


def test_plain_data_crosses_both_ways_and_exceptions_keep_their_class():
    program = ("def f(x):\n"
               "    import math\n"
               "    return (x, {1: [2, (3,)], 'k': {4, 5}}, frozenset({6}), b'\\x00\\xff', 1 + 2j, 10 ** 40,\n"
               "            math.inf, -0.0, range(1, 9, 2), (i * i for i in range(3)), 'a\\ud800b')\n"
               "def g():\n"
               "    raise ValueError('bad input')\n"
               "class Mine(Exception):\n"
               "    pass\n"
               "def h():\n"
               "    raise Mine('mine')\n"
               "def adder(n):\n"
               "    return lambda m: n + m\n")
    test = ("import math\n"
            "def check(candidate):\n"
            "    x, d, fs, b, c, big, inf, z, r, it, s = candidate((1, 'two', None, True, 2.5))\n"
            "    assert x == (1, 'two', None, True, 2.5) and type(x) is tuple\n"
            "    assert d == {1: [2, (3,)], 'k': {4, 5}} and fs == frozenset({6}) and b == b'\\x00\\xff'\n"
            "    assert c == 1 + 2j and big == 10 ** 40 and inf == math.inf and math.copysign(1, z) == -1\n"
            "    assert r == range(1, 9, 2) and list(it) == [0, 1, 4] and s == 'a\\ud800b'\n"
            "    try:\n"
            "        g()\n"
            "        assert False\n"
            "    except ValueError as e:\n"
            "        assert str(e) == 'bad input'\n"
            "    try:\n"
            "        h()\n"
            "        assert False\n"
            "    except Exception as e:\n"
            "        assert 'Mine: mine' in str(e)\n"
            "    assert adder(2)(3) == 5\n")
    verdict = check_program(program, test, "f")
    assert verdict.passed, verdict.detail


def test_limits(he):
    p = he["HumanEval/0"]
    spin = _check(p, p["prompt"] + "    while True:\n        pass\n", Limits(wall_s=10, cpu_s=1))
    assert not spin.passed
    started = time.monotonic()
    sleep = _check(p, p["prompt"] + "    import time\n    time.sleep(60)\n", Limits(wall_s=1))
    assert sleep.status == "timeout" and not sleep.passed and time.monotonic() - started < 10
    hog = _check(p, p["prompt"] + "    x = bytearray(4 << 30)\n", Limits(memory_bytes=256 << 20))
    assert not hog.passed and "MemoryError" in hog.detail
    flood = _check(p, p["prompt"] + "    import os\n    while True:\n        os.write(1, b'x' * 65536)\n")
    assert not flood.passed
    env = check_program("def probe():\n    import os, sys\n"
                        "    return os.getcwd(), sorted(os.environ), sys.flags.isolated\n",
                        "def check(candidate):\n    cwd, env, isolated = candidate()\n"
                        "    assert cwd.startswith('/tmp/codescaler-sandbox.') and isolated\n"
                        "    assert env == ['HOME', 'LANG', 'PATH', 'TMPDIR']\n", "probe")
    assert env.passed, env.detail
    if network_isolated():
        net = check_program("def f():\n    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n",
                            "def check(candidate):\n    candidate()\n", "f")
        assert not net.passed


@pytest.mark.skipif(not AS_ROOT, reason="the candidate gets a uid of its own only when the sandbox runs as root")
def test_the_candidate_cannot_reach_the_judge_or_the_parent():
    program = ("def probe(parent):\n"
               "    import os\n"
               "    denied = []\n"
               "    for pid in (parent, os.getppid()):\n"
               "        try:\n"
               "            os.kill(pid, 0)\n"  # signal 0: a permission check, harmless
               "        except (PermissionError, ProcessLookupError):\n"  # another uid, or another pid namespace
               "            denied.append('signal')\n"
               "        for path in (f'/proc/{pid}/mem', f'/proc/{pid}/environ', f'/proc/{pid}/fd/0'):\n"
               "            try:\n"
               "                open(path, 'rb').close()\n"
               "            except (PermissionError, FileNotFoundError):\n"
               "                denied.append(path.split('/')[-1])\n"
               "    status = open('/proc/self/status').read()\n"
               "    caps = int(status.split('CapEff:')[1].split()[0], 16)\n"
               "    forks = 0\n"
               "    try:\n"
               "        for _ in range(200):\n"
               "            if os.fork() == 0:\n"
               "                os._exit(0)\n"
               "            forks += 1\n"
               "    except OSError:\n"
               "        pass\n"
               "    return os.getuid(), caps, denied, forks\n")
    test = (f"def check(candidate):\n    uid, caps, denied, forks = candidate({os.getpid()})\n"
            f"    assert uid not in (0, {os.getuid()}) and caps == 1 << 2, (uid, caps)\n"
            "    assert denied.count('signal') == 2 and denied.count('mem') == 2 and denied.count('environ') == 2\n"
            "    assert forks < 64, forks\n")
    verdict = check_program(program, test, "probe")
    assert verdict.passed, verdict.detail


def test_processes_the_program_starts_end_with_the_run(tmp_path):
    from codescaler.training.sandbox import _unshare_prefix

    if "-p" not in _unshare_prefix():
        pytest.skip("no pid namespace here (unshare -p)")
    drop = tmp_path / "drop"
    drop.mkdir(mode=0o777)
    drop.chmod(0o777)
    program = ("import os, time\n"
               f"open({str(drop / 'started')!r}, 'w').close()\n"
               "if os.fork() == 0:\n"
               "    os.setsid()\n"
               "    time.sleep(1)\n"
               f"    open({str(drop / 'alive')!r}, 'w').close()\n"
               "    os._exit(0)\n"
               "def f():\n"
               "    return 1\n")
    assert check_program(program, "def check(candidate):\n    assert candidate() == 1\n", "f").passed
    assert (drop / "started").exists()  # the program could write there
    time.sleep(2)
    assert not (drop / "alive").exists()  # but its daemon did not live to


def test_a_test_without_check_is_an_error_not_a_verdict():
    with pytest.raises(CodeScalerError, match="no check"):
        check_program("def f():\n    return 1\ndef check(c):\n    pass\n", "x = 1\n", "f")
    with pytest.raises(CodeScalerError, match="does not compile"):
        check_program("def f():\n    return 1\n", "def check(c)\n", "f")


def test_best_of_n_ground_truth_counts_no_cheat(he):
    """`codescaler eval bon`'s execution truth: the canonical solution passes, the early exits do not."""
    p = he["HumanEval/0"]
    programs = [p["prompt"] + p["canonical_solution"], "import sys; sys.exit(0)\n", "exit()\n",
                "import os; os._exit(0)\n", p["prompt"] + "    raise SystemExit(0)\n", "print('passed')\n"]
    problem = bon.Problem(p["task_id"], p["prompt"], [f"```python\n{prog}```" for prog in programs], p["test"],
                          p["entry_point"])
    (outcomes,) = bon.run_tests([problem], progress=False)
    assert [o.status for o in outcomes] == ["passed"] + ["failed"] * 5
