"""Configuration precedence and validation: every bad input names the key and the range."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from subnet.config import SubnetConfig, declared_keys, load_config, to_toml
from subnet.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}) == SubnetConfig()


def test_precedence_defaults_toml_env_cli(tmp_path: Path) -> None:
    toml = write(tmp_path / "s.toml", "[chain]\nnetuid = 7\n[wallet]\nname = 'fromfile'\n")
    cfg = load_config(toml, env={})
    assert (cfg.chain.netuid, cfg.wallet.name) == (7, "fromfile")
    cfg = load_config(toml, env={"SUBNET_CHAIN__NETUID": "9"})
    assert (cfg.chain.netuid, cfg.wallet.name) == (9, "fromfile")
    cfg = load_config(toml, env={"SUBNET_CHAIN__NETUID": "9"}, overrides={"chain.netuid": "11"})
    assert cfg.chain.netuid == 11
    cfg = load_config(toml, env={}, overrides={"wallet.name": "cli"})
    assert cfg.wallet.name == "cli"


def test_config_path_from_environment(tmp_path: Path) -> None:
    toml = write(tmp_path / "x.toml", "[chain]\nnetuid = 3\n")
    assert load_config(env={"SUBNET_CONFIG": str(toml)}).chain.netuid == 3


def test_repository_default_toml_is_valid_and_documents_every_key() -> None:
    text = (REPO / "subnet.toml").read_text()
    cfg = load_config(REPO / "subnet.toml", env={})
    assert cfg == SubnetConfig(), "the published default must equal the built-in defaults"
    for dotted in declared_keys():
        section, key = dotted.split(".")
        assert f"[{section}]" in text and f"\n{key} = " in text, dotted


def test_to_toml_round_trips(tmp_path: Path) -> None:
    cfg = load_config(env={}, overrides={"chain.netuid": 5, "wallet.hotkey": 'h"1'})
    path = write(tmp_path / "r.toml", to_toml(cfg))
    assert load_config(path, env={}) == cfg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[chain]\nnetuidd = 1\n", "chain.netuidd"),
        ("[nosuch]\nx = 1\n", "unknown section [nosuch]"),
        ("[chain]\nnetuid = 70000\n", "between 0 and 65535"),
        ("[chain]\nnetuid = 'one'\n", "expected an integer"),
        ("[chain]\nnetuid = true\n", "expected an integer"),
        ("[chain]\nnetuid = 1.5\n", "expected an integer"),
        ("[chain]\nnetwork = 3\n", "expected a string"),
        ("chain = 1\n", "must be a table"),
        ("[chain\nnetuid = 1\n", "invalid TOML"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[chain]\nnetuidd = 1\n")
    with pytest.raises(ConfigError, match=r"did you mean 'chain\.netuid'"):
        load_config(path, env={})


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path, env={})
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(binary, env={})


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SUBNET_CHAIN__NETUIDX": "1"}, "unknown key 'chain.netuidx'"),
        ({"SUBNET_CHAIN__NETUID": "abc"}, "cannot read 'abc' as int"),
        ({"SUBNET_CHAIN__NETUID": "-1"}, "between 0 and 65535"),
    ],
)
def test_bad_environment_values(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env=env)
    assert needle in str(err.value)


def test_unrelated_subnet_variables_are_not_keys() -> None:
    cfg = load_config(env={"SUBNET_CACHE": "/tmp/x", "SUBNET_CONFIG": ""})
    assert cfg == SubnetConfig()


def test_bad_cli_config_is_one_line_and_nonzero(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "[weights]\nnope = 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "subnet.cli", "bench", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "weights.nope" in lines[0], proc.stderr


def test_verification_tolerance_follows_the_recompute_precision() -> None:
    v = SubnetConfig().verify
    assert v.for_dtype("float32") is v and v.for_dtype("torch.float64") is v
    for half in ("bfloat16", "float16", "torch.bfloat16"):
        h = v.for_dtype(half)
        assert (h.max_mean_abs_dp, h.min_topk_agreement) == (
            v.max_mean_abs_dp_half,
            v.min_topk_agreement_half,
        )
        assert h.max_mean_abs_dp > v.max_mean_abs_dp  # 16-bit rounding needs more room
