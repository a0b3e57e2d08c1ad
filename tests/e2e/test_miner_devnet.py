"""``subnet miner`` as a real process on the devnet: registers, commits, announces, serves, drains.

Everything read back goes through the SDK (``open_chain``), as a validator would see it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from bittensor import http_auth

from distill.identity import MINER_SOURCE
from distill.manifest import committed_identity, parse_manifest
from distill.tiny import TinyWorld
from subnet import auth, protocol
from subnet.chain.devnet import Devnet
from subnet.chain.network import open_chain
from subnet.wallets import coldkey_address, create_wallet, hotkey_address

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
TAO = 10**9
NETUID = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def miner_cmd(model: Path, tmp: Path, chain: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "subnet.cli",
        "miner",
        "--model",
        str(model),
        "--engine",
        "hf",
        "--network",
        f"devnet:{chain}",
        "--netuid",
        str(NETUID),
        "--wallet.name",
        "miner",
        "--wallet.hotkey",
        "default",
        "--wallet.path",
        str(tmp / "wallets"),
        "--port",
        str(port),
        "--state-dir",
        str(tmp / "state"),
        *extra,
    ]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


async def test_miner_process_registers_commits_serves_and_drains(
    tmp_path: Path, tiny: TinyWorld
) -> None:
    wallets = {
        n: create_wallet(n, "default", tmp_path / "wallets") for n in ("owner", "vali", "miner")
    }
    chain = tmp_path / "chain.sqlite"
    net = Devnet.create(
        chain,
        block_time=0.05,
        clock="wall",
        enable_mev_shield=False,
        sudo_ss58=coldkey_address(wallets["owner"]),
    )
    net.add_subnet(coldkey_address(wallets["owner"]), hotkey_address(wallets["owner"]), tempo=50)
    vali, miner = wallets["vali"], wallets["miner"]
    net.register(NETUID, hotkey_address(vali), coldkey_address(vali))
    net.set_stake(NETUID, hotkey_address(vali), 1000 * TAO)
    net.fund(coldkey_address(miner), 1000 * TAO)
    port = free_port()

    # unregistered and no --register: a clear one-line refusal, before loading anything
    refused = subprocess.run(
        miner_cmd(tiny.teacher, tmp_path, chain, port),
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "--register" in refused.stderr
    assert "Traceback" not in refused.stderr

    log = (tmp_path / "miner.log").open("w")
    proc = subprocess.Popen(
        miner_cmd(tiny.teacher, tmp_path, chain, port, "--register"),
        cwd=tmp_path,
        env=env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.2:{port}"
        health = await wait_healthy(base, proc, tmp_path / "miner.log")
        expected = committed_identity(tiny.teacher, MINER_SOURCE)[0].format()  # v2, from itself
        assert health["identity"] == expected
        async with open_chain(f"devnet:{chain}") as client:
            deadline = time.monotonic() + 60  # health answers just before the axon is announced
            while True:
                me = (await client.metagraph(NETUID, max_age_blocks=0)).by_hotkey(
                    hotkey_address(miner)
                )
                if (me is not None and me.axon is not None) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert me is not None and me.axon is not None
            assert (me.axon.ip, me.axon.port) == ("127.0.0.2", port)
            ids = await client.identities(NETUID)
            assert ids[hotkey_address(miner)].payload == expected

        # a validator call to the announced endpoint; the answer's signature verifies
        body = json.dumps({"prompt": [1, 5, 6], "max_tokens": 3, "logprobs": 2}).encode()
        headers = auth.sign_request(
            vali, "POST", protocol.COMPLETIONS_PATH, body, hotkey_address(miner)
        )
        async with (
            aiohttp.ClientSession() as s,
            s.post(me.axon.url + protocol.COMPLETIONS_PATH, data=body, headers=headers) as r,
        ):
            assert r.status == 200, await r.text()
            out = await r.read()
            auth.verify_response(
                r.headers,
                out,
                miner_hotkey=hotkey_address(miner),
                status=200,
                path=protocol.COMPLETIONS_PATH,
                request_body=body,
                caller=hotkey_address(vali),
                request_nonce=int(headers[http_auth.HEADER_NONCE]),
            )
        assert json.loads(out)["subnet"]["identity"] == expected

        # the committed files, served to a validator by the real node
        path = protocol.MODEL_MANIFEST_PATH
        headers = auth.sign_request(vali, "GET", path, b"", hotkey_address(miner))
        async with aiohttp.ClientSession() as s, s.get(me.axon.url + path, headers=headers) as r:
            assert r.status == 200, await r.text()
            manifest = parse_manifest(await r.read())
        assert manifest.digest == expected.split(":")[1]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "miner.log").read_text()
    assert '"route":"/v1/completions","status":200' in text  # the access-log line


async def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path) -> dict:
    deadline = time.monotonic() + 300
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"miner exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                async with s.get(base + protocol.HEALTH_PATH) as r:
                    if r.status == 200:
                        return dict(await r.json())
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    pytest.fail(f"miner never became healthy:\n{log.read_text()[-3000:]}")
