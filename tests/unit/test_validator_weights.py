"""``compute_weights``: the EMA a uid earned goes to the hotkey that earned it, not its heir."""

from __future__ import annotations

from neurons.validator.weights import compute_weights
from scoring.config import WeightsConfig
from subnet.chain.types import MetagraphView, NeuronView


def neuron(uid: int, hotkey: str) -> NeuronView:
    return NeuronView(
        uid=uid,
        hotkey=hotkey,
        coldkey="c" + hotkey,
        stake=0.0,
        stake_rao=0,
        validator_permit=False,
        axon=None,
        incentive=0.0,
        dividends=0.0,
        emission=0.0,
        emission_rao=0,
        trust=0.0,
        consensus=0.0,
        last_update=0,
        block_at_registration=0,
        active=True,
    )


def graph(*hotkeys: str) -> MetagraphView:
    return MetagraphView(
        netuid=1,
        block=10,
        tempo=10,
        owner_hotkey="owner",
        owner_coldkey="c",
        neurons=tuple(neuron(u, h) for u, h in enumerate(hotkeys)),
    )


CFG = WeightsConfig(transform="power", power=1.0)


def test_weights_follow_the_ema_of_unchanged_hotkeys() -> None:
    mg = graph("owner", "vali", "m2", "m3")
    weights, _ = compute_weights(
        {2: 0.6, 3: 0.2}, mg, "vali", CFG, ema_hotkeys=("owner", "vali", "m2", "m3")
    )
    assert weights.keys() == {2, 3}
    assert abs(weights[2] - 0.75) < 1e-12 and abs(weights[3] - 0.25) < 1e-12


def test_a_uid_that_changed_hands_during_the_step_gets_nothing_of_its_predecessor() -> None:
    mg = graph("owner", "vali", "newcomer", "m3")  # uid 2 re-registered by another hotkey
    weights, _ = compute_weights(
        {2: 0.6, 3: 0.2}, mg, "vali", CFG, ema_hotkeys=("owner", "vali", "m2", "m3")
    )
    assert weights == {3: 1.0}


def test_a_uid_new_since_the_step_gets_nothing_and_no_eligible_miner_burns() -> None:
    mg = graph("owner", "vali", "m2")
    weights, _ = compute_weights({2: 0.5}, mg, "vali", CFG, ema_hotkeys=("owner", "vali"))
    assert weights == {0: 1.0}  # everything to the owner uid (burned), never to nobody
