"""The validator process: startup, a main loop driven by chain blocks, bounded shutdown.

Lifecycle (uvicorn's shape): ``startup`` opens resources as async context managers (the chain,
the state database, the teacher, the HTTP session, the metrics server), ``main_loop`` waits for
the next step block with ``chain.wait_for_block`` (never a sleep) and runs one step, then sets
weights when due; SIGTERM/SIGINT set a stop flag, the step in flight gets ``shutdown_grace``
seconds to finish and is then cancelled (it commits nothing, so nothing is half-written).

Restart resumes: the next step number and the first block to run come from the store.

The chain may drop away: a read the loop needs (the head, the next block, its seed) is
retried with bounded exponential backoff and a WARNING each time; a step whose own chain
reads fail is skipped like any failed step; weights not set for a chain failure are tried
again after the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from tokenizers import Tokenizer

from distill.identity import identity_for
from distill.tasks import check_families
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.queries import Baseline
from neurons.validator.spotcheck import ModelCache
from neurons.validator.step import StepContext, StepResult, run_step
from neurons.validator.store import Store
from neurons.validator.weights import WeightSetter, compute_weights
from subnet.chain.protocol import Chain
from subnet.chain.retry import Backoff, retrying
from subnet.config import SubnetConfig
from subnet.engine import Engine, load_engine
from subnet.errors import ChainError, ConfigError, StateError
from subnet.wallets import hotkey_address, load_wallet

log = logging.getLogger("subnet.validator")
T = TypeVar("T")
# A chain read before a step is retried 1, 2, 4 ... 60 s apart: about 4 minutes, then exit.
CHAIN_BACKOFF = Backoff(base=1.0, cap=60.0, tries=10)


async def block_seed(chain: Chain, block: int) -> str:
    """The step's public seed: the block's hash, else (not yet known) network+block."""
    return await chain.block_hash(block) or f"{chain.network}#{block}"


def config_json(cfg: SubnetConfig) -> str:
    """The scoring/weights config recorded in the store (the simulator's replay reads it)."""
    keep = ("scoring", "verify", "speed", "weights", "validator")
    return json.dumps({k: dataclasses.asdict(getattr(cfg, k)) for k in keep}, sort_keys=True)


async def _load(kind: str, path: str | Path) -> Engine:
    return await asyncio.to_thread(load_engine, kind, path)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def metrics_server(metrics: ValidatorMetrics, port: int) -> AsyncIterator[None]:
    if port <= 0:
        yield
        return

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def check_config(cfg: SubnetConfig) -> None:
    """What the validator needs from its config before it loads anything (one-line errors)."""
    vc = cfg.validator
    if not vc.teacher:
        raise ConfigError("validator.teacher is required (--teacher PATH)")
    try:
        check_families(vc.task_families)
    except ValueError as e:
        raise ConfigError(f"validator.task_families: {e}") from e


class Validator:
    """One validator node; ``run`` until ``stop`` is set (or ``max_steps`` steps ran)."""

    def __init__(
        self,
        cfg: SubnetConfig,
        chain: Chain,
        wallet: Any | None = None,
        *,
        backoff: Backoff = CHAIN_BACKOFF,
    ) -> None:
        check_config(cfg)
        self.cfg, self.chain, self.backoff = cfg, chain, backoff
        self.netuid = cfg.chain.netuid
        self.wallet = wallet or load_wallet(
            cfg.wallet.name,
            cfg.wallet.hotkey,
            cfg.wallet.path,
            password_file=cfg.wallet.password_file or None,
        )
        self.hotkey = hotkey_address(self.wallet)
        self.stop = asyncio.Event()
        self.metrics = ValidatorMetrics()
        self.results: list[StepResult] = []

    async def run(
        self, max_steps: int | None = None, on_ready: Callable[[], None] | None = None
    ) -> int:
        """Load engines and state, then step until stopped; ``on_ready`` runs once everything
        is loaded, before the first step (the node's entry point freezes the GC there)."""
        vc = self.cfg.validator
        async with contextlib.AsyncExitStack() as stack:
            store = Store(Path(vc.state_dir).expanduser() / "validator.sqlite")
            stack.callback(store.close)
            store.set_meta("config", config_json(self.cfg))
            teacher = await _load(vc.engine, vc.teacher)
            stack.push_async_callback(teacher.close)
            models = ModelCache(
                [r.strip() for r in vc.model_roots.split(",") if r.strip()],
                vc.model_cache,
                lambda p: _load(vc.engine, p),
            )
            stack.push_async_callback(models.close)
            models.pin(identity_for(vc.teacher).digest, teacher)
            baseline = None
            if vc.baseline:
                ident = identity_for(vc.baseline)
                engine = await _load(vc.engine, vc.baseline)
                stack.push_async_callback(engine.close)
                models.pin(ident.digest, engine)
                baseline = Baseline(engine, ident.format(), ident.digest)
            # No pool limit: the step caps queries in flight itself (validator.concurrency),
            # and a pool smaller than the subnet would close and reopen connections each step.
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            )
            await stack.enter_async_context(metrics_server(self.metrics, vc.metrics_port))
            ctx = StepContext(
                self.cfg,
                self.chain,
                self.netuid,
                self.wallet,
                self.hotkey,
                teacher,
                Tokenizer.from_file(str(Path(vc.teacher) / "tokenizer.json")),
                store,
                self.metrics,
                models,
                session,
                baseline,
            )
            setter = WeightSetter(
                self.chain,
                self.netuid,
                self.wallet,
                store,
                self.metrics,
                interval=vc.weights_interval,
                retries=vc.weights_retries,
                backoff=vc.weights_backoff,
            )
            if on_ready is not None:
                on_ready()
            await self._loop(ctx, setter, max_steps)
        return 0

    async def _loop(self, ctx: StepContext, setter: WeightSetter, max_steps: int | None) -> None:
        vc = self.cfg.validator
        last = ctx.store.last_step()
        if last:
            step, next_block = last[0] + 1, last[1] + vc.step_blocks
        else:
            step, next_block = 1, await self._read("read the chain head", self.chain.block)
        ran = 0
        while not self.stop.is_set() and (max_steps is None or ran < max_steps):
            start = await self._read(
                f"wait for block {next_block}", functools.partial(self._start, next_block)
            )
            if start is None:
                break
            block, seed = start
            self.metrics.block.set(block)
            task = asyncio.create_task(run_step(ctx, step, block, seed))
            try:
                result = await self._finish(task)
            except StateError as e:
                log.error("step %d at block %d not committed: %s", step, block, e)
                self.metrics.steps.labels("error").inc()
                raise
            except ChainError as e:  # the step's own chain reads failed: skip this block
                log.warning("step %d at block %d skipped: %s", step, block, e)
                self.metrics.steps.labels("error").inc()
                next_block = block + vc.step_blocks
                continue
            except Exception as e:  # an engine failure: skip this block, keep running
                log.exception("step %d at block %d failed: %s", step, block, e)
                self.metrics.steps.labels("error").inc()
                next_block = block + vc.step_blocks
                continue
            if result is None:
                break
            self.results.append(result)
            log.info(
                "step %d block %d: %d answers, means %s",
                step,
                block,
                result.n_answers,
                {u: round(v, 3) for u, v in result.means.items()},
            )
            step, next_block, ran = step + 1, block + vc.step_blocks, ran + 1
            try:
                await self._set_weights_if_due(setter, block, result)
            except ChainError as e:  # a read before the set failed: due again after next step
                log.warning("weights not set at block %d (next step tries again): %s", block, e)

    async def _set_weights_if_due(
        self, setter: WeightSetter, block: int, result: StepResult
    ) -> None:
        if not await setter.due(block):
            return
        mg = await self.chain.metagraph(self.netuid, max_age_blocks=0)
        weights, winner = compute_weights(
            result.ema,
            mg,
            self.hotkey,
            self.cfg.weights,
            setter.winner,
            ema_hotkeys=result.hotkeys,
        )
        outcome = await setter.set(block, result.step, weights)
        if outcome.success:
            setter.winner = winner

    async def _read(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A chain read the loop cannot go on without: any ChainError is retried with backoff
        (reads are safe to repeat, and the SDK reports a dropped block subscription as a plain
        ChainError) until asked to stop; after ``backoff.tries`` failures in a row it
        propagates and the process exits, for its supervisor to restart it afresh."""

        def keep_trying(error: ChainError) -> bool:
            return not self.stop.is_set()

        return await retrying(call, what, self.backoff, retry_if=keep_trying, sleep=self._pause)

    async def _start(self, target: int) -> tuple[int, str] | None:
        """The block a step runs at and its seed; None when asked to stop first."""
        block = await self._wait_block(target)
        return None if block is None else (block, await block_seed(self.chain, block))

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless asked to stop first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _wait_block(self, target: int) -> int | None:
        """Wait for the chain head to reach ``target`` unless asked to stop first."""
        waiter = asyncio.ensure_future(self.chain.wait_for_block(target))
        stopper = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for f in (waiter, stopper):
            if f not in done:
                f.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await f
        if waiter in done:
            return int(waiter.result())
        return None

    async def _finish(self, task: asyncio.Task[StepResult]) -> StepResult | None:
        """The step's result; on stop, wait up to ``shutdown_grace`` then cancel it."""
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self.cfg.validator.shutdown_grace)
            if not task.done():
                log.warning("step cancelled at shutdown (nothing of it was written)")
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return None
        return task.result()


def install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def serve(cfg: SubnetConfig, max_steps: int | None = None) -> int:
    from subnet.chain.network import open_chain

    async with open_chain(cfg.chain.network) as chain:
        node = Validator(cfg, chain)
        install_signals(node.stop)
        # Once the engines are loaded, freeze what exists: the cyclic GC's full collections
        # scan every tracked object (~430k once transformers is in), and one took ~0.5 s of a
        # 2 s step at 256 miners; frozen, they only scan what the steps allocate.
        return await node.run(max_steps, on_ready=gc.freeze)
