"""EMA -> chain weights every tempo, through the chain adapter, read back and compared.

Due once per window of ``interval`` blocks (default: the subnet tempo, never below the chain's
weights rate limit), windows starting at multiples of it, so validators that started at
different blocks still set weights after the same step. A failure that may pass (lost
connection, rate limit, a read-back that differs from what was sent) is retried with
exponential backoff; a refusal the chain will repeat is not. The final outcome, success or
not, is recorded in the store and the metrics, so a failure is never silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store import Store
from scoring import aggregate
from scoring.config import WeightsConfig
from subnet.chain.protocol import Chain
from subnet.chain.retry import Backoff, Sleep
from subnet.chain.types import MetagraphView
from subnet.errors import ChainError

log = logging.getLogger("subnet.validator.weights")


@dataclass(frozen=True)
class WeightOutcome:
    block: int
    weights: dict[int, float]
    success: bool
    attempts: int
    matches: bool | None
    error: str = ""


def compute_weights(
    ema: dict[int, float],
    mg: MetagraphView,
    self_hotkey: str,
    cfg: WeightsConfig,
    prev_winner: int | None = None,
    ema_hotkeys: Sequence[str] = (),
) -> tuple[dict[int, float], int | None]:
    """uid -> weight over the metagraph; the owner uid and this validator are not eligible.

    ``ema_hotkeys[uid]`` is the hotkey that earned ``ema[uid]``: a uid that changed hands since
    (deregistered and re-registered during the step) gets nothing from its predecessor's EMA.
    With no eligible miner all weight goes to the owner uid (burned), never to nobody.
    """
    n = len(mg.neurons)
    owner = next((x.uid for x in mg.neurons if x.hotkey == mg.owner_hotkey), 0)

    def earned(u: int) -> float:
        if ema_hotkeys and (u >= len(ema_hotkeys) or ema_hotkeys[u] != mg.neurons[u].hotkey):
            return 0.0
        return max(0.0, float(ema.get(u, 0.0)))

    e = np.array([earned(u) for u in range(n)])
    eligible = np.array([x.hotkey not in (self_hotkey, mg.owner_hotkey) for x in mg.neurons])
    res = aggregate.transform_weights(e, cfg, eligible, prev_winner)
    w = aggregate.apply_burn(res.weights, owner, cfg.burn_share)
    return {u: float(w[u]) for u in range(n) if w[u] > 0}, res.winner


class WeightSetter:
    """Sets weights when due; ``sleep`` is injectable so tests record the backoff, not wait it."""

    def __init__(
        self,
        chain: Chain,
        netuid: int,
        wallet: Any,
        store: Store,
        metrics: ValidatorMetrics,
        *,
        interval: int,
        retries: int,
        backoff: float,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.chain, self.netuid, self.wallet = chain, netuid, wallet
        self.store, self.metrics = store, metrics
        self.interval, self.retries = interval, retries
        self.backoff = Backoff(base=backoff, cap=max(backoff, 60.0), tries=retries)
        self.sleep = sleep
        self.last_block = store.last_weight_block()
        self.winner: int | None = None

    async def effective_interval(self) -> int:
        base = self.interval if self.interval > 0 else int(await self.chain.tempo(self.netuid))
        limit = int(await self.chain.weights_rate_limit(self.netuid))
        return max(base, limit, 1)

    async def due(self, block: int) -> bool:
        """Once per window of ``effective_interval`` blocks, the windows starting at its
        multiples, and never faster than the rate limit. Every validator of a subnet then sets
        weights after the same step (steps run on a grid too), from EMAs of the same answers."""
        if self.last_block is None:
            return True
        window = await self.effective_interval()
        limit = int(await self.chain.weights_rate_limit(self.netuid))
        return block // window > self.last_block // window and block - self.last_block >= limit

    async def set(self, block: int, step: int, weights: dict[int, float]) -> WeightOutcome:
        """Set ``weights``; always recorded; never raises on chain failures.

        A transient failure (lost connection, rate limit) or a read-back that differs is
        retried with exponential backoff, ``retries`` attempts in all. A refusal the chain
        will repeat (``NeuronNoValidatorPermit``, ``NOT_REGISTERED``...) stops at once.
        """
        error, matches, read_back = "", None, {}
        attempt = 0
        for attempt in range(1, self.retries + 1):
            try:
                res = await self.chain.set_weights(self.netuid, self.wallet, weights)
            except ChainError as e:
                error = f"{e.name}: {e}"
                self.metrics.weight_sets.labels("error").inc()
                if not e.transient:
                    error += " (the chain's answer: not retried)"
                    break
                log.warning("set_weights attempt %d/%d failed: %s", attempt, self.retries, error)
            else:
                matches, read_back = res.matches, dict(res.read_back)
                if matches is False:
                    error = f"read-back differs: sent {res.sent}, chain holds {read_back}"
                    log.error("weights read back differ from what was sent: %s", error)
                    self.metrics.weight_sets.labels("mismatch").inc()
                else:
                    error = ""
                    self.metrics.weight_sets.labels("ok").inc()
                    if res.path == "commit_reveal":
                        log.info(
                            "weights committed timelocked (revealed at drand round %s)",
                            res.reveal_round,
                        )
                    break
            if attempt < self.retries:
                await self.sleep(self.backoff.delay(attempt))
        success = not error
        self.store.record_weight_set(
            block=block,
            step=step,
            weights=weights,
            success=success,
            attempts=attempt,
            matches=matches,
            error=error,
            read_back=read_back,
        )
        if success:
            self.last_block = block
            self.metrics.last_weights_block.set(block)
        else:
            log.error("weight setting failed after %d attempt(s): %s", attempt, error)
        return WeightOutcome(block, weights, success, attempt, matches, error)
