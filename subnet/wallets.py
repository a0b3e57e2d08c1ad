"""Non-interactive wallets: create and load without prompts, never printing a mnemonic.

Layout is the SDK's (``<path>/<name>/coldkey``, ``coldkeypub.txt``, ``hotkeys/<hotkey>``), so
``btcli`` and other tools read the same files. Hotkeys are plaintext (neurons sign every
request with them); coldkeys are encrypted when a password is given.

Coldkey passwords for signing (registration, owner hyperparameters) are resolved by the SDK,
first match wins: ``BT_WALLET_PASSWORD`` (the password itself), ``BT_WALLET_PASSWORD_FILE``
(a file holding it), then the ``password_file`` given to :func:`load_wallet` (the CLI's
``--wallet.password-file``). With none of them an encrypted coldkey fails with a ConfigError
instead of prompting. Devnet wallets are unencrypted: they guard nothing of value.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subnet.errors import ConfigError

if TYPE_CHECKING:
    import bittensor as bt

PASSWORD_ENV = "BT_WALLET_PASSWORD"
PASSWORD_FILE_ENV = "BT_WALLET_PASSWORD_FILE"
COLDKEY_PASSWORD_HELP = f"set {PASSWORD_ENV} or {PASSWORD_FILE_ENV}, or pass --wallet.password-file"


@functools.cache
def _wallet_class() -> type[bt.Wallet]:
    import bittensor as bt

    class FileUnlockedWallet(bt.Wallet):
        """A ``bt.Wallet`` that unlocks its coldkey from a password file when the SDK's own
        resolution found nothing (the SDK passes ``password=None`` then)."""

        password_file: Path | None = None

        def get_coldkey(self, password: str | None = None) -> Any:
            if password is None and self.password_file is not None:
                password = read_password_file(self.password_file)
            if password is None:
                _refuse_prompt(self.coldkey_file, "coldkey", COLDKEY_PASSWORD_HELP)
            return super().get_coldkey(password)

        def get_hotkey(self, password: str | None = None) -> Any:
            if password is None:
                env = self.hotkey_file.env_var_name()
                _refuse_prompt(self.hotkey_file, "hotkey", f"use a plaintext hotkey or set {env}")
            return super().get_hotkey(password)

    return FileUnlockedWallet


def _refuse_prompt(keyfile: Any, role: str, fix: str) -> None:
    """Fail where the SDK would prompt for a password: a neuron has nobody to type one."""
    from bittensor.keyfiles import resolve_key_password

    if not keyfile.is_encrypted():
        return
    if resolve_key_password(None, env_var_name=keyfile.env_var_name(), allow_prompt=False):
        return
    raise ConfigError(f"the {role} {keyfile.path} is encrypted and no password was given: {fix}")


def read_password_file(path: str | Path) -> str:
    """The first line of a password file; a missing or empty file is a ConfigError."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as e:
        raise ConfigError(f"cannot read wallet password file {path}: {e.strerror}") from e
    password = text.strip()
    if not password:
        raise ConfigError(f"wallet password file {path} is empty")
    return password


def create_wallet(
    name: str,
    hotkey: str,
    path: str | Path,
    *,
    coldkey_password: str | None = None,
    overwrite: bool = False,
    mnemonic_file: str | Path | None = None,
) -> bt.Wallet:
    """Create a coldkey (encrypted iff ``coldkey_password``) and a plaintext hotkey.

    An existing coldkey is reused (a new hotkey is added under it) unless ``overwrite``; an
    existing hotkey is a ConfigError unless ``overwrite``. Mnemonics are never printed; with
    ``mnemonic_file`` they are appended to that file, created 0600.
    """
    wallet = _wallet_class()(name=name, hotkey=hotkey, path=str(Path(path).expanduser()))
    sink = _mnemonic_sink(Path(mnemonic_file), name, hotkey) if mnemonic_file else None
    if overwrite or not wallet.coldkeypub_file.exists_on_device():
        try:
            wallet.create_new_coldkey(
                use_password=coldkey_password is not None,
                coldkey_password=coldkey_password,
                overwrite=overwrite,
                suppress=True,
                on_mnemonic=(lambda m: sink("coldkey", m)) if sink else None,
            )
        except (FileExistsError, OSError) as e:
            raise ConfigError(f"cannot create coldkey for wallet {name!r}: {e}") from e
    if wallet.hotkey_file.exists_on_device() and not overwrite:
        raise ConfigError(f"hotkey {name}/{hotkey} already exists under {path} (use overwrite)")
    try:
        wallet.create_new_hotkey(
            use_password=False,
            overwrite=overwrite,
            suppress=True,
            on_mnemonic=(lambda m: sink("hotkey", m)) if sink else None,
        )
    except (FileExistsError, OSError) as e:
        raise ConfigError(f"cannot create hotkey {name}/{hotkey}: {e}") from e
    return wallet


def load_wallet(
    name: str, hotkey: str, path: str | Path, *, password_file: str | Path | None = None
) -> bt.Wallet:
    """Open an existing wallet; a missing coldkey or hotkey is a ConfigError naming the files.

    Only public files are read here; private keys unlock lazily on the first signature.
    """
    root = Path(path).expanduser()
    wallet = _wallet_class()(name=name, hotkey=hotkey, path=str(root))
    if not wallet.coldkeypub_file.exists_on_device():
        raise ConfigError(
            f"wallet {name!r} not found: no {root / name / 'coldkeypub.txt'} "
            f"(create it with btcli or `subnet devnet init`)"
        )
    if not wallet.hotkey_file.exists_on_device():
        missing = root / name / "hotkeys" / hotkey
        raise ConfigError(f"hotkey {name}/{hotkey} not found: no {missing}")
    if password_file is not None:
        read_password_file(password_file)  # fail now, not at the first coldkey signature
        wallet.password_file = Path(password_file).expanduser()  # type: ignore[attr-defined]
    return wallet


def hotkey_address(wallet: Any) -> str:
    """The wallet's hotkey ss58 without unlocking anything."""
    try:
        return str(wallet.hotkeypub.ss58_address)
    except (AttributeError, FileNotFoundError):
        return str(wallet.hotkey.ss58_address)


def coldkey_address(wallet: Any) -> str:
    """The wallet's coldkey ss58 from the public file, without unlocking."""
    return str(wallet.coldkeypub.ss58_address)


def _mnemonic_sink(path: Path, name: str, hotkey: str) -> Callable[[str, str], None]:
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(kind: str, mnemonic: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as out:
            label = name if kind == "coldkey" else f"{name}/{hotkey}"
            out.write(f"{label} {kind}: {mnemonic}\n")
        os.chmod(path, 0o600)

    return write
