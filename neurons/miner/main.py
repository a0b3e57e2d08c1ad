"""The miner process: startup in a fixed order, serve until signalled, drain, exit 0.

Startup: wallet -> chain (registered? register with ``--register``, else stop with a clear
message) -> engine -> model identity (digest of the weight files, committed on chain when it
changed) -> HTTP server bound -> endpoint announced on chain (skipped when unchanged, so
restarts do not trip the serving rate limit) -> serve. SIGTERM/SIGINT stop accepting, let
in-flight requests finish (``miner.shutdown_grace`` seconds at most) and return 0; a second
signal kills the process the default way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from distill.identity import MINER_SOURCE, ModelSource
from distill.manifest import Manifest, committed_identity
from neurons.miner.app import Gate, build_app
from neurons.miner.connections import ConnectionGuard, ConnectionLimits, GuardedRunner
from neurons.miner.endpoint import EndpointKeeper, bind_mismatch
from neurons.miner.files import ModelFiles, add_routes
from neurons.miner.policy import (
    CallerInfo,
    CallerPolicy,
    Directory,
    PolicyLimits,
    PriorityLimiter,
    callers_from_metagraph,
)
from neurons.miner.serving import MinerService, load_codec
from subnet.auth import SqliteNonceStore
from subnet.chain.network import parse_network, wallet_folder
from subnet.chain.protocol import Chain
from subnet.chain.retry import Backoff, retrying
from subnet.config import SubnetConfig
from subnet.errors import ConfigError
from subnet.listen import start_site
from subnet.metrics import MinerMetrics, serve_metrics
from subnet.pidlock import PidLock
from subnet.wallets import hotkey_address, load_wallet

if TYPE_CHECKING:
    from subnet.engine.types import Engine

EngineFactory = Callable[..., "Engine"]  # (kind, model_dir, **engine options) -> Engine

log = logging.getLogger("subnet.miner")
LOOPBACK_ANNOUNCE = "127.0.0.2"  # the chain rejects 127.0.0.1; 127.0.0.2 is loopback on Linux
STARTUP_BACKOFF = Backoff(base=1.0, cap=16.0, tries=6)  # about half a minute, then exit


@dataclass(frozen=True)
class MinerOptions:
    model: str
    register: bool = False
    model_name: str | None = None
    revision: str = "local"
    hf_repo: str | None = None  # commit the model as fetchable from this HF repo ...
    hf_revision: str | None = None  # ... at this pinned commit (else: from the miner itself)

    def source(self) -> ModelSource:
        """Where validators fetch the committed files (IdentityError for bad flags)."""
        if self.hf_repo is None and self.hf_revision is None:
            return MINER_SOURCE
        if not (self.hf_repo and self.hf_revision):
            raise ConfigError("--hf-repo and --hf-revision go together (a pinned 40-hex commit)")
        return ModelSource("hf", self.hf_repo, self.hf_revision)


def announce_ip(config: SubnetConfig) -> str:
    if config.miner.external_ip:
        return config.miner.external_ip
    spec = parse_network(config.chain.network)
    if spec.kind == "devnet" or spec.text == "local":
        return LOOPBACK_ANNOUNCE
    raise ConfigError("miner.external_ip is required on a public network: pass --external-ip")


async def serve(
    config: SubnetConfig,
    opts: MinerOptions,
    ready: asyncio.Event | None = None,
    engine_factory: EngineFactory | None = None,
) -> int:
    """Run the node until signalled. ``engine_factory`` (default ``subnet.engine.load_engine``)
    is the seam test fixtures use to serve a wrapped engine behind the real node."""
    from subnet.engine import load_engine

    load = engine_factory or load_engine

    mc = config.miner
    model_dir = Path(opts.model).expanduser()
    if not model_dir.is_dir():
        raise ConfigError(f"--model {opts.model}: not a model folder (no hub downloads here)")
    source = opts.source()
    ip = announce_ip(config)
    wallet = load_wallet(
        config.wallet.name,
        config.wallet.hotkey,
        wallet_folder(config.chain.network, config.wallet.path),
        password_file=config.wallet.password_file or None,
    )
    hotkey = hotkey_address(wallet)
    # One live miner per hotkey and state dir: a second one would re-announce its own port and,
    # when it stops, leave the first unreachable behind a stale endpoint.
    with PidLock(
        Path(mc.state_dir).expanduser() / f"miner-{hotkey}.lock", f"a miner for hotkey {hotkey}"
    ):
        return await _serve_locked(config, opts, wallet, hotkey, ip, load, model_dir, source, ready)


async def _serve_locked(
    config: SubnetConfig,
    opts: MinerOptions,
    wallet: Any,
    hotkey: str,
    ip: str,
    load: EngineFactory,
    model_dir: Path,
    source: ModelSource,
    ready: asyncio.Event | None,
) -> int:
    from subnet.chain.network import open_chain

    mc, netuid = config.miner, config.chain.netuid
    async with open_chain(config.chain.network) as chain:
        uid = await chain.is_registered(netuid, hotkey)
        if uid is None and not opts.register:
            raise ConfigError(
                f"hotkey {hotkey} is not registered on netuid {netuid} of "
                f"{config.chain.network}: pass --register to register it (burns TAO)"
            )
        if uid is None:
            uid = await chain.register(netuid, wallet)
            log.info("registered as uid %d on netuid %d", uid, netuid)

        kind: Literal["vllm", "hf"] = "hf" if mc.engine == "hf" else "vllm"
        engine = load(kind, model_dir, max_top_logprobs=max(mc.max_logprobs, 1))
        try:
            identity, manifest = committed_identity(
                model_dir, source, opts.model_name, opts.revision
            )
            ident = identity.format()
            current = (await chain.identities(netuid)).get(hotkey)
            if current is None or current.payload != ident:
                await chain.commit_identity(netuid, wallet, ident)
                log.info("committed identity %s", ident)
            return await _run_server(
                config, chain, wallet, hotkey, engine, ident, model_dir, manifest, ip, uid, ready
            )
        finally:
            await engine.close()


async def _run_server(
    config: SubnetConfig,
    chain: Chain,
    wallet: Any,
    hotkey: str,
    engine: Engine,
    ident: str,
    model_dir: Path,
    manifest: Manifest,
    ip: str,
    uid: int,
    ready: asyncio.Event | None,
) -> int:
    mc, netuid = config.miner, config.chain.netuid
    directory = Directory()
    metrics = MinerMetrics()
    keeper = EndpointKeeper(
        chain,
        netuid,
        wallet,
        hotkey,
        ip,
        mc.port,
        min_interval=mc.endpoint_check,
        on_announce=lambda reason: metrics.endpoint_announcements.labels(reason).inc(),
    )
    serving = False  # the endpoint is re-checked only once the server listens

    async def fetch_callers() -> dict[str, CallerInfo]:
        mg = await chain.metagraph(netuid)
        if serving:
            await keeper.ensure(mg)
        return callers_from_metagraph(mg.neurons)

    # policy is live before the first request; a chain blip at startup is waited out
    directory.replace(await retrying(fetch_callers, "read the caller directory", STARTUP_BACKOFF))
    state = Path(mc.state_dir).expanduser()
    store = SqliteNonceStore(
        state / f"nonces-{hotkey}.sqlite", retention=mc.auth_max_age + mc.auth_allowed_skew + 5.0
    )
    gate = Gate(
        wallet=wallet,
        hotkey=hotkey,
        nonce_store=store,
        policy=CallerPolicy(
            directory,
            PolicyLimits(
                min_stake=mc.min_validator_stake,
                require_permit=mc.require_validator_permit,
                rate_rps=mc.rate_limit_rps,
                burst=mc.rate_limit_burst,
            ),
        ),
        limiter=PriorityLimiter(mc.max_concurrency, mc.max_queue),
        auth_max_age=mc.auth_max_age,
        auth_allowed_skew=mc.auth_allowed_skew,
        max_body_bytes=mc.max_body_bytes,
        request_timeout=mc.request_timeout,
        body_timeout=mc.body_timeout,
    )
    service = MinerService(
        engine,
        identity=ident,
        model_name=model_dir.name,
        codec=load_codec(model_dir),
        max_tokens=mc.max_tokens,
        max_logprobs=mc.max_logprobs,
    )
    guard = ConnectionGuard(
        ConnectionLimits(
            header_timeout=mc.header_timeout,
            max_connections=mc.max_connections,
            max_per_source=mc.max_connections_per_source,
        ),
        on_refused=lambda reason: metrics.connections_refused.labels(reason).inc(),
        on_timeout=metrics.header_timeouts.inc,
    )
    app = build_app(
        service,
        gate,
        metrics,
        directory=directory,
        fetch_callers=fetch_callers,
        refresh_interval=mc.metagraph_refresh,
        guard=guard,
    )
    add_routes(app, ModelFiles(model_dir, manifest, PriorityLimiter(mc.model_transfers, 64)))
    runner = GuardedRunner(
        app,
        guard,
        shutdown_timeout=mc.shutdown_grace,
        access_log=None,
        keepalive_timeout=mc.keepalive_timeout,
    )
    await runner.setup()
    stop = asyncio.Event()
    try:
        async with serve_metrics(
            metrics, mc.metrics_host, mc.metrics_port, keys="miner.metrics_host/metrics_port"
        ):
            if (warning := bind_mismatch(mc.host, ip, mc.port)) is not None:
                log.warning(warning)
            await start_site(runner, mc.host, mc.port, keys="miner.host/miner.port")
            await keeper.ensure(await chain.metagraph(netuid, max_age_blocks=0), startup=True)
            serving = True
            log.info(
                "miner uid %d serving %s on %s:%d (announced %s:%d, metrics %s)",
                uid,
                ident,
                mc.host,
                mc.port,
                ip,
                mc.port,
                f"{mc.metrics_host}:{mc.metrics_port}" if mc.metrics_port else "off",
            )
            with _signals(stop):
                if ready is not None:
                    ready.set()
                await stop.wait()
                log.info("shutting down: finishing in-flight requests")
    finally:
        await runner.cleanup()  # stop accepting, wait for handlers, run cleanup contexts
        store.close()
    return 0


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` once; handlers are restored afterwards."""
    loop = asyncio.get_running_loop()

    def handler(sig: signal.Signals) -> None:
        log.info("received %s", sig.name)
        stop.set()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(s)  # a second signal acts as usual

    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, handler, s)
    try:
        yield
    finally:
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(s)
