"""Wallets on disk through the real SDK: no prompts, no printed mnemonics, clear errors."""

from __future__ import annotations

import stat

import pytest

from subnet.errors import ConfigError
from subnet.wallets import (
    coldkey_address,
    create_wallet,
    hotkey_address,
    load_wallet,
    read_password_file,
)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BT_WALLET_PASSWORD", raising=False)
    monkeypatch.delenv("BT_WALLET_PASSWORD_FILE", raising=False)


def test_create_then_load_round_trips_addresses_and_prints_nothing(tmp_path, capsys):
    made = create_wallet("w", "hk", tmp_path / "wallets")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    loaded = load_wallet("w", "hk", tmp_path / "wallets")
    assert hotkey_address(loaded) == hotkey_address(made)
    assert coldkey_address(loaded) == coldkey_address(made)
    assert hotkey_address(made) != coldkey_address(made)
    # unencrypted coldkey signs without any password source
    assert loaded.get_coldkey().ss58_address == coldkey_address(made)


def test_second_hotkey_reuses_the_coldkey(tmp_path):
    a = create_wallet("w", "a", tmp_path)
    b = create_wallet("w", "b", tmp_path)
    assert coldkey_address(a) == coldkey_address(b)
    assert hotkey_address(a) != hotkey_address(b)


def test_existing_hotkey_is_refused_unless_overwrite(tmp_path):
    first = create_wallet("w", "hk", tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        create_wallet("w", "hk", tmp_path)
    again = create_wallet("w", "hk", tmp_path, overwrite=True)
    assert hotkey_address(again) != hotkey_address(first)


def test_mnemonics_go_only_to_a_private_file(tmp_path, capsys):
    secret = tmp_path / "secret" / "mnemonics.txt"
    create_wallet("w", "hk", tmp_path / "wallets", mnemonic_file=secret)
    assert capsys.readouterr().out == ""
    lines = secret.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["w coldkey", "w/hk hotkey"]
    assert all(len(line.split(": ")[1].split()) == 12 for line in lines)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_missing_wallet_and_hotkey_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"coldkeypub\.txt"):
        load_wallet("nobody", "hk", tmp_path)
    create_wallet("w", "hk", tmp_path)
    with pytest.raises(ConfigError, match="hotkeys"):
        load_wallet("w", "other", tmp_path)


@pytest.mark.slow  # each NaCl encrypt/decrypt runs the SDK's deliberately slow KDF (~5 s here)
def test_encrypted_coldkey_unlocks_from_file_or_env_never_from_a_wrong_one(tmp_path, monkeypatch):
    import bittensor as bt

    made = create_wallet("w", "hk", tmp_path, coldkey_password="s3cret-pass")
    assert made.coldkey_file.is_encrypted()
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong-pass\n")
    with pytest.raises(bt.keyfiles.WrongPasswordError):
        load_wallet("w", "hk", tmp_path, password_file=wrong).get_coldkey()
    right = tmp_path / "right"
    right.write_text("s3cret-pass\n")
    loaded = load_wallet("w", "hk", tmp_path, password_file=right)
    assert loaded.get_coldkey().ss58_address == coldkey_address(made)
    # BT_WALLET_PASSWORD wins over the file, through the SDK's own signer resolution
    monkeypatch.setenv("BT_WALLET_PASSWORD", "s3cret-pass")
    signer = bt.resolve_signer(load_wallet("w", "hk", tmp_path, password_file=wrong), "coldkey")
    assert signer.ss58_address == coldkey_address(made)
    assert len(signer.sign(b"message")) == 64


def test_bad_password_files_are_config_errors(tmp_path):
    create_wallet("w", "hk", tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_wallet("w", "hk", tmp_path, password_file=tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        load_wallet("w", "hk", tmp_path, password_file=empty)
    assert read_password_file(_write(tmp_path / "ok", "  pw  \n")) == "pw"


def _write(path, text):
    path.write_text(text)
    return path
