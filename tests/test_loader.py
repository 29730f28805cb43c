"""The loader imports only what it uses: an aoti engine directory whose template the export recorded as a
splice loads, in a fresh process, without transformers and without Inductor, and scores the same bits as
a model loaded in this process; a pair the splice refuses still renders as the tokenizer's template does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codescaler import RewardModel, tiny
from codescaler.engine.export import export_aoti
from conftest import fenced

QUESTIONS = ["Write a function that adds one.", "Write a function that adds one.", "Print hello."]
RESPONSES = [fenced("def f(x):\n    return x + 1"), "no code here", fenced("print('hello')")]
# The tiny model's template splits on think tags, so its recorded splice refuses "</think>".
REFUSED = fenced("print('</think>')")

FRESH = """
import json, sys
from codescaler import RewardModel
m = RewardModel.from_pretrained(sys.argv[1])
questions, responses, refused = json.loads(sys.argv[2])
loaded = sorted(name for name in ("transformers", "torch._inductor", "triton") if name in sys.modules)
raws = [r.raw_score for r in m.score(questions, responses)]
after = sorted(name for name in ("transformers", "torch._inductor", "triton") if name in sys.modules)
raws.append(m.score([questions[0]], [refused])[0].raw_score)
print(json.dumps({"loaded": loaded, "after_scoring": after, "raws": raws}))
"""


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("aoti") / "tiny"
    return export_aoti(tiny.resolve_model("tiny"), out, dtype="float32", log=lambda *_: None).path


def test_fresh_process_loads_a_spliced_engine_without_transformers_or_inductor(tiny_engine: Path) -> None:
    done = subprocess.run([sys.executable, "-c", FRESH, str(tiny_engine), json.dumps([QUESTIONS, RESPONSES, REFUSED])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["loaded"] == [] and got["after_scoring"] == [], got
    here = RewardModel.from_pretrained(tiny_engine)
    want = [r.raw_score for r in here.score(QUESTIONS, RESPONSES)]
    want.append(here.score([QUESTIONS[0]], [REFUSED])[0].raw_score)
    assert got["raws"] == want  # the same bits (JSON round-trips a float exactly)
    assert want[1] is None and all(isinstance(r, float) for r in want[::2])


def test_a_refused_pair_renders_as_the_tokenizers_own_template(tiny_engine: Path) -> None:
    from transformers import AutoTokenizer

    m = RewardModel.from_pretrained(tiny_engine)
    code = "print('</think>')"
    assert m.template.splice.refused_by(QUESTIONS[0], code) == "</think>"
    reference = AutoTokenizer.from_pretrained(tiny_engine).apply_chat_template(
        [{"role": "user", "content": QUESTIONS[0]}, {"role": "assistant", "content": code}], tokenize=False)
    assert m.template.render(QUESTIONS[0], code) == reference
    assert m.template.render(QUESTIONS[0], "x = 1") == m.template.splice.join(QUESTIONS[0], "x = 1")
