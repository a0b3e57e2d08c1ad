"""Which miners a request goes to: eligibility from the validator's EMA and the metagraph, the
EMA-weighted draw among the top N, failover order and the cooldown of failed miners."""

from __future__ import annotations

import random
from collections import Counter

from neurons.gateway.routing import Candidate, eligible, rank
from neurons.validator.store import EmaRow
from subnet.chain.types import Axon, NeuronView

SERVED = Axon("127.0.0.2", 9000)


def _neuron(uid: int, hotkey: str, axon: Axon | None = SERVED) -> NeuronView:
    return NeuronView(
        uid, hotkey, "ck", 0.0, 0, False, axon, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0, 0, True
    )


def test_who_is_eligible() -> None:
    neurons = [
        _neuron(0, "vali"),
        _neuron(1, "a"),
        _neuron(2, "b"),
        _neuron(3, "c-new-owner"),  # the uid changed hands since the EMA was earned
        _neuron(4, "d", axon=None),  # serves nothing
        _neuron(5, "e"),
        _neuron(6, "f", axon=Axon("0.0.0.0", 9000)),
        _neuron(7, "g"),
    ]
    ema = [
        EmaRow(0, "vali", 0.9),  # the validator itself
        EmaRow(1, "a", 0.5),
        EmaRow(2, "b", 0.8),
        EmaRow(3, "c", 0.9),
        EmaRow(4, "d", 0.9),
        EmaRow(5, "e", 0.7, suspended=3),  # caught lying
        EmaRow(6, "f", 0.9),
        EmaRow(7, "g", 0.0),  # never scored
        EmaRow(8, "h", 0.9),  # no such uid on chain any more
    ]
    got = eligible(ema, neurons, "vali")
    assert [(c.uid, c.ema) for c in got] == [(2, 0.8), (1, 0.5)]
    assert got[0].url == "http://127.0.0.2:9000" and got[0].hotkey == "b"


def _cands(*emas: float) -> list[Candidate]:
    return [Candidate(u, f"h{u}", f"http://x:{u}", e) for u, e in enumerate(emas)]


def test_the_first_miner_is_drawn_by_ema_among_the_top_n() -> None:
    cands = _cands(0.6, 0.3, 0.1, 0.05)
    rng = random.Random(7)
    firsts = Counter(rank(cands, top_n=3, rng=rng)[0].uid for _ in range(6000))
    assert set(firsts) == {0, 1, 2}  # never the fourth, however many draws
    assert abs(firsts[0] / 6000 - 0.6) < 0.03 and abs(firsts[1] / 6000 - 0.3) < 0.03
    order = rank(cands, top_n=3, rng=random.Random(1))
    assert sorted(c.uid for c in order) == [0, 1, 2, 3] and order[-1].uid == 3
    rest = [c.uid for c in order[1:3]]
    assert rest == sorted(rest)  # the rest of the top N by EMA, best first


def test_failed_miners_go_last_while_they_cool_down() -> None:
    cands = _cands(0.9, 0.5, 0.4)
    order = rank(cands, top_n=1, rng=random.Random(0), cooling={0})
    assert [c.uid for c in order] == [1, 2, 0]
    only_cold = rank(cands[:1], top_n=1, rng=random.Random(0), cooling={0})
    assert [c.uid for c in only_cold] == [0]  # still worth a try when nothing else is left
    assert rank([], top_n=3, rng=random.Random(0)) == []
