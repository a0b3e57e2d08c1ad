"""Who answers in a validator step: a miner of the subnet, or the validator's own baseline.

Both go through the same gates and the same teacher, and differ only where this module says so.
A :class:`Miner` is a uid on the metagraph: it is queried over the network, its speed is scored
against the other miners', its answers must come from the model its hotkey committed on chain,
and its answers make its EMA and so its weight. The :class:`BaselineStudent` is the reference
student the validator runs itself (``validator.baseline``): it answers locally, so its timing
says nothing; it commits nothing on chain, so the identity gates do not apply (the validator
knows its digest and pins its engine in the model cache for spot checks); and it is never
weighted, its mean score is only reported (``StepResult.baseline_score``).

An :class:`OrganicMiner` is a miner answering a user's request that the gateway routed to it and
handed to the validator with the miner's signature (``neurons/validator/organic.py``): the same
uid and hotkey, the same identity gates and spot checks, but no reference answer to score it
against and a request length the user chose, so neither its score nor its speed is compared.

Which answers count toward an EMA is decided from the participant's role by
:func:`scoring.causes.counts_toward_ema` (and which can prove a lie by
:func:`scoring.causes.counts_toward_lie_check`), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from scoring.causes import Role


@dataclass(frozen=True)
class Miner:
    """A uid of the subnet and the hotkey that held it when it answered."""

    uid: int
    hotkey: str
    role: ClassVar[Role] = Role.MINER
    speed_scored: ClassVar[bool] = True  # timed over the network against the other miners
    identity_gated: ClassVar[bool] = True  # must serve the model its hotkey committed

    def __post_init__(self) -> None:
        if self.uid < 0:
            raise ValueError(f"a miner's uid is >= 0, got {self.uid}")

    @property
    def key(self) -> str:
        """Stable short name: metric labels, spot-check draws (the uid, as always)."""
        return str(self.uid)

    def __str__(self) -> str:
        return f"uid {self.uid}"


@dataclass(frozen=True)
class BaselineStudent:
    """The validator's own reference student (there is at most one per step)."""

    uid: ClassVar[None] = None  # not on the metagraph
    hotkey: ClassVar[str] = "baseline"
    role: ClassVar[Role] = Role.BASELINE
    speed_scored: ClassVar[bool] = False  # answered locally: no network time to compare
    identity_gated: ClassVar[bool] = False  # commits nothing; its digest is known locally

    @property
    def key(self) -> str:
        return "baseline"

    def __str__(self) -> str:
        return "baseline"


@dataclass(frozen=True)
class OrganicMiner:
    """A miner's answer to a user's request, routed by the gateway (see the module docstring)."""

    uid: int
    hotkey: str
    role: ClassVar[Role] = Role.ORGANIC
    speed_scored: ClassVar[bool] = False  # the user chose the length; nothing to compare with
    identity_gated: ClassVar[bool] = True  # must serve the model its hotkey committed

    def __post_init__(self) -> None:
        if self.uid < 0:
            raise ValueError(f"a miner's uid is >= 0, got {self.uid}")

    @property
    def key(self) -> str:
        return str(self.uid)

    def __str__(self) -> str:
        return f"uid {self.uid} (organic)"


Participant: TypeAlias = Miner | BaselineStudent | OrganicMiner
BASELINE = BaselineStudent()
