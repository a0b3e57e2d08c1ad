"""``Chain``: what the neurons need from the chain, as a Protocol they are written against.

``subnet.chain.client.ChainClient`` is the one production implementation (mypy checks it at
the bottom of that module); unit tests pass an in-memory fake (``tests/harness/fake_chain.py``).
Every method speaks our frozen types and fails with ``subnet.errors.ChainError`` only:
``ChainConnectionError`` when the chain was not reached (worth retrying), a plain
``ChainError`` whose ``name`` is the chain's answer otherwise (``transient`` when a rate limit
may lift). ``SubnetReads`` is the read-only slice a validator step takes, so a benchmark can
hand a step a static metagraph without faking writes it never makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from subnet.chain.types import Commitment, MetagraphView, WeightsResult

if TYPE_CHECKING:
    from bittensor import WalletLike


class SubnetReads(Protocol):
    """Who is on a subnet and which model each hotkey committed."""

    async def metagraph(self, netuid: int, *, max_age_blocks: int = 1) -> MetagraphView:
        """The subnet's neurons; reused while fewer than ``max_age_blocks`` blocks passed."""
        ...

    async def identities(self, netuid: int) -> dict[str, Commitment]:
        """hotkey -> its current plaintext commitment."""
        ...


class Chain(SubnetReads, Protocol):
    """Everything a miner or validator reads from or writes to the chain."""

    @property
    def network(self) -> str:
        """The network string the chain was opened with (part of a fallback seed)."""
        ...

    # -- blocks ---------------------------------------------------------------------------

    async def block(self) -> int: ...

    async def block_hash(self, block: int) -> str | None:
        """The hash of ``block``; None if the chain does not have it yet."""
        ...

    async def wait_for_block(
        self, block: int | None = None, *, timeout: float | None = None
    ) -> int:
        """Wait until the head reaches ``block`` (default: the next one); returns the head."""
        ...

    # -- subnet parameters ----------------------------------------------------------------

    async def tempo(self, netuid: int) -> int: ...

    async def weights_rate_limit(self, netuid: int) -> int: ...

    # -- registration, serving, identity --------------------------------------------------

    async def is_registered(self, netuid: int, hotkey_ss58: str) -> int | None:
        """The hotkey's uid on the subnet, or None."""
        ...

    async def register(self, netuid: int, wallet: WalletLike) -> int:
        """Register the wallet's hotkey (idempotent); returns its uid."""
        ...

    async def serve(self, netuid: int, wallet: WalletLike, ip: str, port: int) -> None: ...

    async def commit_identity(self, netuid: int, wallet: WalletLike, payload: str) -> None: ...

    # -- weights --------------------------------------------------------------------------

    async def set_weights(
        self,
        netuid: int,
        wallet: WalletLike,
        weights: dict[int, float],
        version_key: int = 0,
    ) -> WeightsResult:
        """Set the hotkey's weights; the result says whether the chain holds what was sent."""
        ...

    async def weight_rows(self, netuid: int) -> dict[int, dict[int, float]]:
        """Weights in force: setter uid -> {uid: fraction of its row} (empty rows left out)."""
        ...
