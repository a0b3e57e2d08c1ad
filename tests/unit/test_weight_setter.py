"""``WeightSetter`` against the in-memory chain: what is retried, how it backs off, what is kept.

Backoff waits go to an injected ``sleep`` that records them, so nothing here waits or depends
on wall time.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from types import SimpleNamespace

import pytest

from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store import Store
from neurons.validator.weights import WeightSetter
from subnet.errors import ChainConnectionError, ChainError
from tests.harness.fake_chain import FakeChain, metagraph

WEIGHTS = {2: 0.75, 3: 0.25}


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def chain() -> FakeChain:
    return FakeChain(metagraph("owner", "vali", "m2", "m3"), head=50, tempo=10)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "validator.sqlite")
    yield s
    s.close()


def _setter(chain, store, sleep, *, retries=4, backoff=1.0, interval=0):
    wallet = SimpleNamespace(hotkeypub=SimpleNamespace(ss58_address="vali"))
    return WeightSetter(
        chain,
        1,
        wallet,
        store,
        ValidatorMetrics(),
        interval=interval,
        retries=retries,
        backoff=backoff,
        sleep=sleep,
    )


def _rows(tmp_path) -> list[tuple]:
    db = sqlite3.connect(tmp_path / "validator.sqlite")
    rows = db.execute("SELECT block, success, attempts, error, weights_json FROM weight_sets")
    return rows.fetchall()


def _count(setter: WeightSetter, result: str) -> float:
    return float(setter.metrics.weight_sets.labels(result)._value.get())


async def test_lost_connections_are_retried_with_doubling_waits(chain, store, tmp_path):
    sleep = Recorder()
    setter = _setter(chain, store, sleep)
    chain.fail("set_weights", ChainConnectionError("socket closed"), ChainConnectionError("x"))
    outcome = await setter.set(60, 6, WEIGHTS)
    assert outcome.success and outcome.attempts == 3 and outcome.matches is True
    assert sleep.waits == [1.0, 2.0]
    assert len(chain.called("set_weights")) == 3
    assert chain.weights[1] == {2: 65535, 3: 21845}  # the chain holds what was sent
    assert setter.last_block == 60 and store.last_weight_block() == 60
    assert _count(setter, "error") == 2 and _count(setter, "ok") == 1
    [(block, success, attempts, error, sent)] = _rows(tmp_path)
    assert (block, success, attempts, error) == (60, 1, 3, "")
    assert json.loads(sent) == {"2": 0.75, "3": 0.25}


async def test_a_rate_limit_may_lift_so_it_is_retried(chain, store):
    sleep = Recorder()
    setter = _setter(chain, store, sleep, backoff=0.5)
    chain.fail("set_weights", ChainError("too fast", "SettingWeightsTooFast", transient=True))
    outcome = await setter.set(60, 6, WEIGHTS)
    assert outcome.success and outcome.attempts == 2 and sleep.waits == [0.5]


async def test_a_refusal_the_chain_will_repeat_stops_at_once_and_says_so(
    chain, store, tmp_path, caplog
):
    sleep = Recorder()
    setter = _setter(chain, store, sleep)
    refusal = ChainError("set weights on netuid 1: no permit", "NeuronNoValidatorPermit")
    chain.fail("set_weights", refusal)
    with caplog.at_level(logging.ERROR, logger="subnet.validator.weights"):
        outcome = await setter.set(60, 6, WEIGHTS)
    assert not outcome.success and outcome.attempts == 1
    assert outcome.error.startswith("NeuronNoValidatorPermit: ")
    assert "not retried" in outcome.error
    assert sleep.waits == [] and len(chain.called("set_weights")) == 1
    assert any("NeuronNoValidatorPermit" in r.getMessage() for r in caplog.records)
    assert setter.last_block is None and store.last_weight_block() is None
    [(block, success, attempts, error, _)] = _rows(tmp_path)
    assert (block, success, attempts) == (60, 0, 1) and "NeuronNoValidatorPermit" in error


async def test_retries_are_bounded_and_the_failure_is_recorded(chain, store, tmp_path):
    sleep = Recorder()
    setter = _setter(chain, store, sleep, retries=3, backoff=2.0)
    chain.fail("set_weights", *(ChainConnectionError(f"lost {i}") for i in range(5)))
    outcome = await setter.set(60, 6, WEIGHTS)
    assert not outcome.success and outcome.attempts == 3
    assert outcome.error == "CONNECTION: lost 2"
    assert sleep.waits == [2.0, 4.0]  # no wait after the last attempt
    assert len(chain.called("set_weights")) == 3
    assert [r[1:3] for r in _rows(tmp_path)] == [(0, 3)]
    assert setter.last_block is None


async def test_due_every_tempo_but_never_faster_than_the_rate_limit(chain, store):
    setter = _setter(chain, store, Recorder())
    assert await setter.due(60)  # never set yet
    await setter.set(60, 6, WEIGHTS)
    assert not await setter.due(69) and await setter.due(70)  # tempo 10
    chain.rate_limit = 25
    assert not await setter.due(84) and await setter.due(85)


async def test_due_once_per_window_on_multiples_of_the_interval(chain, store, tmp_path):
    """Two validators that set weights first at different blocks are due again at the same
    window start, so both set weights after the same step (and a restart keeps the window)."""
    other = Store(tmp_path / "other.sqlite")
    try:
        first, second = _setter(chain, store, Recorder()), _setter(chain, other, Recorder())
        await first.set(62, 1, WEIGHTS)
        await second.set(67, 2, WEIGHTS)
        for setter in (first, second, _setter(chain, other, Recorder())):
            assert not await setter.due(69) and await setter.due(70)
        chain.rate_limit = 5  # a window start closer than the rate limit waits for the limit
        assert not await second.due(71) and await second.due(72)
    finally:
        other.close()
