"""The validator's start-up checks, its permit gate and its step grid (in-memory chain).

``run_step`` is a stub (the step has its own tests); the chain is the in-memory fake; the real
devnet and the real CLI process: ``tests/integration/test_validator_startup_devnet.py``.
"""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace

import pytest

from neurons.validator import main
from neurons.validator.main import Validator, first_step_block, step_block
from neurons.validator.startup import PermitWatch, check_standing
from neurons.validator.step import StepResult
from neurons.validator.store import StepRow, Store
from neurons.validator.weights import WeightSetter
from subnet.config import load_config
from subnet.errors import ConfigError
from tests.harness.fake_chain import FakeChain, metagraph

WALLET = SimpleNamespace(hotkeypub=SimpleNamespace(ss58_address="vali"))


def _staked(mg, hotkey: str, stake: float):
    rows = tuple(
        dataclasses.replace(n, stake=stake) if n.hotkey == hotkey else n for n in mg.neurons
    )
    return dataclasses.replace(mg, neurons=rows)


async def test_an_unregistered_hotkey_stops_with_the_command_that_registers_it():
    chain = FakeChain(metagraph("owner", "m1"), network="devnet:/x")
    with pytest.raises(ConfigError) as caught:
        await check_standing(chain, 1, WALLET, "vali", wallet_name="w", wallet_hotkey="h")
    message = str(caught.value)
    assert "hotkey vali is not registered on netuid 1 of devnet:/x" in message
    assert "subnet validator --register --network devnet:/x --netuid 1" in message
    assert "btcli subnets register --netuid 1 --wallet.name w --wallet.hotkey h" in message
    assert "\n" not in message
    assert chain.called("register") == []  # nothing paid without --register


async def test_register_registers_and_the_standing_is_logged_in_one_line(caplog):
    chain = FakeChain(metagraph("owner", "m1"))
    with caplog.at_level(logging.INFO, logger="subnet.validator"):
        standing = await check_standing(
            chain, 1, WALLET, "vali", wallet_name="w", wallet_hotkey="h", register=True
        )
    assert standing.uid == 2 and not standing.permit
    lines = [r.getMessage() for r in caplog.records]
    assert "registered as uid 2 on netuid 1" in lines
    assert any(
        line.startswith("validator uid 2 on netuid 1 of fake: stake 0.0 α, validator permit no")
        for line in lines
    )
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("no validator permit: scoring continues, but weights cannot be set")


