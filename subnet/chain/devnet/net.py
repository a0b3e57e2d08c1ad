"""``Devnet``: the embedded chain's handle (create/open a file, seed it, move its clock).

Seeding helpers (``add_subnet``, ``register``, ``set_stake``, ``fund``) write directly, like a
genesis config, and skip signatures; everything the SDK sends goes through
``DevnetSubstrate`` and is signed, checked and dispatched like on a node.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from subnet.chain.devnet import epoch, hparams, pallet
from subnet.chain.devnet.clock import CLOCKS, head
from subnet.chain.devnet.errors import DevnetChainError
from subnet.chain.devnet.pallet import DispatchError
from subnet.chain.devnet.status import DevnetStatus, build_status
from subnet.chain.devnet.store import Store, get_meta, set_meta
from subnet.chain.devnet.substrate import DevnetSubstrate
from subnet.errors import StateError

if TYPE_CHECKING:
    import bittensor as bt

ALICE_SS58 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"  # //Alice, the dev sudo key
ALPHA_PER_BLOCK = 1_000_000_000  # 1 α per block, as on a young subnet


class Devnet:
    """A stateful chain in one SQLite file; many processes may open the same file."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.read() as db:
            self.chain_id = str(get_meta(db, "chain_id"))
            self.block_time = float(get_meta(db, "block_time"))
            self.clock = str(get_meta(db, "clock"))
            self.mev_shield = bool(get_meta(db, "mev_shield"))

    @classmethod
    def create(
        cls,
        path: str | Path,
        block_time: float = 0.25,
        clock: str = "manual",
        *,
        sudo_ss58: str = ALICE_SS58,
        enable_mev_shield: bool = True,
        alpha_per_block: int = ALPHA_PER_BLOCK,
        stake_threshold: int = 0,
    ) -> Devnet:
        """A fresh chain at block 0. The MEV shield is on by default because the SDK's
        ``BurnedRegister`` intent requires it; turn it off to mimic a plain localnet."""
        if clock not in CLOCKS:
            raise StateError(f"clock must be one of {CLOCKS}, got {clock!r}")
        if not block_time > 0:
            raise StateError(f"block_time must be > 0 seconds, got {block_time}")
        meta = {
            "chain_id": os.urandom(16).hex(),
            "genesis_time": time.time(),
            "block_time": float(block_time),
            "clock": clock,
            "manual_head": 0,
            "processed_block": 0,
            "sudo": sudo_ss58,
            "mev_shield": bool(enable_mev_shield),
            "alpha_per_block": int(alpha_per_block),
            "stake_threshold": int(stake_threshold),
        }
        return cls(Store.create(path, meta))

    @classmethod
    def open(cls, path: str | Path) -> Devnet:
        return cls(Store.open(path))

    def close(self) -> None:
        self.store.close()

    def substrate(self) -> bt.Substrate:
        """A fresh ``Substrate`` for ``bittensor.Client("local", substrate=...)``.

        Typed as the SDK's Protocol, which it implements but for one honest difference: the
        Protocol says ``block_hash`` returns ``str``, while the devnet (like a real node,
        whose RPC answers null) returns None for a block it does not have yet.
        """
        return cast("bt.Substrate", DevnetSubstrate(self))

    # --- clock ---------------------------------------------------------------------------

    def touch(self) -> int:
        """The head block, after running every epoch that became due (once, chain-wide)."""
        with self.store.read() as db:
            now, done = head(db), int(get_meta(db, "processed_block"))
        if now > done:
            with self.store.tx() as db:
                now = head(db)
                epoch.run_due(db, now)
        return now

    def head(self) -> int:
        return self.touch()

    def advance(self, blocks: int = 1) -> int:
        """Manual clock: move the head and run the epochs that became due; returns the head."""
        if self.clock != "manual":
            raise StateError("advance() needs clock='manual'; the wall clock moves by itself")
        if blocks < 0:
            raise StateError(f"cannot advance by {blocks} blocks")
        with self.store.tx() as db:
            new = int(get_meta(db, "manual_head")) + int(blocks)
            set_meta(db, "manual_head", new)
            epoch.run_due(db, new)
        return new

    # --- seeding -------------------------------------------------------------------------

    def _write(self, fn: Any) -> Any:
        now = self.touch()
        try:
            with self.store.tx() as db:
                return fn(db, now)
        except DispatchError as e:
            raise DevnetChainError(e.docs, e.name) from e

    def add_subnet(
        self,
        owner_coldkey_ss58: str,
        owner_hotkey_ss58: str,
        tempo: int = 360,
        **hyperparameters: Any,
    ) -> int:
        """Create a subnet (owner hotkey at uid 0). Keywords: ``hparams.KEYWORDS``."""
        unknown = set(hyperparameters) - hparams.KEYWORDS
        if unknown:
            raise DevnetChainError(
                f"unknown hyperparameters {sorted(unknown)}; known: {sorted(hparams.KEYWORDS)}",
                "UnknownHyperparameter",
            )
        values = {**hparams.DEFAULTS, **hyperparameters, "tempo": int(tempo)}
        for name, value in values.items():
            if isinstance(hparams.DEFAULTS[name], bool):
                values[name] = bool(value)
            elif isinstance(hparams.DEFAULTS[name], int):
                values[name] = int(value)
        return int(
            self._write(
                lambda db, now: pallet.add_subnet(
                    db, owner_coldkey_ss58, owner_hotkey_ss58, now, values
                )
            )
        )

    def register(self, netuid: int, hotkey_ss58: str, coldkey_ss58: str) -> int:
        """Register a hotkey without a signed extrinsic and without burning."""
        return int(
            self._write(
                lambda db, now: pallet.register(
                    db, netuid, hotkey_ss58, coldkey_ss58, now, burn=False
                )
            )
        )

    def set_stake(self, netuid: int, hotkey_ss58: str, alpha_rao: int) -> None:
        """Seed a hotkey's alpha stake; validator permits are refreshed (top-k by stake)."""
        self._write(lambda db, now: pallet.set_stake(db, netuid, hotkey_ss58, int(alpha_rao)))

    def fund(self, coldkey_ss58: str, rao: int) -> None:
        """Credit free TAO (to pay a non-zero ``burn``)."""

        def credit(db: Any, now: int) -> None:
            pallet.ensure_account(db, coldkey_ss58)
            db.execute("UPDATE accounts SET free=free+? WHERE ss58=?", (int(rao), coldkey_ss58))

        self._write(credit)

    def hyperparameters(self, netuid: int) -> dict[str, Any]:
        with self.store.read() as db:
            try:
                return pallet.hp(db, netuid)
            except DispatchError as e:
                raise DevnetChainError(e.docs, e.name) from e

    def status(self) -> DevnetStatus:
        now = self.touch()
        with self.store.read() as db:
            return build_status(db, str(self.store.path), now, self.clock, self.block_time)

    def weights(self, netuid: int) -> dict[int, list[tuple[int, int]]]:
        """Stored (max-upscaled u16) weight rows by uid, for tests and the simulator."""
        with self.store.read() as db:
            return {
                int(r["uid"]): [tuple(e) for e in json.loads(r["weights"])]
                for r in pallet.neurons(db, netuid)
            }

    def timelocked_commits(self, netuid: int) -> int:
        """Timelocked weight commits held (unrevealed) for ``netuid``: the devnet records them
        but never reveals them, since a reveal needs the drand round's signature."""
        with self.store.read() as db:
            row = db.execute("SELECT COUNT(*) FROM tl_commits WHERE netuid=?", (int(netuid),))
            return int(row.fetchone()[0])
