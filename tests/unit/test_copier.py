"""The weight copier (a localnet fixture): its copy rule is the simulator's, and it runs as a
validator does (lock, start-up checks, weight setter, state database) without querying anyone."""

from __future__ import annotations

import dataclasses
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest

from neurons.demo_fixtures.copier import Copier, check_source, copied_weights
from scoring.sim_chain import ChainState
from scoring.sim_population import ChainSim, MinerSpec, Population, ValidatorSpec
from subnet.config import load_config
from subnet.errors import ConfigError, StateError
from subnet.state_lock import StateLock
from tests.harness.fake_chain import FakeChain, metagraph

HOTKEYS = ("owner", "v1", "v2", "copier", "m4", "m5", "m6")
STAKES = {"v1": 500.0, "v2": 300.0, "copier": 200.0}
ROWS = {1: {4: 0.5, 5: 0.3, 6: 0.2}, 2: {4: 0.2, 5: 0.2, 6: 0.6}}


def _mg(**consensus: float):
    mg = metagraph(*HOTKEYS, permits=tuple(STAKES))
    rows = tuple(
        dataclasses.replace(
            n, stake=STAKES.get(n.hotkey, 0.0), consensus=consensus.get(n.hotkey, 0.0)
        )
        for n in mg.neurons
    )
    return dataclasses.replace(mg, neurons=rows)


def test_the_copy_of_the_validators_is_the_simulators_copier_rule():
    """Same rows, same stakes: ``scoring.sim_chain.ChainState.copy_others`` gives the same row."""
    pop = Population(
        tuple(MinerSpec(f"m{k}", (0.5, 0.5, 0.5)) for k in range(3)),
        tuple(ValidatorSpec(name, stake) for name, stake in STAKES.items()),
    )
    state = ChainState(pop, ChainSim(), 10**9)
    assert list(state.validator_uids) == [1, 2, 3] and list(state.slot_uids) == [4, 5, 6]
    hist = np.zeros((3, state.n))
    for setter, row in ROWS.items():
        for uid, share in row.items():
            hist[setter - 1, uid] = share
    state.chain_hist.append(hist)
    expected = state.copy_others(2, np.array(list(STAKES.values())), 0)
    got = copied_weights("validators", ROWS, _mg(), "copier")
    assert got.keys() == {4, 5, 6}
    assert [got[u] for u in (4, 5, 6)] == pytest.approx(list(expected[4:]), abs=1e-12)
    assert sum(got.values()) == pytest.approx(1.0)


def test_other_sources_and_what_is_never_copied():
    mg = _mg(m4=0.6, m5=0.2, copier=0.1)
    assert copied_weights("consensus", {}, mg, "copier") == pytest.approx({4: 0.75, 5: 0.25})
    assert copied_weights("uid:2", ROWS, mg, "copier") == pytest.approx(ROWS[2])
    assert copied_weights("uid:9", ROWS, mg, "copier") == {}
    assert copied_weights("validators", {}, mg, "copier") == {}  # nothing on chain yet
    own = {**ROWS, 3: {4: 1.0}, 1: {3: 0.5, 4: 0.5}}  # its own row and weight are dropped
    assert copied_weights("validators", {3: {4: 1.0}}, mg, "copier") == {}
    assert 3 not in copied_weights("validators", own, mg, "copier")
    unpermitted = dataclasses.replace(
        mg,
        neurons=tuple(
            dataclasses.replace(n, validator_permit=n.hotkey != "v2") for n in mg.neurons
        ),
    )
    assert copied_weights("validators", ROWS, unpermitted, "copier") == pytest.approx(ROWS[1])


@pytest.mark.parametrize("bad", ["", "median", "uid:", "uid:x", "uid:-1"])
def test_a_bad_source_is_one_line(bad):
    with pytest.raises(ConfigError, match="copy source must be one of validators, consensus"):
        check_source(bad)


def _copier(tmp_path, chain: FakeChain) -> Copier:
    cfg = load_config(
        None,
        overrides={"validator.state_dir": str(tmp_path / "state"), "validator.step_blocks": 2},
        env={},
    )
    wallet = SimpleNamespace(hotkeypub=SimpleNamespace(ss58_address="copier"))
    return Copier(cfg, chain, wallet)


async def test_it_copies_what_is_on_chain_and_records_it_like_a_validator(tmp_path):
    chain = FakeChain(_mg(), head=99, tempo=10)
    chain.weights = {u: {k: round(v * 60000) for k, v in row.items()} for u, row in ROWS.items()}
    node = _copier(tmp_path, chain)
    assert await node.run(max_sets=2) == 0
    sets = chain.called("set_weights")
    assert len(sets) == 2 and all(hotkey == "copier" for _, hotkey, _ in sets)
    assert sets[0][2] == pytest.approx(copied_weights("validators", ROWS, _mg(), "copier"))
    assert chain.called("wait_for_block")[0] == (100,)  # on the step grid
    db = sqlite3.connect(tmp_path / "state" / "validator.sqlite")
    rows = db.execute("SELECT block, step, success FROM weight_sets ORDER BY id").fetchall()
    assert [(step, ok) for _, step, ok in rows] == [(0, 1), (0, 1)]
    assert rows[1][0] - rows[0][0] == 10  # due once per tempo, like any validator
    assert db.execute("SELECT value FROM meta WHERE key = 'role'").fetchone() == (
        "copier:validators",
    )
    assert db.execute("SELECT COUNT(*) FROM steps").fetchone() == (0,)  # it scores nobody


async def test_it_waits_while_there_is_nothing_to_copy_and_takes_the_state_lock(tmp_path):
    chain = FakeChain(_mg(), head=99, tempo=10)
    node = _copier(tmp_path, chain)

    async def copy_later(block=None, *, timeout=None):
        chain.head = max(chain.head, block or chain.head + 1)
        if chain.head >= 110:
            chain.weights = {1: {4: 65535}}
        return chain.head

    chain.wait_for_block = copy_later  # type: ignore[method-assign]
    with StateLock(tmp_path / "state"), pytest.raises(StateError, match="in use"):
        await node.run(max_sets=1)
    assert await node.run(max_sets=1) == 0
    [(_, _, weights)] = chain.called("set_weights")
    assert weights == {4: 1.0}
