"""The gateway process: startup in a fixed order, serve until signalled, drain, exit 0.

Startup: wallet (the validator's: requests to miners are signed with its hotkey) -> the
teacher's tokenizer (``validator.teacher``) -> the gateway's database and organic inbox
(``gateway.state_dir``) -> chain -> the first routing view (the metagraph and the validator's
scores; a chain blip is waited out) -> HTTP server bound -> serve. SIGTERM/SIGINT stop
accepting, let in-flight requests finish (``gateway.shutdown_grace`` seconds at most) and
return 0; a second signal acts as usual.

Why a process of its own next to the validator (and not inside it): users need the API up while
the validator restarts, loads engines or runs a long step, and the validator's state keeps a
single writer. The two share the wallet and the config; they talk through files, each written
by one side only (the validator's database, read here; the organic inbox, read there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from neurons.gateway.access import Access
from neurons.gateway.app import build_app
from neurons.gateway.keys import DB_FILE, KeyStore
from neurons.gateway.metrics import GatewayMetrics
from neurons.gateway.serving import GatewayService
from neurons.gateway.text import TextCodec
from neurons.validator.inbox import INBOX_FILE, OrganicInbox
from subnet.chain.retry import Backoff, retrying
from subnet.config import SubnetConfig
from subnet.errors import ConfigError
from subnet.wallets import hotkey_address, load_wallet

log = logging.getLogger("subnet.gateway")
STARTUP_BACKOFF = Backoff(base=1.0, cap=16.0, tries=6)


def check_config(cfg: SubnetConfig) -> None:
    if not cfg.validator.teacher:
        raise ConfigError(
            "validator.teacher is required: the gateway tokenizes with the teacher's tokenizer "
            "(--teacher PATH)"
        )
    gc = cfg.gateway
    if gc.default_max_tokens > gc.max_tokens:
        raise ConfigError("gateway.default_max_tokens must be <= gateway.max_tokens")


async def serve(cfg: SubnetConfig, ready: asyncio.Event | None = None) -> int:
    """Run the gateway until signalled (``ready`` is set once it listens)."""
    from subnet.chain.network import open_chain

    check_config(cfg)
    gc = cfg.gateway
    wallet = load_wallet(
        cfg.wallet.name,
        cfg.wallet.hotkey,
        cfg.wallet.path,
        password_file=cfg.wallet.password_file or None,
    )
    hotkey = hotkey_address(wallet)
    codec = TextCodec(cfg.validator.teacher)
    state = Path(gc.state_dir).expanduser()
    keys = KeyStore(state / DB_FILE)
    inbox = OrganicInbox(state / INBOX_FILE)
    metrics = GatewayMetrics()
    service = GatewayService(
        cfg,
        codec=codec,
        access=Access(keys),
        keys=keys,
        inbox=inbox,
        wallet=wallet,
        hotkey=hotkey,
        metrics=metrics,
    )
    try:
        async with open_chain(cfg.chain.network) as chain:
            await retrying(lambda: service.refresh(chain), "read the routing view", STARTUP_BACKOFF)
            app = build_app(service, metrics, chain=chain)
            runner = web.AppRunner(app, shutdown_timeout=gc.shutdown_grace, access_log=None)
            await runner.setup()
            stop = asyncio.Event()
            try:
                try:
                    await web.TCPSite(runner, gc.host, gc.port).start()
                except OSError as e:
                    raise ConfigError(
                        f"cannot listen on {gc.host}:{gc.port}: {e.strerror or e}"
                    ) from e
                log.info(
                    "gateway on http://%s:%d serving %r for validator %s (%d miners eligible)",
                    gc.host,
                    gc.port,
                    gc.model_name,
                    hotkey,
                    len(service.routes.candidates),
                )
                with _signals(stop):
                    if ready is not None:
                        ready.set()
                    await stop.wait()
                    log.info("shutting down: finishing in-flight requests")
            finally:
                await runner.cleanup()
    finally:
        keys.close()
        inbox.close()
    return 0


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` once; handlers are restored afterwards."""
    loop = asyncio.get_running_loop()

    def handler(sig: signal.Signals) -> None:
        log.info("received %s", sig.name)
        stop.set()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(s)

    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, handler, s)
    try:
        yield
    finally:
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(s)
