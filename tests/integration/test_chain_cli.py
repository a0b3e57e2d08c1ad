"""``subnet devnet ...`` and ``subnet hparams ...`` end to end through ``subnet.cli.main``."""

from __future__ import annotations

import json

import pytest

from subnet.cli import main


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no stray ./subnet.toml, relative defaults land here


@pytest.fixture
def devnet(tmp_path, capsys):
    folder = tmp_path / "net"
    argv = [
        "devnet",
        "init",
        "--dir",
        str(folder),
        "--validators",
        "2",
        "--miners",
        "3",
        "--tempo",
        "10",
        "--block-time",
        "0.05",
        "--clock",
        "manual",
    ]
    assert main(argv) == 0
    return folder


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_init_creates_a_ready_subnet_without_printing_secrets(devnet, capsys):
    out = capsys.readouterr().out
    assert "UNENCRYPTED" in out and "netuid 1" in out
    manifest = json.loads((devnet / "devnet.json").read_text())
    assert manifest["validators"] == ["validator1", "validator2"]
    assert manifest["uids"] == {
        "owner": 0,
        "validator1": 1,
        "validator2": 2,
        "miner1": 3,
        "miner2": 4,
        "miner3": 5,
    }
    secrets = []
    for name in manifest["uids"]:
        for key in (
            devnet / "wallets" / name / "coldkey",
            devnet / "wallets" / name / "hotkeys" / "default",
        ):
            secrets.append(json.loads(key.read_text())["secretPhrase"])  # plaintext on devnet
    assert not any(phrase in out for phrase in secrets)
    assert main(["devnet", "status", "--dir", str(devnet), "--json"]) == 0
    status = _json(capsys)
    assert status["block"] == 11  # advanced past the first epoch
    assert [n["permit"] for n in status["neurons"]] == [True, True, True, False, False, False]
    assert [n["stake"] >= 1000 for n in status["neurons"]][1:3] == [True, True]
    assert all(0.0 <= n["vtrust"] <= 1.0 for n in status["neurons"])


def test_status_table_and_advance(devnet, capsys):
    capsys.readouterr()
    assert main(["devnet", "advance", "--dir", str(devnet), "4"]) == 0
    assert "head block 15" in capsys.readouterr().out
    assert main(["devnet", "status", "--dir", str(devnet)]) == 0
    table = capsys.readouterr().out
    assert "15" in table and "incentive" in table and "yes" in table


def test_init_refuses_an_existing_devnet_and_bad_counts(devnet, tmp_path, capsys):
    capsys.readouterr()
    assert main(["devnet", "init", "--dir", str(devnet)]) == 2
    assert "already holds a devnet" in capsys.readouterr().err
    assert main(["devnet", "init", "--dir", str(tmp_path / "x"), "--validators", "0"]) == 2
    assert main(["devnet", "status", "--dir", str(tmp_path / "nothing")]) == 2
    assert "devnet init" in capsys.readouterr().err


def test_advance_refuses_a_wall_clock_devnet(tmp_path, capsys):
    folder = tmp_path / "wall"
    argv = ["devnet", "init", "--dir", str(folder), "--miners", "1", "--block-time", "0.05"]
    assert main(argv) == 0
    assert main(["devnet", "advance", "--dir", str(folder), "3"]) == 2
    assert "clock='manual'" in capsys.readouterr().err


def test_hparams_get_and_set_owner_sudo_and_strangers(devnet, capsys):
    net = ["--network", f"devnet:{devnet}", "--netuid", "1"]
    capsys.readouterr()
    assert main(["hparams", "get", *net, "--json"]) == 0
    before = _json(capsys)
    assert before["tempo"] == 10 and before["commit_reveal_weights_enabled"] is False
    owner = ["--wallet.name", "owner"]
    assert (
        main(["hparams", "set", *net, *owner, "--name", "kappa", "--value", "0.6", "--sudo"]) == 0
    )
    assert main(["hparams", "set", *net, *owner, "--name", "bonds_penalty", "--value", "7"]) == 0
    assert "bonds_penalty on netuid 1 is now 7" in capsys.readouterr().out
    assert main(["hparams", "set", *net, *owner, "--name", "tempo", "--value", "30"]) == 2
    assert "360" in capsys.readouterr().err  # the owner's bound; sudo may go below it
    assert main(["hparams", "set", *net, *owner, "--name", "tempo", "--value", "30", "--sudo"]) == 0
    stranger = ["--wallet.name", "miner1"]
    assert main(["hparams", "set", *net, *stranger, "--name", "bonds_penalty", "--value", "1"]) == 2
    assert "BadOrigin" in capsys.readouterr().err
    assert main(["hparams", "get", *net, "--json"]) == 0
    after = _json(capsys)
    assert (after["tempo"], after["bonds_penalty"], after["kappa"]) == (30, 7, 39321)


def test_hparams_errors_are_one_line(devnet, tmp_path, capsys):
    capsys.readouterr()
    assert main(["hparams", "get", "--network", "nowhere"]) == 2
    assert (
        main(
            [
                "hparams",
                "set",
                "--network",
                f"devnet:{devnet}",
                "--wallet.name",
                "ghost",
                "--name",
                "kappa",
                "--value",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown network" in err and "wallet 'ghost' not found" in err
