"""A weight-copying validator: the real ``subnet validator`` process, minus the work.

    python -m neurons.demo_fixtures.copier SOURCE <subnet validator arguments...>

It takes the validator's flags and config layering, its state-directory lock, its start-up
checks (registered, stake and permit), its state database and its weight setter; instead of
querying and scoring miners it sets, each weight interval, weights copied from the chain:

* ``validators``: the stake-weighted mean of the other permitted validators' weights in force
  (what the owner simulator's ``copier`` scenario models, ``scoring.sim_chain.copy_others``);
* ``consensus``: the consensus the chain computed at its last epoch;
* ``uid:N``: the weights of the validator at uid N.

On a plaintext subnet anyone can read those, so this is the classic weight copier: it earns
dividends without evaluating anyone. It wakes on the validators' grid of blocks and copies at
the start of each weight window, when the rows in force are still the previous window's: a lag
of one window, the simulator's lag-1 copier. Yuma's defences are what the localnet measures with it:
clipping to consensus, bonds that lag (with ``bonds_penalty``), and commit-reveal, which hides
the weights for ``commit_reveal_period`` epochs.

Why a demo fixture and not a mode of ``subnet validator``: any validator can copy weights (it
is legal and takes twenty lines), but the validator the subnet ships is the one the owner asks
validators to run, and a flag that trades evaluation for dividends taken from honest
validators would be an endorsement. It lives beside the localnet's cheating miners, which the
production nodes never import (``tests/unit/test_architecture.py``); everything but the copy
rule is the production validator's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurons.validator.main import (
    CHAIN_BACKOFF,
    config_json,
    first_step_block,
    install_signals,
)
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.startup import PermitWatch, check_standing
from neurons.validator.store import Store
from neurons.validator.weights import WeightSetter
from subnet.chain.protocol import Chain
from subnet.chain.retry import Backoff, retrying
from subnet.chain.types import MetagraphView
from subnet.config import SubnetConfig
from subnet.errors import ChainError, ConfigError
from subnet.state_lock import StateLock
from subnet.wallets import hotkey_address, load_wallet

log = logging.getLogger("subnet.validator.copier")
SOURCES = ("validators", "consensus")
COPY_STEP = 0  # weight sets are recorded against a step; a copier runs none


def check_source(source: str) -> str:
    """``validators``, ``consensus`` or ``uid:N``; anything else is a one-line ConfigError."""
    if source in SOURCES:
        return source
    kind, _, uid = source.partition(":")
    if kind == "uid" and uid.isdigit():
        return source
    raise ConfigError(f"copy source must be one of {', '.join(SOURCES)} or uid:N, got {source!r}")


def copied_weights(
    source: str, rows: dict[int, dict[int, float]], mg: MetagraphView, self_hotkey: str
) -> dict[int, float]:
    """The weights to copy now (uid -> share, summing to 1); empty when there is nothing yet.

    ``rows`` are the weights in force on chain (setter uid -> {uid: fraction}). The copier's
    own uid never gets weight (the chain drops self-weights anyway).
    """
    me = mg.by_hotkey(self_hotkey)
    own = -1 if me is None else me.uid
    picked: dict[int, float] = {}
    if source == "consensus":
        picked = {n.uid: n.consensus for n in mg.neurons}
    elif source.startswith("uid:"):
        picked = dict(rows.get(int(source.removeprefix("uid:")), {}))
    else:
        stake_total = 0.0
        for n in mg.neurons:
            row = rows.get(n.uid)
            if n.uid == own or not n.validator_permit or n.stake <= 0 or not row:
                continue
            row_total = sum(row.values())
            if row_total <= 0:
                continue
            stake_total += n.stake
            for uid, share in row.items():
                picked[uid] = picked.get(uid, 0.0) + n.stake * share / row_total
        picked = {u: v / stake_total for u, v in picked.items()} if stake_total > 0 else {}
    picked.pop(own, None)
    kept = {u: float(v) for u, v in picked.items() if v > 0}
    total = sum(kept.values())
    return {u: v / total for u, v in sorted(kept.items())} if total > 0 else {}


class Copier:
    """One copying validator; ``run`` until ``stop`` is set (or ``max_sets`` weight sets)."""

    def __init__(
        self,
        cfg: SubnetConfig,
        chain: Chain,
        wallet: Any | None = None,
        *,
        source: str = "validators",
        register: bool = False,
        backoff: Backoff = CHAIN_BACKOFF,
    ) -> None:
        self.cfg, self.chain, self.backoff = cfg, chain, backoff
        self.source = check_source(source)
        self.register = register
        self.netuid = cfg.chain.netuid
        self.wallet = wallet or load_wallet(
            cfg.wallet.name,
            cfg.wallet.hotkey,
            cfg.wallet.path,
            password_file=cfg.wallet.password_file or None,
        )
        self.hotkey = hotkey_address(self.wallet)
        self.stop = asyncio.Event()
        self.sets = 0

    async def run(self, max_sets: int | None = None) -> int:
        vc = self.cfg.validator
        state_dir = Path(vc.state_dir).expanduser()
        with StateLock(state_dir, what="validator"):
            standing = await check_standing(
                self.chain,
                self.netuid,
                self.wallet,
                self.hotkey,
                wallet_name=self.cfg.wallet.name,
                wallet_hotkey=self.cfg.wallet.hotkey,
                register=self.register,
            )
            store = Store(state_dir / "validator.sqlite")
            try:
                store.set_meta("config", config_json(self.cfg))
                store.set_meta("role", f"copier:{self.source}")
                setter = WeightSetter(
                    self.chain,
                    self.netuid,
                    self.wallet,
                    store,
                    ValidatorMetrics(),
                    interval=vc.weights_interval,
                    retries=vc.weights_retries,
                    backoff=vc.weights_backoff,
                )
                await self._loop(setter, PermitWatch(self.hotkey, standing.permit), max_sets)
            finally:
                store.close()
        return 0

    async def _loop(self, setter: WeightSetter, permit: PermitWatch, max_sets: int | None) -> None:
        every = self.cfg.validator.step_blocks
        head = await retrying(self.chain.block, "read the chain head", self.backoff)
        target = first_step_block(head, every)
        waiting_said = False
        while not self.stop.is_set() and (max_sets is None or self.sets < max_sets):
            reached = await self._wait_block(target)
            if reached is None:
                return
            head = reached
            target = first_step_block(head + 1, every)
            try:
                if not await setter.due(head):
                    continue
                mg = await self.chain.metagraph(self.netuid, max_age_blocks=0)
                if not permit.allowed(mg):
                    continue
                weights = copied_weights(
                    self.source, await self.chain.weight_rows(self.netuid), mg, self.hotkey
                )
            except ChainError as e:
                log.warning("block %d: chain read failed (tried again next block): %s", head, e)
                continue
            if not weights:
                if not waiting_said:
                    log.info("nothing to copy yet (%s): waiting", self.source)
                    waiting_said = True
                continue
            outcome = await setter.set(head, COPY_STEP, weights)
            if outcome.success:
                self.sets += 1
                log.info(
                    "block %d: copied weights from %s onto %d uids", head, self.source, len(weights)
                )

    async def _wait_block(self, target: int) -> int | None:
        """The head once it reaches ``target`` (chain errors retried); None when stopped."""

        async def wait() -> int:
            return await self.chain.wait_for_block(target)

        waiter = asyncio.ensure_future(retrying(wait, f"wait for block {target}", self.backoff))
        stopper = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for f in (waiter, stopper):
            if f not in done:
                f.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await f
        return int(waiter.result()) if waiter in done else None


async def serve(cfg: SubnetConfig, source: str, register: bool = False) -> int:
    from subnet.chain.network import open_chain

    async with open_chain(cfg.chain.network) as chain:
        node = Copier(cfg, chain, source=source, register=register)
        install_signals(node.stop)
        return await node.run()


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    from subnet.cli import main as subnet_main

    source = argv[0]

    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(
            level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
            format="%(asctime)s %(name)s %(message)s",
        )
        return asyncio.run(serve(args.config, check_source(source), register=args.register))

    return subnet_main(["validator", *argv[1:]], run=run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
