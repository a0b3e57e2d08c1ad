"""The validator's main loop when the chain drops away: retried reads, skipped steps, no crash.

``run_step`` is replaced by a stub (the step itself has its own tests); the chain is the
in-memory fake with injected failures; backoff waits go to a recorder, never to the clock.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from neurons.validator import main
from neurons.validator.main import Validator, block_seed
from neurons.validator.step import StepResult
from neurons.validator.store import Store
from neurons.validator.weights import WeightSetter
from subnet.chain.retry import Backoff
from subnet.config import load_config
from subnet.errors import ChainConnectionError, ChainError
from tests.harness.fake_chain import FakeChain, metagraph

WALLET = SimpleNamespace(hotkeypub=SimpleNamespace(ss58_address="vali"))
BACKOFF = Backoff(base=1.0, cap=4.0, tries=4)


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def steps(monkeypatch) -> list[tuple[int, int, str]]:
    """(step, block, seed) of every step the loop ran; each one succeeds."""
    ran: list[tuple[int, int, str]] = []

    async def run_step(ctx, step: int, block: int, seed: str) -> StepResult:
        ran.append((step, block, seed))
        ema = {2: 0.5, 3: 0.25}
        return StepResult(step, block, 1, ema, ema, {}, None, 0, 0.0, ("owner", "vali", "m2", "m3"))

    monkeypatch.setattr(main, "run_step", run_step)
    return ran


@pytest.fixture
def node(tmp_path):
    mg = metagraph("owner", "vali", "m2", "m3", permits=("vali",))
    chain = FakeChain(mg, head=100, tempo=10)
    cfg = load_config(None, overrides={"validator.teacher": str(tmp_path)}, env={})
    validator = Validator(cfg, chain, WALLET, backoff=BACKOFF)
    validator._pause = Recorder()  # type: ignore[method-assign]
    store = Store(tmp_path / "validator.sqlite")
    setter = WeightSetter(
        chain, 1, WALLET, store, validator.metrics, interval=0, retries=2, backoff=0.0
    )
    yield validator, chain, SimpleNamespace(store=store), setter
    store.close()


async def test_block_seed_is_the_block_hash_else_network_and_block():
    chain = FakeChain(head=10, network="devnet:x")
    assert await block_seed(chain, 10) == f"0x{10:064x}"
    assert await block_seed(chain, 11) == "devnet:x#11"  # not produced yet


async def test_lost_chain_reads_before_a_step_are_retried_with_backoff(node, steps, caplog):
    validator, chain, ctx, setter = node
    chain.fail("block", ChainConnectionError("head: lost"))
    chain.fail("wait_for_block", ChainConnectionError("lost"), ChainConnectionError("lost"))
    chain.fail("block_hash", ChainConnectionError("seed: lost"))
    with caplog.at_level(logging.WARNING):
        await validator._loop(ctx, setter, max_steps=2)
    assert steps == [(1, 100, f"0x{100:064x}"), (2, 101, f"0x{101:064x}")]
    # head: 1 failure; block 100: 2 waits fail, then its seed read fails once (a 3rd in a row)
    assert validator._pause.waits == [1.0, 1.0, 2.0, 4.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("lost" in w for w in warnings) == 4
    assert [args[0] for args in chain.called("wait_for_block")] == [100, 100, 100, 100, 101]


async def test_a_chain_that_stays_away_ends_the_loop_with_the_error(node, steps):
    validator, chain, ctx, setter = node
    chain.fail("wait_for_block", *(ChainConnectionError(f"lost {i}") for i in range(10)))
    with pytest.raises(ChainConnectionError, match="lost 3"):
        await validator._loop(ctx, setter, max_steps=1)
    assert validator._pause.waits == [1.0, 2.0, 4.0]  # BACKOFF.tries == 4 tries in all
    assert steps == []


async def test_a_step_whose_chain_reads_fail_is_skipped_and_the_next_one_runs(
    node, steps, monkeypatch, caplog
):
    validator, _, ctx, setter = node
    real = main.run_step  # type: ignore[attr-defined]  # the stub the `steps` fixture put there
    calls = 0

    async def first_fails(ctx, step, block, seed):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ChainError("read metagraph of netuid 1: subnet gone", "SUBNET_NOT_EXISTS")
        return await real(ctx, step, block, seed)

    monkeypatch.setattr(main, "run_step", first_fails)
    with caplog.at_level(logging.WARNING):
        await validator._loop(ctx, setter, max_steps=1)
    assert steps == [(1, 101, f"0x{101:064x}")]  # block 100 skipped, same step number next
    assert any("skipped" in r.getMessage() for r in caplog.records)
    assert validator.metrics.steps.labels("error")._value.get() == 1


async def test_weights_not_set_for_a_chain_read_are_set_after_the_next_step(node, steps, caplog):
    validator, chain, ctx, setter = node
    chain.fail("metagraph", ChainConnectionError("metagraph: lost"))
    with caplog.at_level(logging.WARNING):
        await validator._loop(ctx, setter, max_steps=2)
    assert len(steps) == 2
    assert any("weights not set at block 100" in r.getMessage() for r in caplog.records)
    [(_, hotkey, weights)] = chain.called("set_weights")  # after step 2 only
    assert hotkey == "vali" and set(weights) <= {0, 2, 3} and weights[2] > weights[3]
    assert setter.last_block == 101


async def test_a_weights_refusal_does_not_stop_the_loop(node, steps):
    validator, chain, ctx, setter = node
    chain.fail("set_weights", ChainError("no permit", "NeuronNoValidatorPermit"))
    await validator._loop(ctx, setter, max_steps=2)
    assert len(steps) == 2
    assert len(chain.called("set_weights")) == 2  # refused once, due again, set
    assert setter.last_block == 101


async def test_a_stop_during_a_chain_outage_ends_the_loop_without_more_tries(node, steps):
    validator, chain, ctx, setter = node

    async def stop_now(seconds: float) -> None:  # SIGTERM arrives during the backoff
        validator.stop.set()

    validator._pause = stop_now
    chain.fail("block", *(ChainConnectionError(f"lost {i}") for i in range(10)))
    with pytest.raises(ChainConnectionError, match="lost 1"):
        await validator._loop(ctx, setter, max_steps=1)
    assert len(chain.called("block")) == 2  # not BACKOFF.tries: stopping ends the retries
    assert steps == []
