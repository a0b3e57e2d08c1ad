"""The ``subnet`` command: every subcommand has working help; errors are one line."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from subnet.cli import COMMANDS, build_parser, main


def run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "subnet.cli", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_top_level_help_lists_every_subcommand() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for cmd in COMMANDS:
        assert cmd.name in proc.stdout


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_each_subcommand_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: subnet " + name)
    assert "--set KEY=VALUE" in out


def test_set_override_reaches_the_command(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "--set", "chain.netuid=12"])
    from subnet.cli import overrides_from_args

    assert overrides_from_args(args) == {"chain.netuid": "12"}


def test_malformed_set_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--set", "novalue"]) == 2
    err = capsys.readouterr().err
    assert "KEY=VALUE" in err and "Traceback" not in err


def test_bench_lists_and_rejects_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench"]) == 0
    assert "benchmarks:" in capsys.readouterr().out
    assert main(["bench", "no-such-bench"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def _parsers(parser: argparse.ArgumentParser, name: str = "subnet"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, child in action.choices.items():
                yield from _parsers(child, f"{name} {sub_name}")


def test_every_option_of_every_subcommand_says_what_it_does() -> None:
    """No bare "(default 0)": each flag's help names what it sets (issue 17)."""
    bad = []
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            text = re.sub(r"\(default:? [^)]*\)", "", action.help or "").strip()
            if len(text) < 8:
                bad.append(f"{name} {action.option_strings[0]}: {action.help!r}")
    assert bad == []


@pytest.mark.parametrize(
    "argv",
    [
        ["distill", "train", "--student", "s", "--targets", "t", "--out", "o"],
        ["distill", "targets", "--teacher", "t", "--prompts", "tasks:2", "--out", "o"],
        ["validator", "status"],
        ["validator", "calibrate", "--model", "m"],
    ],
)
def test_set_and_config_are_taken_by_nested_subcommands(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--set", "chain.netuid=7", "--config", "x.toml"])
    from subnet.cli import overrides_from_args

    assert overrides_from_args(args)["chain.netuid"] == "7" and args.config_path == "x.toml"
    # and given before the nested subcommand, they still count
    args = build_parser().parse_args([argv[0], "--set", "chain.netuid=8", *argv[1:]])
    assert overrides_from_args(args)["chain.netuid"] == "8"


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("subnet ")
