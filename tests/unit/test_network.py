"""Network strings: every accepted form, and a clear ConfigError for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from subnet.chain.network import DEVNET_FILE, open_chain, parse_network
from subnet.errors import ConfigError


def test_devnet_folder_and_file_forms(tmp_path):
    folder = parse_network(f"devnet:{tmp_path}")
    assert folder.kind == "devnet" and folder.label == "local"
    assert folder.devnet_file == tmp_path / DEVNET_FILE
    assert folder.devnet_dir == tmp_path
    named_file = parse_network("devnet:.devnet/devnet.sqlite")
    assert named_file.devnet_file == Path(".devnet/devnet.sqlite")
    assert named_file.devnet_dir == Path(".devnet")
    existing = tmp_path / "chain.bin"
    existing.write_bytes(b"")
    assert parse_network(f"devnet:{existing}").devnet_file == existing


@pytest.mark.parametrize("name", ["local", "test", "finney", " finney "])
def test_named_networks_pass_through(name):
    spec = parse_network(name)
    assert spec.kind == "named" and spec.label == name.strip() and spec.devnet_file is None


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9944", "wss://entrypoint-finney.example:443"])
def test_urls(url):
    spec = parse_network(url)
    assert spec.kind == "url" and spec.label == url


@pytest.mark.parametrize("bad", ["", "devnet:", "mainnet", "http://x", "ws://", "devnet"])
def test_bad_networks_are_config_errors(bad):
    with pytest.raises(ConfigError, match="devnet"):
        parse_network(bad)


async def test_missing_devnet_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="devnet init"):
        async with open_chain(f"devnet:{tmp_path / 'nowhere'}"):
            pass


async def test_unreachable_node_is_a_connect_chain_error(tmp_path, monkeypatch):
    from subnet.errors import ChainConnectionError

    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ChainConnectionError) as info:
        async with open_chain("ws://127.0.0.1:1"):
            pass
    assert info.value.name == "CONNECT" and info.value.transient
