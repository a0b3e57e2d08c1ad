"""The miner serves its committed files: a signed manifest and each file by its sha256, with
HTTP ranges, to validators the caller policy admits (real aiohttp on loopback, real keys)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from bittensor import http_auth
from bittensor.sp_core import Keypair

from distill.identity import MINER_SOURCE
from distill.manifest import committed_identity, parse_manifest
from neurons.miner.app import Gate, build_app
from neurons.miner.files import ModelFiles, add_routes
from neurons.miner.policy import CallerInfo, CallerPolicy, Directory, PolicyLimits, PriorityLimiter
from neurons.miner.serving import MinerService, load_codec
from subnet import auth, protocol
from subnet.engine import Engine, load_engine
from subnet.metrics import MinerMetrics

pytestmark = pytest.mark.slow

MINER = Keypair.create_from_uri("//MinerFiles")
VALI = Keypair.create_from_uri("//ValiFiles")
NOPERMIT = Keypair.create_from_uri("//NoPermitFiles")
STRANGER = Keypair.create_from_uri("//StrangerFiles")


@pytest.fixture(scope="module")
def engine(tiny) -> Engine:
    return load_engine("hf", tiny.undistilled)  # the routes under test never call it


@pytest_asyncio.fixture
async def miner(tiny, engine: Engine, tmp_path: Path) -> AsyncIterator[tuple[str, ModelFiles]]:
    model = tiny.undistilled
    ident, manifest = committed_identity(model, MINER_SOURCE)
    directory = Directory(
        {
            VALI.ss58_address: CallerInfo(0, 1000.0, True),
            NOPERMIT.ss58_address: CallerInfo(1, 1000.0, False),
        }
    )
    gate = Gate(
        wallet=MINER,
        hotkey=MINER.ss58_address,
        nonce_store=auth.SqliteNonceStore(tmp_path / "nonces.sqlite", 12.0),
        policy=CallerPolicy(directory, PolicyLimits(rate_rps=0.01, burst=6)),
        limiter=PriorityLimiter(4, 16),
    )
    service = MinerService(
        engine,
        identity=ident.format(),
        model_name="student",
        codec=load_codec(model),
        max_tokens=8,
        max_logprobs=5,
    )
    files = ModelFiles(model, manifest, PriorityLimiter(1, 4))
    app = build_app(service, gate, MinerMetrics())
    add_routes(app, files)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", files
    finally:
        await runner.cleanup()


async def get(
    base: str, path: str, *, signer: Keypair | None = VALI, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    h = dict(headers or {})
    if signer is not None:
        h |= http_auth.sign(
            signer, method="GET", path=path, body=b"", receiver_ss58=MINER.ss58_address
        )
    async with aiohttp.ClientSession() as s, s.get(base + path, headers=h) as r:
        return r.status, dict(r.headers), await r.read()


async def test_the_manifest_is_signed_and_lists_exactly_the_committed_files(miner) -> None:
    base, files = miner
    status, headers, body = await get(base, protocol.MODEL_MANIFEST_PATH)
    assert status == 200
    auth.verify_response(
        headers,
        body,
        miner_hotkey=MINER.ss58_address,
        status=200,
        path=protocol.MODEL_MANIFEST_PATH,
        request_body=b"",
        caller=VALI.ss58_address,
    )
    got = parse_manifest(body)
    assert got == files.manifest
    assert {f.path for f in got.files} >= {"config.json", "model.safetensors", "tokenizer.json"}


async def test_a_file_by_its_sha256_whole_and_in_ranges(miner) -> None:
    base, files = miner
    entry = next(f for f in files.manifest.files if f.path == "model.safetensors")
    path = protocol.MODEL_FILE_PATH.format(sha256=entry.sha256)
    status, _, data = await get(base, path)
    assert status == 200 and hashlib.sha256(data).hexdigest() == entry.sha256
    status, headers, part = await get(base, path, headers={"Range": "bytes=1000-"})
    assert status == 206 and part == data[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{entry.size - 1}/{entry.size}"
    status, _, _ = await get(base, path, headers={"Range": f"bytes={entry.size + 5}-"})
    assert status == 416


@pytest.mark.parametrize(
    "sha", ["0" * 64, "not-a-hash", hashlib.sha256(b"README").hexdigest(), "../config.json"]
)
async def test_only_committed_hashes_are_served(miner, sha: str) -> None:
    base, _ = miner
    status, _, body = await get(base, f"/v1/model/files/{sha}")
    assert status == 404, body


@pytest.mark.parametrize(
    ("signer", "status", "cause"),
    [
        (None, 401, "auth_malformed"),
        (NOPERMIT, 403, "no_validator_permit"),
        (STRANGER, 403, "not_registered"),
    ],
)
async def test_only_admitted_validators_get_files(miner, signer, status, cause) -> None:
    base, files = miner
    for path in (
        protocol.MODEL_MANIFEST_PATH,
        protocol.MODEL_FILE_PATH.format(sha256=files.manifest.files[0].sha256),
    ):
        got, _, body = await get(base, path, signer=signer)
        assert got == status, body
        assert json.loads(body)["error"]["code"] == cause


async def test_file_requests_are_rate_limited_per_hotkey(miner) -> None:
    base, _ = miner
    statuses = [(await get(base, protocol.MODEL_MANIFEST_PATH))[0] for _ in range(8)]
    assert statuses[:6] == [200] * 6 and statuses[6:] == [429, 429]
