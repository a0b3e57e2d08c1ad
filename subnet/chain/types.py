"""The chain as neurons see it: our own frozen records, never bittensor types.

``subnet/chain/client.py`` translates SDK objects into these at the boundary, so miner and
validator code (and their tests) depend on plain data that cannot change under them when
the SDK does. Scores are fractions in 0..1; stake and emission are in the subnet's alpha
(float) with the exact rao alongside where a rounding error would matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Axon:
    """A served endpoint as published on chain (``ip`` has no brackets for IPv6)."""

    ip: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class NeuronView:
    """One uid's row of the metagraph."""

    uid: int
    hotkey: str
    coldkey: str
    stake: float  # alpha
    stake_rao: int
    validator_permit: bool
    axon: Axon | None
    incentive: float
    dividends: float
    emission: float  # alpha per epoch
    emission_rao: int
    trust: float
    consensus: float
    last_update: int
    block_at_registration: int
    active: bool
    # 0..1: the share of this validator's weight that survived the last epoch's clipping to
    # consensus (the chain's ``ValidatorTrust``; the SDK leaves it in the metagraph's raw record)
    validator_trust: float = 0.0


@dataclass(frozen=True)
class MetagraphView:
    """A subnet's neurons at one block, ordered by uid."""

    netuid: int
    block: int
    tempo: int
    owner_hotkey: str
    owner_coldkey: str
    neurons: tuple[NeuronView, ...]

    def __len__(self) -> int:
        return len(self.neurons)

    @property
    def hotkeys(self) -> list[str]:
        return [n.hotkey for n in self.neurons]

    @property
    def validators(self) -> list[NeuronView]:
        """Neurons holding a validator permit."""
        return [n for n in self.neurons if n.validator_permit]

    def by_hotkey(self, hotkey: str) -> NeuronView | None:
        for neuron in self.neurons:
            if neuron.hotkey == hotkey:
                return neuron
        return None

    def by_uid(self, uid: int) -> NeuronView | None:
        return self.neurons[uid] if 0 <= uid < len(self.neurons) else None


@dataclass(frozen=True)
class Commitment:
    """A hotkey's plaintext commitment (our model identity) and the block it was made at."""

    payload: str
    block: int


@dataclass(frozen=True)
class WeightsResult:
    """What a ``set_weights`` did, checked against what the chain then held.

    ``sent`` is the u16 row the SDK submitted (after its max-weight clip and max-upscale).
    ``matches`` is True when the row read back equals ``sent`` (as fractions, within one
    u16 step), False when it differs, None when it cannot be read yet (commit-reveal: the
    row changes only when the chain reveals it at ``reveal_round``).
    """

    success: bool
    block: int | None
    path: str  # "plaintext" | "commit_reveal"
    matches: bool | None
    sent: dict[int, int] = field(default_factory=dict)
    read_back: dict[int, float] = field(default_factory=dict)
    reveal_round: int | None = None
    message: str = ""
