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


def _help(capsys, *argv) -> str:
    import pytest

    from codescaler.cli import main

    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse's line breaks undone


def test_score_help_says_what_an_engine_runs_on_and_what_a_batch_token_is(capsys):
    text = _help(capsys, "score")
    assert "torch for a model folder and for an aoti engine directory, ONNX Runtime for an onnx one" in text
    assert "padded tokens per forward pass" not in text
    assert "on torch the tokens it runs (no padding; a question shared by several answers counts once)" in text
    assert "on ONNX Runtime and TensorRT batch size x longest sequence (padding included)" in text


def test_rmbench_offers_no_extraction_options(capsys):
    rmbench, bon = _help(capsys, "eval", "rmbench"), _help(capsys, "eval", "bon")
    for flag in ("--policy", "--language", "--score-empty"):
        assert flag not in rmbench and flag in bon
    for flag in ("--backend", "--dtype", "--max-length", "--truncation", "--share-prefix", "--reward-cache"):
        assert flag in rmbench


def test_eval_tables_print_percent_signs():
    from rich.console import Console

    from codescaler.eval import bon, rmbench

    def shown(table) -> str:
        console = Console(width=200)
        with console.capture() as out:
            console.print(table)
        return out.get()

    rm = {"domains": {"code": {"accuracy": 0.625}}, "easy": 0.5, "normal": 0.75, "hard": 0.25, "avg": 0.625}
    text = shown(rmbench.table(rm))
    assert "62.5%" in text and "50.0%" in text and "25.0%" in text and " - " in text  # absent domains: '-'
    text = shown(bon.table({"at_n": [{"n": 4, "model": 0.5, "random": 0.25, "oracle": 1.0}]}))
    assert "50.0%" in text and "25.0%" in text and "100.0%" in text


def test_demo_notes_are_whole_lines_in_a_pipe():
    env = {**__import__("os").environ, "COLUMNS": "60"}
    proc = subprocess.run([sys.executable, "-m", "codescaler", "demo", "--dtype", "float32", "--compile", "off"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "embedded tiny model: random weights, so the scores show the pipeline, not judgement; torch, float32" in lines


def test_bench_repeats_reach_every_timed_path_and_the_table_shows_median_and_range(monkeypatch):
    import pytest

    from codescaler.benchmarks import bench_score
    from codescaler.cli import main

    seen = {}
    monkeypatch.setattr(bench_score, "main", lambda workloads, **kw: seen.update(kw, workloads=workloads))
    assert main(["bench", "--workload", "bon", "--repeats", "5"]) == 0
    assert seen["repeats"] == 5 and seen["workloads"] == ("bon",)
    assert main(["bench"]) == 0 and seen["repeats"] == 3
    assert seen["batch_sizes"] == (4, 8, 16) and seen["trl"] is True
    # At the real shape the card runs at batch 4 only and TRL's padded batch is left out, unless asked.
    assert main(["bench", "--shape", "1.7b"]) == 0 and seen["batch_sizes"] == (4,) and seen["trl"] is False
    assert main(["bench", "--shape", "1.7b", "--batch-sizes", "4,16", "--trl"]) == 0
    assert seen["batch_sizes"] == (4, 16) and seen["trl"] is True
    assert main(["bench", "--no-trl"]) == 0 and seen["trl"] is False
    for bad in (["--repeats", "0"], ["--batch-sizes", "4,x"], ["--batch-sizes", "0"]):
        with pytest.raises(SystemExit):
            main(["bench", *bad])

    calls = []
    times, result, _rss = bench_score._timed(lambda: calls.append(1) or len(calls), 4)
    assert len(times) == 4 and result == 4  # every repeat timed, the last one's result kept
    run = bench_score.Run("x", [0.4, 0.1, 0.3, 0.2], 0, [], 0.0)
    assert run.seconds == pytest.approx(0.25) and run.spread == "0.10-0.40"
    assert bench_score.Run("x", [0.5], 0, [], 0.0).spread == "-"


def test_the_server_contract_is_named_once_and_client_errors_live_in_errors():
    from codescaler import errors
    from codescaler.integrations import client, scorer
    from codescaler.serve import cli as serve_cli
    from codescaler.serve import routes, settings

    assert settings.API_KEY_ENV == "CODESCALER_API_KEY" and settings.TIMEOUT_HEADER == "X-Request-Timeout"
    assert client.API_KEY_ENV is scorer.API_KEY_ENV is serve_cli.API_KEY_ENV is settings.API_KEY_ENV
    assert client.TIMEOUT_HEADER is routes.TIMEOUT_HEADER is settings.TIMEOUT_HEADER
    for name in ("ServerError", "AuthenticationError", "RejectedRequestError", "ServerBusyError",
                 "ServerUnreachableError", "ServerTimeoutError"):
        assert getattr(client, name) is getattr(errors, name)  # still importable from the client module
    assert issubclass(errors.RejectedRequestError, errors.InputError)
    assert issubclass(errors.ServerError, errors.CodeScalerError)


def test_the_version_is_pyprojects_and_every_entry_point_reports_it():
    import tomllib
    from pathlib import Path

    import codescaler
    from codescaler.serve.app import _version
    from codescaler.version import __version__

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"] == codescaler.__version__ == _version()
    proc = subprocess.run([sys.executable, "-m", "codescaler", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"codescaler {project['version']}"


def test_bench_times_its_systems_round_robin_and_reports_best_and_median():
    from codescaler.benchmarks import bench_score

    order = []

    def system(name: str, tokens: int) -> "bench_score.System":
        return bench_score.System(name, lambda: order.append(name) or ([float(len(order))], tokens))

    heard = []
    runs = bench_score.interleaved([system("a", 3), system("b", 4)], 3, heard.append)
    assert order == ["a", "b"] * 3  # one call of each per round, never a system's repeats back to back
    assert len(heard) == 6 and heard[-1].startswith("  round 3/3: b ")
    assert [(r.system, len(r.times), r.computed_tokens, r.rewards) for r in runs] == [("a", 3, 3, [5.0]),
                                                                                     ("b", 3, 4, [6.0])]
    run = bench_score.Run("x", [0.4, 0.1, 0.3], 0, [], 0.0)
    assert run.best == 0.1 and run.seconds == 0.3
