"""A gateway on loopback in front of real miners (``_validator_kit``'s subnet), for its tests.

The validator's scores the gateway routes by are written by the real validator store (an EMA
row per uid, as a committed step leaves them); the gateway reads them through the store's
reader like in production. The app is the real ``build_app`` over the real service, real
SQLite key store and organic inbox, real aiohttp on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from neurons.gateway.access import Access
from neurons.gateway.app import build_app
from neurons.gateway.keys import KeyStore
from neurons.gateway.metrics import GatewayMetrics
from neurons.gateway.serving import GatewayService
from neurons.gateway.text import TextCodec
from neurons.gateway.view import VALIDATOR_DB
from neurons.validator.inbox import INBOX_FILE, OrganicInbox
from neurons.validator.store import EmaRow, StepRow, Store
from subnet.chain.network import open_chain
from subnet.config import SubnetConfig, load_config
from subnet.wallets import hotkey_address
from tests.integration._validator_kit import NETUID, Subnet

MODEL = "distill-subnet"
SEEDED_STEP = StepRow(1, 0, "seed", "digest", 0, 0, None, 0.0)


def subnet_ext(obj: Any) -> dict[str, Any]:
    """A response's ``subnet`` extension (the openai client keeps unknown fields as extras)."""
    return dict((obj.model_extra or {}).get("subnet") or {})


def gateway_config(tmp: Path, teacher: Path, **overrides: Any) -> SubnetConfig:
    values = {
        "chain.netuid": NETUID,
        "validator.teacher": str(teacher),
        "validator.state_dir": str(tmp / "vs"),
        "validator.engine": "hf",
        "gateway.state_dir": str(tmp / "gw"),
        "gateway.organic_fraction": 1.0,
        "gateway.first_token_timeout": 10.0,
        "gateway.idle_timeout": 10.0,
        **overrides,
    }
    return load_config(None, overrides=values, env={})


def seed_scores(cfg: SubnetConfig, sub: Subnet, ema: Mapping[str, float]) -> None:
    """The validator's EMA after one step: ``ema`` by miner name, 0 for every other uid."""
    n = max(sub.uids.values()) + 1
    names = {uid: name for name, uid in sub.uids.items()}
    rows = []
    for uid in range(n):
        name = names.get(uid, "")
        hotkey = hotkey_address(sub.wallets[name]) if name else ""
        rows.append(EmaRow(uid, hotkey, float(ema.get(name, 0.0))))
    store = Store(Path(cfg.validator.state_dir) / VALIDATOR_DB)
    try:
        store.commit_step(SEEDED_STEP, [], [], rows)
    finally:
        store.close()


@dataclass
class Gateway:
    url: str
    service: GatewayService
    keys: KeyStore
    inbox: OrganicInbox
    cfg: SubnetConfig

    def key(self, name: str = "test", **limits: Any) -> str:
        values = {"rps": 1000.0, "burst": 1000, "token_quota": 0, **limits}
        secret, _ = self.keys.create(name, **values)
        return secret


@contextlib.asynccontextmanager
async def running_gateway(cfg: SubnetConfig, sub: Subnet) -> AsyncIterator[Gateway]:
    """The gateway app on 127.0.0.1 (routing view read once, as the refresher does)."""
    state = Path(cfg.gateway.state_dir)
    keys = KeyStore(state / "gateway.sqlite")
    inbox = OrganicInbox(state / INBOX_FILE)
    metrics = GatewayMetrics()
    wallet = sub.wallets["vali"]
    service = GatewayService(
        cfg,
        codec=TextCodec(cfg.validator.teacher),
        access=Access(keys),
        keys=keys,
        inbox=inbox,
        wallet=wallet,
        hotkey=hotkey_address(wallet),
        metrics=metrics,
    )
    async with open_chain(sub.network) as chain:
        await service.refresh(chain)
    runner = web.AppRunner(build_app(service, metrics))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield Gateway(f"http://127.0.0.1:{port}", service, keys, inbox, cfg)
    finally:
        await runner.cleanup()
        keys.close()
        inbox.close()
