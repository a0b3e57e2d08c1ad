"""SDK, transport and key failures -> our errors, sorted by type (never by message text).

Each case feeds an exception instance, shaped as the SDK raises it, through ``translated``:
a lost connection or timeout must be a retryable ``ChainConnectionError`` even when the SDK
wrapped it in its own ``ChainError``; a key that does not unlock must be a one-line
``ConfigError`` saying what to set; a chain refusal keeps its name.
"""

from __future__ import annotations

import bittensor as bt
import pytest
from bittensor.sp_core import KeyfileError, WrongPasswordError

from subnet.chain.convert import translated
from subnet.chain.devnet import DevnetUnavailable
from subnet.errors import ChainConnectionError, ChainError, ConfigError, SubnetError
from subnet.wallets import create_wallet, load_wallet


def _raised_from(outer: BaseException, cause: BaseException) -> BaseException:
    """``outer`` as the SDK raises it: ``raise outer from cause``."""
    try:
        raise outer from cause
    except BaseException as e:
        return e


def _through(error: BaseException) -> BaseException:
    """What comes out of ``translated`` when ``error`` is raised inside it."""
    with pytest.raises(BaseException) as info, translated("read block"):
        raise error
    return info.value


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (bt.RpcConnectionError("could not connect to any endpoint"), "CONNECTION"),
        (bt.RpcPolicyError("HTTP 429", status_code=429, retry_after="2"), "RPC_POLICY"),
        (bt.ConnectionNotReady("Client connection is not open"), "NOT_CONNECTED"),
        (TimeoutError(), "TIMEOUT"),  # asyncio.TimeoutError is the same class since 3.11
        (ConnectionResetError(104, "Connection reset by peer"), "CONNECTION"),
        (OSError(101, "Network is unreachable"), "CONNECTION"),
        # the SDK's submit path: ``raise ChainError(str(error)) from error`` for a dropped socket
        (_raised_from(bt.ChainError("socket closed"), ConnectionResetError()), "CONNECTION"),
        (_raised_from(bt.ChainError("no answer"), TimeoutError()), "TIMEOUT"),
    ],
)
def test_connection_loss_and_timeouts_are_transient_connection_errors(error, name):
    out = _through(error)
    assert type(out) is ChainConnectionError
    assert out.name == name and out.transient
    assert str(out).startswith("read block: ")
    assert out.__cause__ is error


def test_an_endpoint_that_refuses_this_client_for_good_is_not_retried():
    out = _through(bt.RpcPolicyError("HTTP 403", status_code=403))
    assert isinstance(out, ChainConnectionError) and out.name == "RPC_POLICY"
    assert not out.transient


def test_the_devnet_losing_its_state_file_is_a_connection_error_on_both_sides():
    error = DevnetUnavailable("devnet state unavailable: database is locked")
    assert isinstance(error, bt.RpcConnectionError)  # what bittensor.Client expects
    assert isinstance(error, ChainConnectionError) and error.transient  # what we catch
    assert error.name == "DevnetState"
    assert _through(error) is error  # already ours: passes unchanged


@pytest.mark.parametrize(
    ("name", "transient"),
    [("NeuronNoValidatorPermit", False), ("SettingWeightsTooFast", True)],
)
def test_a_chain_refusal_keeps_its_name_and_says_if_it_may_pass(name, transient):
    out = _through(bt.ChainError("refused", name=name))
    assert type(out) is ChainError
    assert out.name == name and out.transient is transient
    assert name in str(out)  # operators grep for the pallet name


def test_other_sdk_and_argument_errors_are_invalid_arguments():
    for error in (bt.PolicyError(["fee above cap"]), ValueError("netuid must be >= 0")):
        out = _through(error)
        assert type(out) is ChainError and out.name == "INVALID_ARGUMENT"
        assert not out.transient


@pytest.mark.parametrize(
    ("error", "says"),
    [
        # the SDK's signing_keypair: ``raise ValueError("wrong password") from error``
        (_raised_from(ValueError("wrong password"), WrongPasswordError("bad")), "wrong password"),
        (KeyfileError("password required to decrypt keyfile"), "cannot unlock"),
        (EOFError(), "no password was given"),
        (FileNotFoundError(2, "No such file or directory", "/w/coldkey"), "/w/coldkey"),
        (_raised_from(ValueError("cannot unlock"), PermissionError(13, "denied", "/w/x")), "/w/x"),
    ],
)
def test_a_key_that_does_not_unlock_is_a_one_line_config_error(error, says):
    out = _through(error)
    assert type(out) is ConfigError
    assert says in str(out) and "\n" not in str(out)
    assert str(out).startswith("read block: ")


def test_our_own_errors_pass_unchanged_and_keep_their_kind_when_the_sdk_wrapped_them():
    mine = ConfigError("the coldkey /w/coldkey is encrypted and no password was given")
    assert _through(mine) is mine
    out = _through(_raised_from(bt.ChainError(str(mine)), mine))
    assert type(out) is ConfigError and "no password was given" in str(out)


def test_a_bug_is_not_translated():
    error = TypeError("unsupported operand")
    out = _through(error)
    assert out is error and not isinstance(out, SubnetError)


def _encrypted(path):
    """Make ``path`` look encrypted without paying for a real (deliberately slow) KDF."""
    path.write_bytes(b"$NACL" + bytes(64))


def test_an_encrypted_coldkey_without_a_password_fails_instead_of_prompting(tmp_path):
    create_wallet("w", "hk", tmp_path)
    wallet = load_wallet("w", "hk", tmp_path)
    _encrypted(tmp_path / "w" / "coldkey")
    with pytest.raises(ConfigError, match="BT_WALLET_PASSWORD") as info:
        wallet.get_coldkey()
    assert "encrypted and no password was given" in str(info.value)
    signer = bt.resolve_signer(wallet, "coldkey")  # the SDK's own unlock path
    with pytest.raises(ConfigError, match="coldkey"), translated("register"):
        signer.sign(b"extrinsic")


def test_an_encrypted_hotkey_without_its_password_fails_instead_of_prompting(tmp_path):
    create_wallet("w", "hk", tmp_path)
    wallet = load_wallet("w", "hk", tmp_path)
    _encrypted(tmp_path / "w" / "hotkeys" / "hk")
    with pytest.raises(ConfigError, match="plaintext hotkey"):
        wallet.get_hotkey()
