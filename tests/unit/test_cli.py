"""The ``subnet`` command: every subcommand has working help; errors are one line."""

from __future__ import annotations

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
