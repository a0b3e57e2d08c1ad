"""``subnet miner`` as a real process on the devnet: registers, commits, announces, serves, drains.

Everything read back goes through the SDK (``open_chain``), as a validator would see it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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

    mport = free_port()
    fast = ("--set", "miner.metagraph_refresh=0.5", "--set", "miner.endpoint_check=1")
    log = (tmp_path / "miner.log").open("w")
    proc = subprocess.Popen(
        miner_cmd(
            tiny.teacher, tmp_path, chain, port, "--register", "--metrics-port", str(mport), *fast
        ),
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
        check_probe(tmp_path, chain, me.uid, port, vali)
        await check_operations(tmp_path, tiny, chain, port, mport, miner)

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
    # the same lines, rotated, under the state dir
    logged = (tmp_path / "state" / "miner-miner-default.log").read_text()
    assert "serving" in logged and '"route":"/v1/completions","status":200' in logged


def check_probe(tmp: Path, chain: Path, uid: int, port: int, vali: Any) -> None:
    """``subnet miner probe`` as an operator runs it: the devnet's wallets found without
    ``--wallet.path``, the endpoint and hotkey from the metagraph, the answer verified."""
    base = [sys.executable, "-m", "subnet.cli", "miner", "probe", "--network", f"devnet:{chain}"]
    base += ["--netuid", str(NETUID), "--wallet.name", "vali"]
    out = subprocess.run(
        [*base, "--uid", str(uid)], cwd=tmp, env=env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "HTTP 200, signature ok" in out.stdout and "time to first token" in out.stdout
    assert "tokens (" in out.stdout and "result: OK" in out.stdout
    # a hotkey the answer is not signed by: caught, exit 1
    url = f"http://127.0.0.2:{port}"
    wrong = hotkey_address(vali)  # the request is then bound to another receiver too
    out = subprocess.run(
        [*base, "--url", url, "--hotkey", wrong, "--no-stream"],
        cwd=tmp,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "result: FAILED" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def one_line_failure(cmd: list[str], cwd: Path) -> str:
    """Run a miner that must refuse to start: exit 2, a clear last line, no traceback."""
    out = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stderr.strip().splitlines()[-1]


async def check_operations(
    tmp: Path, tiny: TinyWorld, chain: Path, port: int, mport: int, miner: Any
) -> None:
    """Issue 17, against the running miner: metrics on their own loopback port, a second
    process for the same hotkey refused, a busy port named, a stale endpoint re-announced."""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{mport}/metrics") as r:
            assert r.status == 200 and "miner_requests_total" in await r.text()
        async with s.get(f"http://127.0.0.2:{port}/metrics") as r:
            assert r.status == 404  # never on the public serving port
    # same hotkey, same state dir: refused, naming the live process
    line = one_line_failure(miner_cmd(tiny.teacher, tmp, chain, free_port()), tmp)
    assert "another process (pid" in line and hotkey_address(miner) in line
    # the serving port is taken: one line naming the key (another state dir passes the lock);
    # binding only 127.0.0.1 while 127.0.0.2 is announced is warned about first
    cmd = miner_cmd(tiny.teacher, tmp, chain, port, "--host", "127.0.0.1")
    cmd[cmd.index("--state-dir") + 1] = str(tmp / "state2")
    out = subprocess.run(cmd, cwd=tmp, env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "address already in use" in out.stderr and "miner.port" in out.stderr
    assert "listens only on 127.0.0.1" in out.stderr
    # an address this machine does not have, and a corrupt checkpoint: one line each
    cmd = miner_cmd(tiny.teacher, tmp, chain, free_port(), "--host", "10.255.255.1")
    cmd[cmd.index("--state-dir") + 1] = str(tmp / "state3")
    line = one_line_failure(cmd, tmp)
    assert "address not available on this machine" in line and "miner.host" in line
    bad = tmp / "bad-model"
    shutil.copytree(tiny.teacher, bad)
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:4000])
    cmd = miner_cmd(bad, tmp, chain, free_port())
    cmd[cmd.index("--state-dir") + 1] = str(tmp / "state4")
    assert "is not a readable safetensors file" in one_line_failure(cmd, tmp)
    # someone announces another endpoint for this hotkey: the miner puts its own back
    async with open_chain(f"devnet:{chain}") as client:
        deadline = time.monotonic() + 120
        while True:  # the chain rate-limits serving (50 blocks)
            try:
                await client.serve(NETUID, miner, "127.0.0.2", port + 1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        while time.monotonic() < deadline:
            me = (await client.metagraph(NETUID, max_age_blocks=0)).by_hotkey(hotkey_address(miner))
            if me is not None and me.axon is not None and me.axon.port == port:
                break
            await asyncio.sleep(0.5)
        assert me is not None and me.axon is not None and me.axon.port == port


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
