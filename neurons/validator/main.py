"""The validator process: startup, a main loop driven by chain blocks, bounded shutdown.

Lifecycle (uvicorn's shape): ``startup`` opens resources as async context managers (the chain,
the state database, the teacher, the HTTP session, the metrics server), ``main_loop`` waits for
the next step block with ``chain.wait_for_block`` (never a sleep) and runs one step, then sets
weights when due; SIGTERM/SIGINT set a stop flag, the step in flight gets ``shutdown_grace``
seconds to finish and is then cancelled (it commits nothing, so nothing is half-written).

Start-up (``neurons.validator.startup``): an exclusive lock on the state directory (a second
process on it stops with the holder's pid), then the hotkey's standing on chain (unregistered:
stop with the command that registers; uid, stake and permit in one line; no permit: keep scoring,
say weights wait for one), then the state, the teacher and the rest.

Steps run at multiples of ``step_blocks`` (:func:`step_block`), whichever block a validator
started at, so every honest validator of a subnet queries the same blocks with the same seeds
and their scores differ only by what the network does to each query. A step that overran
skips to the latest multiple reached, never off the grid. Restart resumes: the next step number
and the first block to run come from the store.

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
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from distill.identity import identity_for
from distill.prompts import file_kind
from distill.tasks import check_families
from neurons.validator import miner_client
from neurons.validator.export import CSV_DIR, export_server, write_step_csv
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.organic import organic_inbox
from neurons.validator.prompts import SYNTHETIC, PromptSelector, parse_sources
from neurons.validator.queries import Baseline
from neurons.validator.spotcheck import ModelCache
from neurons.validator.startup import PermitWatch, check_standing
from neurons.validator.step import StepContext, StepResult, run_step
from neurons.validator.store import Store
from neurons.validator.verifier import build_fetcher, build_verifier
from neurons.validator.weights import WeightOutcome, WeightSetter, compute_weights
from subnet import auth
from subnet.chain.network import wallet_folder
from subnet.chain.protocol import Chain
from subnet.chain.retry import Backoff, retrying
from subnet.config import SubnetConfig
from subnet.engine import Engine, load_engine
from subnet.engine.types import MIN_TEMPERATURE
from subnet.errors import ChainError, ConfigError, StateError
from subnet.metrics import serve_metrics
from subnet.state_lock import StateLock
from subnet.tokenizer import ModelTokenizer
from subnet.wallets import hotkey_address, load_wallet

log = logging.getLogger("subnet.validator")
T = TypeVar("T")
# A chain read before a step is retried 1, 2, 4 ... 60 s apart: about 4 minutes, then exit.
CHAIN_BACKOFF = Backoff(base=1.0, cap=60.0, tries=10)


def first_step_block(head: int, every: int) -> int:
    """The first step block at or after ``head``: the next multiple of ``every``."""
    return -(-head // every) * every


def step_block(target: int, head: int, every: int) -> int:
    """The block a step waiting for ``target`` runs at once the head is ``head``: ``target``,
    or the latest multiple of ``every`` the head has reached when the wait overran a step."""
    return max(target, head // every * every)


async def block_seed(chain: Chain, block: int) -> str:
    """The step's public seed: the block's hash, else (not yet known) network+block."""
    return await chain.block_hash(block) or f"{chain.network}#{block}"


def config_json(cfg: SubnetConfig) -> str:
    """The scoring/weights config recorded in the store (the simulator's replay reads it)."""
    keep = ("scoring", "verify", "speed", "weights", "validator")
    return json.dumps({k: dataclasses.asdict(getattr(cfg, k)) for k in keep}, sort_keys=True)


async def _load(kind: str, path: str | Path) -> Engine:
    return await asyncio.to_thread(load_engine, kind, path)  # type: ignore[arg-type]


def check_config(cfg: SubnetConfig) -> None:
    """What the validator needs from its config before it loads anything (one-line errors)."""
    vc = cfg.validator
    if not vc.teacher:
        raise ConfigError("validator.teacher is required (--teacher PATH)")
    try:
        check_families(vc.task_families)
    except ValueError as e:
        raise ConfigError(f"validator.task_families: {e}") from e
    for spec in parse_sources(vc.prompt_sources):  # rows are read once the teacher is known
        if spec.name != SYNTHETIC:
            try:
                file_kind(spec.name)
            except ValueError as e:
                raise ConfigError(f"validator.prompt_sources: {e}") from e
    if 0 < vc.temperature < MIN_TEMPERATURE:  # miners would refuse every query (400)
        raise ConfigError(
            f"validator.temperature: {vc.temperature} is below {MIN_TEMPERATURE} (0 = greedy)"
        )


class Validator:
    """One validator node; ``run`` until ``stop`` is set (or ``max_steps`` steps ran)."""

    def __init__(
        self,
        cfg: SubnetConfig,
        chain: Chain,
        wallet: Any | None = None,
        *,
        backoff: Backoff = CHAIN_BACKOFF,
        register: bool = False,
    ) -> None:
        check_config(cfg)
        self.cfg, self.chain, self.backoff, self.register = cfg, chain, backoff, register
        self.netuid = cfg.chain.netuid
        self.wallet = wallet or load_wallet(
            cfg.wallet.name,
            cfg.wallet.hotkey,
            wallet_folder(cfg.chain.network, cfg.wallet.path),
            password_file=cfg.wallet.password_file or None,
        )
        self.hotkey = hotkey_address(self.wallet)
        self.stop = asyncio.Event()
        self.metrics = ValidatorMetrics()
        self.results: list[StepResult] = []
        self.permit = PermitWatch(self.hotkey)

    async def run(
        self, max_steps: int | None = None, on_ready: Callable[[], None] | None = None
    ) -> int:
        """Load engines and state, then step until stopped; ``on_ready`` runs once everything
        is loaded, before the first step (the node's entry point freezes the GC there)."""
        vc = self.cfg.validator
        async with contextlib.AsyncExitStack() as stack:
            state_dir = Path(vc.state_dir).expanduser()
            stack.enter_context(StateLock(state_dir, what="validator"))
            standing = await check_standing(
                self.chain,
                self.netuid,
                self.wallet,
                self.hotkey,
                wallet_name=self.cfg.wallet.name,
                wallet_hotkey=self.cfg.wallet.hotkey,
                register=self.register,
            )
            self.permit = PermitWatch(self.hotkey, standing.permit)
            store = Store(state_dir / "validator.sqlite")
            stack.callback(store.close)
            store.set_meta("config", config_json(self.cfg))
            tokenizer = ModelTokenizer(vc.teacher)
            # before the (minutes-long) teacher load: a busy port fails at once
            await stack.enter_async_context(
                serve_metrics(
                    self.metrics,
                    vc.metrics_host,
                    vc.metrics_port,
                    keys="validator.metrics_host/metrics_port",
                )
            )
            teacher = await _load(vc.engine, vc.teacher)
            stack.push_async_callback(teacher.close)
            prompts = await asyncio.to_thread(
                PromptSelector.from_config, vc, tokenizer, teacher.info
            )
            store.set_meta("prompt_sources", json.dumps(prompts.summary(), sort_keys=True))
            for source in prompts.summary():
                log.info("prompt source %s", json.dumps(source, sort_keys=True))
            # No pool limit: the step caps queries in flight itself (validator.concurrency),
            # and a pool smaller than the subnet would close and reopen connections each step.
            session = await stack.enter_async_context(
                miner_client.miner_session(connector=aiohttp.TCPConnector(limit=0))
            )
            # Resolved once: a wallet resolved per request re-reads its key files (0.7 ms).
            signer = auth.hotkey_signer(self.wallet)
            fetcher = build_fetcher(vc, signer, session)
            stack.push_async_callback(fetcher.close)
            models = ModelCache(
                [r.strip() for r in vc.model_roots.split(",") if r.strip()],
                vc.model_cache,
                lambda p: _load(vc.engine, p),
                fetcher,
            )
            fetcher.protect = models.loaded
            stack.push_async_callback(models.close)
            models.pin(identity_for(vc.teacher).digest, teacher)
            baseline = None
            if vc.baseline:
                ident = identity_for(vc.baseline)
                engine = await _load(vc.engine, vc.baseline)
                stack.push_async_callback(engine.close)
                models.pin(ident.digest, engine)
                baseline = Baseline(engine, ident.format(), ident.digest)
            verifier = await build_verifier(
                self.cfg, self.chain, store, models, fetcher, self.metrics
            )
            await stack.enter_async_context(
                export_server(
                    store.path,
                    self._csv_dir,
                    host=vc.export_host,
                    port=vc.export_port,
                    hotkey=self.hotkey,
                    netuid=self.netuid,
                )
            )
            await self._log_start()
            ctx = StepContext(
                self.cfg,
                self.chain,
                self.netuid,
                signer,
                self.hotkey,
                teacher,
                tokenizer,
                store,
                self.metrics,
                models,
                session,
                baseline,
                prompts=prompts,
                organic_inbox=organic_inbox(self.cfg),
                verifier=verifier,
            )
            await verifier.prefetch(self.chain, self.netuid, self.hotkey, vc.startup_fetch_wait)
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

    async def _log_start(self) -> None:
        """One INFO line: who this validator is on chain and what it will ask."""
        vc = self.cfg.validator
        mg = await self._read("read the metagraph", lambda: self.chain.metagraph(self.netuid))
        me = mg.by_hotkey(self.hotkey)
        who = (
            f"uid {me.uid}, stake {me.stake:,.2f}, permit {'yes' if me.validator_permit else 'no'}"
            if me is not None
            else "NOT REGISTERED (weights will be refused)"
        )
        log.info(
            "validator %s on %s netuid %d: %s; teacher %s (%s engine); %d prompts per step "
            "from %s (synthetic families %s); %d miners with an endpoint; state %s",
            self.hotkey,
            self.chain.network,
            self.netuid,
            who,
            vc.teacher,
            vc.engine,
            vc.tasks_per_step,
            vc.prompt_sources,
            ",".join(vc.task_families),
            sum(1 for n in mg.neurons if n.axon is not None and n.hotkey != self.hotkey),
            Path(vc.state_dir).expanduser(),
        )

    async def _loop(self, ctx: StepContext, setter: WeightSetter, max_steps: int | None) -> None:
        vc = self.cfg.validator
        last = ctx.store.last_step()
        if last:
            step, next_block = last[0] + 1, first_step_block(last[1] + 1, vc.step_blocks)
        else:
            head = await self._read("read the chain head", self.chain.block)
            step, next_block = 1, first_step_block(head, vc.step_blocks)
        ran = 0
        while not self.stop.is_set() and (max_steps is None or ran < max_steps):
            start = await self._read(
                f"wait for block {next_block}", functools.partial(self._start, next_block)
            )
            if start is None:
                break
            block, seed = start
            self.metrics.block.set(block)
            t0 = time.perf_counter()
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
            log.info(step_line(result, time.perf_counter() - t0))
            step, next_block, ran = step + 1, block + vc.step_blocks, ran + 1
            try:
                await self._set_weights_if_due(setter, block, result)
            except ChainError as e:  # a read before the set failed: due again after next step
                log.warning("weights not set at block %d (next step tries again): %s", block, e)
            await self._export_csv(ctx.store.path, result.step)

    @property
    def _csv_dir(self) -> Path:
        return Path(self.cfg.validator.state_dir).expanduser() / CSV_DIR

    async def _export_csv(self, db: Path, step: int) -> None:
        """The step's public CSV (after weights, so it names the set this step made); a
        failure is logged, never a reason to stop validating."""
        try:
            await asyncio.to_thread(write_step_csv, db, self._csv_dir, step)
        except (OSError, StateError) as e:
            log.warning("score CSV of step %d not written: %s", step, e)

    async def _set_weights_if_due(
        self, setter: WeightSetter, block: int, result: StepResult
    ) -> None:
        if not await setter.due(block):
            return
        mg = await self.chain.metagraph(self.netuid, max_age_blocks=0)
        if not self.permit.allowed(mg):
            return
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
        log.info(weights_line(outcome))

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
        head = await self._wait_block(target)
        if head is None:
            return None
        block = step_block(target, head, self.cfg.validator.step_blocks)
        return block, await block_seed(self.chain, block)

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


def step_line(r: StepResult, seconds: float, top: int = 3) -> str:
    """One step in one line: answers, failures by cause, the best EMAs, its duration."""
    causes = Counter(c for cs in r.causes.values() for c in cs)
    ok = causes.pop("ok", 0)
    failed = ", ".join(f"{c} {n}" for c, n in causes.most_common()) or "none"
    best = sorted(((v, u) for u, v in r.ema.items() if v > 0), reverse=True)[:top]
    leaders = ", ".join(f"uid {u} {v:.3f}" for v, u in best) or "none yet"
    base = "" if r.baseline_score is None else f"; baseline {r.baseline_score:.3f}"
    return (
        f"step {r.step} block {r.block}: {r.n_answers} answers from {len(r.causes)} miners, "
        f"{ok} ok, failed: {failed}; top EMA: {leaders}{base}; {seconds:.1f} s"
    )


def weights_line(o: WeightOutcome, top: int = 3) -> str:
    if not o.success:
        return f"weights NOT set at block {o.block} after {o.attempts} attempt(s): {o.error}"
    best = sorted(((w, u) for u, w in o.weights.items()), reverse=True)[:top]
    shown = ", ".join(f"uid {u} {w:.3f}" for w, u in best) or "none"
    read_back = {True: "read back equal", False: "read back DIFFERENT", None: "not read back"}
    return (
        f"weights set at block {o.block}: {len(o.weights)} uids ({shown}), "
        f"{read_back[o.matches]}, {o.attempts} attempt(s)"
    )


def install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def serve(cfg: SubnetConfig, max_steps: int | None = None, register: bool = False) -> int:
    from subnet.chain.network import open_chain

    async with open_chain(cfg.chain.network) as chain:
        node = Validator(cfg, chain, register=register)
        install_signals(node.stop)
        # Once the engines are loaded, freeze what exists: the cyclic GC's full collections
        # scan every tracked object (~430k once transformers is in), and one took ~0.5 s of a
        # 2 s step at 256 miners; frozen, they only scan what the steps allocate.
        return await node.run(max_steps, on_ready=gc.freeze)
