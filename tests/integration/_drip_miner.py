"""A real miner app in a process of its own, streaming one token every DELAY seconds.

    python tests/integration/_drip_miner.py MODEL WALLETS NAME PORT CALLER_HOTKEY DELAY

The miner's own ``build_app`` and ``MinerService`` over the hf engine, slowed per token so a test
can kill the process (SIGKILL: no goodbye on the socket) in the middle of a stream. Callers:
only ``CALLER_HOTKEY``, as a validator with a permit. Serves on 127.0.0.2:PORT until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from distill.identity import identity_for
from neurons.miner.app import Gate, build_app
from neurons.miner.policy import CallerInfo, CallerPolicy, Directory, PolicyLimits, PriorityLimiter
from neurons.miner.serving import MinerService, load_codec
from subnet import auth
from subnet.engine import Completion, Engine, EngineInfo, SamplingParams, Scored, load_engine
from subnet.metrics import MinerMetrics
from subnet.wallets import hotkey_address, load_wallet

HOST = "127.0.0.2"


class Drip:
    """An honest engine whose stream waits ``delay`` seconds before each chunk."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay

    @property
    def info(self) -> EngineInfo:
        return self.inner.info  # type: ignore[no-any-return]

    async def generate(self, prompts: Sequence[Any], params: SamplingParams) -> list[Completion]:
        return await self.inner.generate(prompts, params)  # type: ignore[no-any-return]

    async def generate_stream(
        self, prompt: Any, params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        async with contextlib.aclosing(self.inner.generate_stream(prompt, params)) as chunks:
            async for chunk in chunks:
                await asyncio.sleep(self.delay)
                yield chunk

    async def score(self, prompts: Any, completions: Any, k: int) -> list[Scored]:
        return await self.inner.score(prompts, completions, k)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.inner.close()


async def main(model: Path, wallets: Path, name: str, port: int, caller: str, delay: float) -> None:
    wallet = load_wallet(name, "default", str(wallets))
    engine: Engine = Drip(load_engine("hf", model), delay)
    service = MinerService(
        engine,
        identity=identity_for(model, name=name).format(),
        model_name=name,
        codec=load_codec(model),
        max_tokens=64,
        max_logprobs=20,
    )
    gate = Gate(
        wallet=wallet,
        hotkey=hotkey_address(wallet),
        nonce_store=auth.SqliteNonceStore(wallets.parent / f"nonces-{name}.sqlite", 120.0),
        policy=CallerPolicy(
            Directory({caller: CallerInfo(0, 1000.0, True)}),
            PolicyLimits(rate_rps=1e4, burst=10**5),
        ),
        limiter=PriorityLimiter(8, 64),
    )
    runner = web.AppRunner(build_app(service, gate, MinerMetrics()))
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    print(f"serving on {HOST}:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    model, wallets, name, port, caller, delay = sys.argv[1:7]
    asyncio.run(main(Path(model), Path(wallets), name, int(port), caller, float(delay)))