async def test_a_permitted_validator_states_its_stake_and_permit(caplog):
    mg = _staked(metagraph("owner", "vali", permits=("vali",)), "vali", 1234.5)
    with caplog.at_level(logging.INFO, logger="subnet.validator"):
        standing = await check_standing(
            FakeChain(mg), 1, WALLET, "vali", wallet_name="w", wallet_hotkey="h"
        )
    assert standing.permit and standing.stake == 1234.5
    assert any("stake 1234.5 α, validator permit yes" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_permit_watch_speaks_only_when_the_permit_changes(caplog):
    watch = PermitWatch("vali", permit=False)
    without = metagraph("owner", "vali")
    with_permit = metagraph("owner", "vali", permits=("vali",))
    with caplog.at_level(logging.INFO, logger="subnet.validator"):
        assert not watch.allowed(without)  # already said at start: silent
        assert watch.allowed(with_permit)
        assert watch.allowed(with_permit)
        assert not watch.allowed(without)
        assert not watch.allowed(metagraph("owner"))  # deregistered
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == "validator permit granted: setting weights"
    assert said[1].startswith("no validator permit")
    assert said[2] == "hotkey vali is no longer registered: weights cannot be set"
    assert len(said) == 3
    assert PermitWatch("owner").allowed(metagraph("owner", "vali"))  # the owner needs none


def test_steps_run_on_a_grid_of_step_blocks():
    assert [first_step_block(h, 4) for h in (97, 100, 101)] == [100, 100, 104]
    assert first_step_block(7, 1) == 7
    assert step_block(104, 104, 4) == 104  # on time
    assert step_block(104, 107, 4) == 104  # late within the step: still its block
    assert step_block(104, 109, 4) == 108  # a whole step late: the latest grid block


@pytest.fixture
def node(tmp_path):
    def build(mg, step_blocks: int = 1, head: int = 100, db: str = "validator.sqlite"):
        chain = FakeChain(mg, head=head, tempo=10)
        cfg = load_config(
            None,
            overrides={"validator.teacher": str(tmp_path), "validator.step_blocks": step_blocks},
            env={},
        )
        validator = Validator(cfg, chain, WALLET)
        store = Store(tmp_path / db)
        setter = WeightSetter(
            chain, 1, WALLET, store, validator.metrics, interval=0, retries=1, backoff=0.0
        )
        stores.append(store)
        return validator, chain, SimpleNamespace(store=store), setter

    stores: list[Store] = []
    yield build
    for store in stores:
        store.close()


@pytest.fixture
def steps(monkeypatch) -> list[tuple[int, int]]:
    ran: list[tuple[int, int]] = []

    async def run_step(ctx, step: int, block: int, seed: str) -> StepResult:
        ran.append((step, block))
        ema = {2: 0.5, 3: 0.25}
        return StepResult(step, block, 1, ema, ema, {}, None, 0, 0.0, ("owner", "vali", "m2", "m3"))

    monkeypatch.setattr(main, "run_step", run_step)
    return ran


async def test_without_a_permit_it_keeps_scoring_and_sets_weights_once_granted(node, steps):
    validator, chain, ctx, setter = node(metagraph("owner", "vali", "m2", "m3"))
    validator.permit = PermitWatch("vali", permit=False)
    await validator._loop(ctx, setter, max_steps=2)
    assert len(steps) == 2 and chain.called("set_weights") == []
    chain.mg = metagraph("owner", "vali", "m2", "m3", permits=("vali",))
    await validator._loop(ctx, setter, max_steps=1)
    assert len(steps) == 3 and len(chain.called("set_weights")) == 1


async def test_validators_starting_at_different_blocks_step_on_the_same_blocks(node, steps):
    mg = metagraph("owner", "vali", "m2", "m3", permits=("vali",))
    early, early_chain, early_ctx, early_setter = node(mg, step_blocks=4, head=97)
    await early._loop(early_ctx, early_setter, max_steps=2)
    late, late_chain, late_ctx, late_setter = node(mg, step_blocks=4, head=102, db="late.sqlite")
    await late._loop(late_ctx, late_setter, max_steps=2)
    assert steps == [(1, 100), (2, 104), (1, 104), (2, 108)]
    assert early_chain.called("block_hash")[1] == late_chain.called("block_hash")[0] == (104,)


async def test_a_restart_resumes_on_the_grid_after_the_last_committed_step(node, steps):
    mg = metagraph("owner", "vali", "m2", "m3", permits=("vali",))
    validator, _, ctx, setter = node(mg, step_blocks=4, head=110)
    ctx.store.commit_step(StepRow(7, 105, "seed", "digest", 2, 8, None, 1.0), [], [], [])
    await validator._loop(ctx, setter, max_steps=1)
    assert steps == [(8, 108)]  # an off-grid step of an older version: back on the grid


async def test_a_step_that_overruns_skips_to_the_latest_grid_block(node, steps, monkeypatch):
    mg = metagraph("owner", "vali", "m2", "m3", permits=("vali",))
    validator, chain, ctx, setter = node(mg, step_blocks=4, head=100)
    slow = main.run_step  # type: ignore[attr-defined]

    async def overrun(ctx, step, block, seed):
        chain.head += 9  # the step took longer than two steps' worth of blocks
        return await slow(ctx, step, block, seed)

    monkeypatch.setattr(main, "run_step", overrun)
    await validator._loop(ctx, setter, max_steps=2)
    assert steps == [(1, 100), (2, 108)]  # 104 passed while step 1 ran: skipped
    seeds = [args for args in chain.called("block_hash")]
    assert seeds == [(100,), (108,)]  # each step seeded by its grid block's hash
