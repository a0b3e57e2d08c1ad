"""The production miner app on loopback, as the benchmarks serve it: btauth/1 with the SQLite
replay store, caller policy, stake-ordered slots, JSON/SSE and signed responses."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from bittensor.http_auth import Caller
from bittensor.sp_core import Keypair

from neurons.miner.app import Gate, build_app
from neurons.miner.policy import CallerInfo, CallerPolicy, Directory, PolicyLimits, PriorityLimiter
from neurons.miner.serving import MinerService, TextCodec
from subnet.auth import (
    SqliteNonceStore,
    check_single_auth_headers,
    sign_response,
    verify_request,
)
from subnet.engine import Engine
from subnet.metrics import MinerMetrics

MINER_URI, VALI_URI = "//BenchMiner", "//BenchVali"


class InlineGate(Gate):
    """The gate as it was before btauth and signing moved off the event loop: both run inline
    on the loop thread (kept to measure that change side by side)."""

    async def authenticate(self, request: web.Request, body: bytes) -> Caller:
        check_single_auth_headers(request.headers)
        return verify_request(
            request.headers,
            body,
            method=request.method,
            path=request.raw_path,
            self_hotkey=self.hotkey,
            max_age=self.auth_max_age,
            allowed_skew=self.auth_allowed_skew,
            nonce_store=self.nonce_store,
        )

    async def sign(self, **fields: Any) -> dict[str, str]:
        return sign_response(self.wallet, **fields)


@dataclass
class Served:
    runner: web.AppRunner
    url: str
    gate: Gate
    nonces: SqliteNonceStore
    tmp: tempfile.TemporaryDirectory[str]

    async def close(self) -> None:
        await self.runner.cleanup()
        self.nonces.close()
        self.tmp.cleanup()


async def serve_miner(
    engine: Engine,
    *,
    max_tokens: int,
    k: int,
    capacity: int,
    codec: TextCodec | None = None,
    auth_max_age: float = 10.0,
    inline: bool = False,
) -> Served:
    """The app on 127.0.0.1 (a free port) serving ``engine`` to the bench validator key.

    ``auth_max_age`` > 10 s lets a load generator sign a whole level before sending it (the
    checks cost the same whatever the window). ``inline``: serve with :class:`InlineGate`.
    """
    miner, vali = Keypair.create_from_uri(MINER_URI), Keypair.create_from_uri(VALI_URI)
    tmp = tempfile.TemporaryDirectory(prefix="bench-miner-")
    nonces = SqliteNonceStore(Path(tmp.name) / "nonces.sqlite", auth_max_age + 5.0)
    gate = (InlineGate if inline else Gate)(
        wallet=miner,
        hotkey=miner.ss58_address,
        nonce_store=nonces,
        policy=CallerPolicy(
            Directory({vali.ss58_address: CallerInfo(0, 1.0, True)}),
            PolicyLimits(rate_rps=1e9, burst=10**9),
        ),
        limiter=PriorityLimiter(capacity, 4 * capacity),
        auth_max_age=auth_max_age,
        request_timeout=600.0,
    )
    service = MinerService(
        engine,
        identity="v1:" + "0" * 64 + ":bench:local",
        model_name="bench",
        codec=codec,
        max_tokens=max_tokens,
        max_logprobs=k,
    )
    runner = web.AppRunner(build_app(service, gate, MinerMetrics()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return Served(runner, f"http://127.0.0.1:{runner.addresses[0][1]}", gate, nonces, tmp)
