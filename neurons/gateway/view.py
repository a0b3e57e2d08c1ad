"""What requests are routed by: the validator's scores and the metagraph, read in the background.

:class:`RoutingView` is refreshed every ``gateway.refresh_interval`` seconds (the metagraph for
each uid's hotkey and endpoint, the validator's EMA through its store's reader) and read on the
request path, so a slow chain or a busy validator never stalls a request; a failed refresh keeps
the last good view (counted and logged). The same read gives the validator's organic-inbox
cursor, so what the validator has read is pruned from the inbox here. Miners that failed a
request are tried last for ``gateway.failure_cooldown`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path
from typing import Any

from neurons.gateway.errors import GatewayError
from neurons.gateway.metrics import GatewayMetrics
from neurons.gateway.routing import Candidate, eligible, rank
from neurons.validator.inbox import OrganicInbox, parse_cursor
from neurons.validator.organic import CURSOR_KEY
from neurons.validator.store import StoreReader
from subnet.chain.protocol import SubnetReads
from subnet.config import SubnetConfig
from subnet.errors import ChainError, StateError

log = logging.getLogger("subnet.gateway")
VALIDATOR_DB = "validator.sqlite"  # the validator's state file inside validator.state_dir


class RoutingView:
    def __init__(
        self,
        cfg: SubnetConfig,
        hotkey: str,
        inbox: OrganicInbox,
        metrics: GatewayMetrics,
        rng: random.Random,
    ) -> None:
        self.cfg, self.gc = cfg, cfg.gateway
        self.hotkey, self.inbox, self.metrics, self.rng = hotkey, inbox, metrics, rng
        self.candidates: list[Candidate] = []
        self.updated: float | None = None
        self.cooling: dict[int, float] = {}  # uid -> until (monotonic)

    @property
    def validator_db(self) -> Path:
        return Path(self.cfg.validator.state_dir).expanduser() / VALIDATOR_DB

    async def refresh(self, chain: SubnetReads) -> None:
        """Read the metagraph and the validator's EMA; prune what the validator has read."""
        mg = await chain.metagraph(self.cfg.chain.netuid)
        ema, cursor = await asyncio.to_thread(self._read_validator)
        self.candidates = eligible(ema, mg.neurons, self.hotkey)
        self.updated = time.time()
        self.metrics.candidates.set(len(self.candidates))
        self.metrics.refreshed.set(self.updated)
        read_through = parse_cursor(cursor, self.inbox.inbox)
        await asyncio.to_thread(self.inbox.prune, read_through, self.gc.inbox_max_rows)

    def _read_validator(self) -> tuple[list[Any], str | None]:
        with StoreReader(self.validator_db, missing_ok=True) as reader:
            return reader.ema(), reader.meta().get(CURSOR_KEY)

    async def refresh_loop(self, chain: SubnetReads) -> None:
        """Forever: refresh, keep the last good view on failure (counted and logged)."""
        while True:
            try:
                await self.refresh(chain)
            except (ChainError, StateError) as e:
                self.metrics.refresh_errors.inc()
                log.warning("routing view not refreshed (keeping the last one): %s", e)
            except Exception:  # backstop: the refresher must outlive any one failure
                self.metrics.refresh_errors.inc()
                log.exception("routing view not refreshed (keeping the last one)")
            await asyncio.sleep(self.gc.refresh_interval)

    def order(self) -> list[Candidate]:
        """The miners to try for one request, in order (503 when there is none)."""
        now = time.monotonic()
        for uid in [u for u, t in self.cooling.items() if t <= now]:
            del self.cooling[uid]
        ranked = rank(self.candidates, top_n=self.gc.top_n, rng=self.rng, cooling=set(self.cooling))
        if not ranked:
            raise GatewayError(
                503,
                "no_miners",
                "no miner can be used yet: the validator has not scored any (retry later)",
                retry_after=self.gc.refresh_interval,
            )
        return ranked[: self.gc.max_attempts]

    def failed(self, uid: int) -> None:
        self.cooling[uid] = time.monotonic() + self.gc.failure_cooldown
