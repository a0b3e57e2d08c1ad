"""Network names -> an open ``ChainClient``: the one place a network string is interpreted.

``devnet:PATH`` is the embedded chain (PATH: its SQLite file, or the folder holding
``devnet.sqlite``; the default everywhere), ``local`` a
subtensor localnet on ws://127.0.0.1:9944 (``$BT_CHAIN_ENDPOINT`` overrides), ``test`` and
``finney`` the public chains, and any ``ws://``/``wss://`` URL a node. The same
``ChainClient`` runs on all of them: for the devnet only the SDK's ``Substrate`` backend is
swapped, so every test and the devnet exercise the real SDK code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subnet.errors import ChainConnectionError, ChainError, ConfigError

if TYPE_CHECKING:
    import bittensor as bt

    from subnet.chain.client import ChainClient

NAMED_NETWORKS = ("local", "test", "finney")
DEVNET_PREFIX = "devnet:"
DEVNET_FILE = "devnet.sqlite"


@dataclass(frozen=True)
class NetworkSpec:
    """A parsed network string. ``label`` is what ``bittensor.Client`` is given."""

    text: str
    kind: str  # "devnet" | "named" | "url"
    label: str
    devnet_file: Path | None = None  # the devnet's SQLite file

    @property
    def devnet_dir(self) -> Path | None:
        """The devnet folder (it also holds the devnet wallets under ``wallets/``)."""
        return self.devnet_file.parent if self.devnet_file is not None else None


DEFAULT_WALLET_PATH = "~/.bittensor/wallets"  # the SDK's and btcli's default


def wallet_folder(network: str, path: str) -> str:
    """Where to look for wallets: a devnet's own ``wallets/`` (what ``devnet init`` made) when
    the path was left at the default, else ``path`` as given."""
    spec = parse_network(network)
    if spec.devnet_dir is not None and path == DEFAULT_WALLET_PATH:
        devnet_wallets = spec.devnet_dir / "wallets"
        if devnet_wallets.is_dir():
            return str(devnet_wallets)
    return path


def parse_network(text: str) -> NetworkSpec:
    """Parse ``devnet:PATH | local | test | finney | ws(s)://...``; bad input is a ConfigError."""
    value = text.strip()
    if value.startswith(DEVNET_PREFIX):
        path = value[len(DEVNET_PREFIX) :]
        if not path:
            raise ConfigError("network 'devnet:' needs a folder, e.g. devnet:./devnet")
        return NetworkSpec(value, "devnet", "local", devnet_file(Path(path).expanduser()))
    if value in NAMED_NETWORKS:
        return NetworkSpec(value, "named", value)
    if value.startswith(("ws://", "wss://")) and len(value.split("://", 1)[1]) > 0:
        return NetworkSpec(value, "url", value)
    raise ConfigError(
        f"unknown network {text!r}: use devnet:PATH, local, test, finney or a ws(s):// URL"
    )


def devnet_file(path: Path) -> Path:
    """``PATH`` of ``devnet:PATH`` as the SQLite file: a ``.sqlite``/``.db`` name or an existing
    file is the file itself, anything else a folder holding ``devnet.sqlite``."""
    if path.suffix in (".sqlite", ".db") or path.is_file():
        return path
    return path / DEVNET_FILE


def build_client(spec: NetworkSpec) -> tuple[bt.Client, Callable[[], None]]:
    """An unconnected ``bittensor.Client`` for ``spec`` and what releases its backend (the
    devnet file handle; nothing for a node). The devnet is opened, never created."""
    import bittensor as bt

    if spec.devnet_file is None:
        return bt.Client(spec.label), lambda: None
    path = spec.devnet_file
    if not path.exists():
        raise ConfigError(f"no devnet at {path}: run `subnet devnet init --dir {path.parent}`")
    from subnet.chain.devnet import Devnet

    net = Devnet.open(path)
    substrate: Any = net.substrate()
    return bt.Client("local", substrate=substrate), net.close


@contextlib.asynccontextmanager
async def open_chain(network: str | NetworkSpec) -> AsyncIterator[ChainClient]:
    """Connect to ``network`` and yield a ``ChainClient``; the connection closes on exit."""
    import bittensor as bt

    from subnet.chain.client import ChainClient

    spec = parse_network(network) if isinstance(network, str) else network
    client, release = build_client(spec)
    try:
        try:
            await client.connect()
        except (bt.BittensorError, ChainError, OSError) as e:  # every way of not getting there
            with contextlib.suppress(bt.BittensorError, ChainError, OSError):
                await client.close()  # best effort: the connect failure is what we report
            raise ChainConnectionError(f"cannot connect to {spec.text}: {e}", "CONNECT") from e
        try:
            yield ChainClient(client, network=spec.text)
        finally:
            await client.close()
    finally:
        release()
