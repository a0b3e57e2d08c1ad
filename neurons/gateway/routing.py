"""Which miners a request goes to, from the validator's current scores.

The validator's state (EMA per uid, suspensions) is read through its store's reader, never by
SQL of our own; the metagraph gives each uid's hotkey and served endpoint. A miner is eligible
when its EMA row belongs to the hotkey that holds the uid now (a uid that changed hands starts
from nothing, as in the validator), its EMA is above zero, it is not suspended for a proven lie,
and it serves an endpoint.

Order (:func:`rank`): the first miner is drawn among the ``top_n`` best by EMA, with probability
proportional to EMA (so traffic follows quality without starving the runners-up); failover then
goes to the other ``top_n`` by EMA, then to the rest by EMA. Miners that failed within the
cooldown go last, so a dead miner whose EMA has not decayed yet costs no request a timeout.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from neurons.validator.store import EmaRow
from subnet.chain.types import NeuronView


@dataclass(frozen=True)
class Candidate:
    uid: int
    hotkey: str
    url: str
    ema: float


def eligible(
    ema: Sequence[EmaRow], neurons: Sequence[NeuronView], self_hotkey: str
) -> list[Candidate]:
    """Every miner a request may go to, best EMA first (see the module docstring)."""
    by_uid = {n.uid: n for n in neurons}
    out = []
    for e in ema:
        n = by_uid.get(e.uid)
        if (
            n is None
            or n.hotkey != e.hotkey
            or n.hotkey == self_hotkey
            or e.ema <= 0.0
            or e.suspended > 0
            or n.axon is None
            or n.axon.port <= 0
            or n.axon.ip in ("0.0.0.0", "::", "")
        ):
            continue
        out.append(Candidate(n.uid, n.hotkey, n.axon.url, e.ema))
    return sorted(out, key=lambda c: (-c.ema, c.uid))


def rank(
    candidates: Sequence[Candidate],
    *,
    top_n: int,
    rng: random.Random,
    cooling: Collection[int] = (),
) -> list[Candidate]:
    """The order to try ``candidates`` (sorted best first) for one request."""
    fresh = [c for c in candidates if c.uid not in cooling]
    cold = [c for c in candidates if c.uid in cooling]
    top, rest = fresh[:top_n], fresh[top_n:]
    if not top:
        return cold
    first = rng.choices(top, weights=[c.ema for c in top], k=1)[0]
    return [first, *(c for c in top if c is not first), *rest, *cold]
