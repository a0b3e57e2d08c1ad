"""Yuma epoch: chain test vectors (research/yuma.md §5), masks and privileges, fast == exact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scoring.yuma import EpochInputs, EpochResult, YumaParams, epoch, epoch_fast_dense

Mode = Literal["exact", "fast"]
MODES: tuple[Mode, ...] = ("exact", "fast")
# Yuma3 scenarios of subtensor's tests/epoch.rs: liquid alpha 0.1..0.3, steepness 1000,
# beta 0, bma 0.975, kappa 0.5, tempo 1.
LIQ = YumaParams(
    yuma3_enabled=True,
    liquid_alpha_enabled=True,
    alpha_low=6553,
    alpha_high=19660,
    alpha_sigmoid_steepness=1000,
    bonds_penalty=0,
    bonds_moving_avg=975_000,
    kappa=32767,
    max_validators=3,
    tempo=1,
)
S1, S2 = [65535, 0], [0, 65535]


class Net:
    """A tiny chain-state driver: set weights at one block, run the epoch at the next."""

    def __init__(self, stake: Sequence[int], n_servers: int, params: YumaParams, mode: Mode):
        self.nv = len(stake)
        self.n = self.nv + n_servers
        self.stake = [*stake, *[0] * n_servers]
        self.params, self.mode = params, mode
        self.w: list[list[tuple[int, int]]] = [[] for _ in range(self.n)]
        self.b: list[list[tuple[int, int]]] = [[] for _ in range(self.n)]
        self.lu = [1] * self.n
        self.reg = [1] * self.n
        self.vp = [False] * self.n
        self.block = 1
        self.epoch()  # bootstrap: issues permits

    def set(self, uid: int, row: list[tuple[int, int]]) -> None:
        self.w[uid] = row
        self.lu[uid] = self.block

    def set_servers(self, uid: int, values: Sequence[int]) -> None:
        self.set(uid, [(self.nv + k, v) for k, v in enumerate(values)])

    def epoch(self, **kw: Any) -> EpochResult:
        self.block += 1
        inp = EpochInputs(
            block=self.block,
            stake=self.stake,
            weights=self.w,
            bonds=self.b,
            last_update=self.lu,
            block_at_registration=self.reg,
            validator_permit=self.vp,
            emission=10**9,
            **kw,
        )
        r = epoch(inp, self.params, self.mode)
        self.b = [list(row) for row in r.bonds]
        self.vp = list(r.validator_permit)
        return r

    def bond(self, i: int, j: int) -> int:
        return dict(self.b[i]).get(j, 0)


def run_schedule(
    stake: Sequence[int], n_servers: int, sched: list[Any], params: YumaParams, mode: Mode
) -> tuple[Net, list[EpochResult]]:
    net = Net(stake, n_servers, params, mode)
    out = []
    for ws in sched:
        net.block += 1
        if ws:
            for i, row in enumerate(ws):
                net.set_servers(i, row)
        out.append(net.epoch())
    return net, out


# ---- V1: test_bonds, Yuma2 path, exact integers -----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_v1_test_bonds_yuma2_checkpoints(mode: Mode) -> None:
    p = YumaParams(yuma3_enabled=False, max_validators=8, tempo=1)
    net = Net([1, 2, 3, 4], 4, p, mode)
    net.block += 1
    for v in range(4):
        net.set(v, [(4, 16383), (5, 32767), (6, 49149), (7, 65535)])
    r = net.epoch()
    got = [[net.bond(v, 4) for v in range(4)]]
    assert r.incentive[4:] == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=1e-4)
    assert r.dividends[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=1e-4)
    actions: list[tuple[int, list[tuple[int, int]]] | None] = [
        (0, [(0, 65535)]),  # self-weight only: dropped from W
        (1, [(1, 65535)]),
        (2, [(2, 65535)]),
        (2, [(7, 65535)]),
        None,
        None,
    ]
    for step, act in enumerate(actions, start=2):
        net.block += 1
        if act is not None:
            net.set(*act)
        r = net.epoch()
        col = 4 if step <= 3 else 7
        got.append([net.bond(v, col) for v in range(4)])
        if step == 4:  # 60% of active stake sets zero weights -> consensus 0
            assert sum(r.incentive) == 0
    expected = [
        [16383, 32767, 49151, 65535],
        [14582, 32767, 49151, 65535],
        [12603, 28321, 49151, 65535],
        [12602, 28320, 49150, 65535],
        [10951, 24609, 49150, 65535],
        [9559, 21482, 49150, 65535],
        [8376, 18824, 49150, 65535],
    ]
    if mode == "exact":
        assert got == expected
    else:  # float: at most one LSB of u16 storage rounding
        assert np.abs(np.array(got) - np.array(expected)).max() <= 1


# ---- V2 and the other Yuma3 scenarios ---------------------------------------------------------

V2_D = [
    [0.8000, 0.1000, 0.1000],
    [1.0000, 0.0, 0.0],
    [0.9382, 0.0618, 0.0],
    [0.8819, 0.0773, 0.0407],
    [0.8564, 0.0844, 0.0592],
    [0.8418, 0.0884, 0.0697],
]
V2_B = [  # bonds (S1, S2) of A, B, C after each epoch
    [(0.1013, 0), (0.1013, 0), (0.1013, 0)],
    [(0.0908, 0.1013), (0.3697, 0), (0.3697, 0)],
    [(0.0815, 0.1924), (0.3170, 0.1013), (0.5580, 0)],
    [(0.0731, 0.2742), (0.2765, 0.1924), (0.4306, 0.1013)],
    [(0.0656, 0.3478), (0.2435, 0.2742), (0.3589, 0.1924)],
    [(0.0588, 0.4139), (0.2157, 0.3478), (0.3089, 0.2742)],
]


@pytest.mark.parametrize("mode", MODES)
def test_v2_kappa_moves_first(mode: Mode) -> None:
    sched = [[S1] * 3, [S2, S1, S1], [S2, S2, S1], [S2] * 3, None, None]
    net = Net([8, 1, 1], 2, LIQ, mode)
    for e, ws in enumerate(sched):
        net.block += 1
        if ws:
            for i, row in enumerate(ws):
                net.set_servers(i, row)
        r = net.epoch()
        assert r.dividends[:3] == pytest.approx(V2_D[e], abs=1e-4), e
        bonds = [(net.bond(v, 3) / 65535, net.bond(v, 4) / 65535) for v in range(3)]
        # stored u16 bonds lag the float reference by up to one LSB per epoch (§1.4)
        assert np.array(bonds) == pytest.approx(np.array(V2_B[e]), abs=1.2e-4), e


SCENARIOS = {
    "kappa_moves_second": (
        [8, 1, 1],
        2,
        [[S1] * 3, [S1, S2, S1], [S2, S2, S1], [S2] * 3, None, None],
        LIQ,
        {1: [0.8446, 0.0498, 0.1056], 2: [0.6868, 0.3132, 0.0], 5: [0.7730, 0.1508, 0.0762]},
    ),
    "kappa_moves_last": (
        [8, 1, 1],
        2,
        [[S1] * 3, [S1, S2, S1], [S1, S2, S2], [S2] * 3, None, None],
        LIQ,
        {3: [0.4663, 0.3210, 0.2127], 5: [0.6592, 0.1932, 0.1475]},
    ),
    "one_epoch_switch": (
        [33, 33, 34],
        2,
        [[S1] * 3, [S1] * 3, [S1, S1, S2], [S1] * 3, None, None],
        LIQ,
        {2: [0.3782, 0.3782, 0.2436], 5: [0.3487, 0.3487, 0.3026]},
    ),
    "one_epoch_switch_no_liquid": (
        [33, 33, 34],
        2,
        [[S1] * 3, [S1] * 3, [S1, S1, S2], [S1] * 3, None, None],
        replace(LIQ, liquid_alpha_enabled=False),
        {2: [0.3734, 0.3734, 0.2532]},
    ),
    "stable_miner": (
        [8, 1, 1],
        3,
        [
            [[65535, 65535, 0]] * 3,
            [[65535, 65535, 0], [65535, 0, 65535], [65535, 65535, 0]],
            [[65535, 0, 65535], [65535, 0, 65535], [65535, 65535, 0]],
            [[65535, 0, 65535]] * 3,
            None,
            None,
        ],
        LIQ,
        {5: [0.7937, 0.1173, 0.0890]},
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_yuma3_scenarios(name: str, mode: Mode) -> None:
    stake, n_servers, sched, params, want = SCENARIOS[name]
    _, rs = run_schedule(stake, n_servers, sched, params, mode)
    for e, d in want.items():
        assert rs[e].dividends[:3] == pytest.approx(d, abs=1e-4), (name, e)


@pytest.mark.parametrize("mode", MODES)
def test_no_liquid_bonds_grow_by_alpha(mode: Mode) -> None:
    p = replace(LIQ, liquid_alpha_enabled=False)
    net, _ = run_schedule([33, 33, 34], 2, [[S1] * 3] * 3, p, mode)
    assert net.bond(0, 3) / 65535 == pytest.approx(0.0731, abs=1.2e-4)


# ---- edge cases --------------------------------------------------------------------------------


def inputs(n: int, **kw: Any) -> EpochInputs:
    base: dict[str, Any] = dict(
        block=100,
        stake=[0] * n,
        weights=[[] for _ in range(n)],
        bonds=[[] for _ in range(n)],
        last_update=[50] * n,
        block_at_registration=[1] * n,
        validator_permit=[False] * n,
        emission=1_000_000,
    )
    base.update(kw)
    return EpochInputs(**base)


P3 = YumaParams(tempo=10)


@pytest.mark.parametrize("mode", MODES)
def test_bootstrap_no_permits_pays_validators_by_stake(mode: Mode) -> None:
    r = epoch(inputs(3, stake=[100, 300, 0], weights=[[(2, 65535)], [(2, 65535)], []]), P3, mode)
    assert r.validator_permit == (True, True, False)  # issued now, used next epoch
    assert sum(r.incentive) == 0 and r.server_emission == (0, 0, 0)
    assert r.validator_emission == (250_000, 750_000, 0)


@pytest.mark.parametrize("mode", MODES)
def test_no_weights_falls_back_to_active_stake(mode: Mode) -> None:
    inp = inputs(3, stake=[100, 300, 0], validator_permit=[True, True, False])
    inp = replace(inp, block=500, last_update=[499, 1, 1])  # cutoff: 138 blocks at tempo 10
    r = epoch(inp, P3, mode)
    assert r.active == (True, False, False)
    assert r.validator_emission == (1_000_000, 0, 0)


@pytest.mark.parametrize("mode", MODES)
def test_owner_self_weight_kept_others_dropped(mode: Mode) -> None:
    w = [[(0, 65535)], [(1, 65535)], []]
    inp = inputs(3, stake=[100, 100, 0], weights=w, validator_permit=[False, True, False])
    r = epoch(replace(inp, owner_uid=0), P3, mode)
    assert r.incentive[0] == pytest.approx(1.0) and r.incentive[1] == 0
    assert r.validator_permit[0]
    r2 = epoch(inp, P3, mode)  # no owner: both self-weights dropped, nobody earns incentive
    assert sum(r2.incentive) == 0


@pytest.mark.parametrize("mode", MODES)
def test_outdated_weights_after_reregistration(mode: Mode) -> None:
    w = [[(1, 65535), (2, 65535)], [], []]
    inp = inputs(3, stake=[100, 0, 0], weights=w, validator_permit=[True, False, False])
    inp = replace(inp, last_update=[60, 1, 1], block_at_registration=[1, 1, 70])
    r = epoch(inp, P3, mode)
    assert r.incentive == pytest.approx((0.0, 1.0, 0.0))
    r2 = epoch(replace(inp, last_update=[71, 1, 1]), P3, mode)  # weights re-set after
    assert r2.incentive == pytest.approx((0.0, 0.5, 0.5))


@pytest.mark.parametrize("mode", MODES)
def test_commit_reveal_column_mask(mode: Mode) -> None:
    w = [[(1, 65535), (2, 65535)], [], []]
    inp = inputs(3, stake=[100, 0, 0], weights=w, validator_permit=[True, False, False])
    inp = replace(inp, last_update=[90, 1, 1], block_at_registration=[1, 1, 60])
    inp = replace(inp, commit_blocks=[50, None, None])  # committed before uid2 was sniped
    on = YumaParams(tempo=10, commit_reveal_enabled=True)
    assert epoch(inp, on, mode).incentive == pytest.approx((0.0, 1.0, 0.0))
    assert epoch(inp, P3, mode).incentive == pytest.approx((0.0, 0.5, 0.5))


@pytest.mark.parametrize("mode", MODES)
def test_stake_threshold_and_owner_exemption(mode: Mode) -> None:
    inp = inputs(3, stake=[50, 200, 0])
    p = YumaParams(tempo=10, stake_threshold=100)
    r = epoch(inp, p, mode)
    assert r.stake_weight == pytest.approx((0.0, 1.0, 0.0))
    assert r.validator_permit == (False, True, False)
    r2 = epoch(replace(inp, owner_uid=0), p, mode)
    assert r2.stake_weight == pytest.approx((0.2, 0.8, 0.0))
    assert r2.validator_permit == (True, True, False)


@pytest.mark.parametrize("mode", MODES)
def test_permits_topk_ties_drop_lower_uid_and_lag(mode: Mode) -> None:
    inp = inputs(4, stake=[10, 10, 10, 5], weights=[[(3, 1)], [(3, 1)], [(3, 1)], []])
    r = epoch(inp, replace(P3, max_validators=2), mode)
    assert r.validator_permit == (False, True, True, False)
    assert sum(r.incentive) == 0  # stored permits were all False: nobody's weights count


@pytest.mark.parametrize("mode", MODES)
def test_inactive_validator_keeps_accruing_yuma3_bonds_but_no_dividends(mode: Mode) -> None:
    w = [[(2, 65535)], [(2, 65535)], []]
    inp = inputs(3, stake=[100, 100, 0], weights=w, validator_permit=[True, True, False])
    p = YumaParams(tempo=10, bonds_moving_avg=500_000)
    inp = replace(inp, block=500, last_update=[499, 1, 1], block_at_registration=[0, 0, 0])
    r = epoch(inp, p, mode)
    assert r.dividends[:2] == pytest.approx((1.0, 0.0))
    # uid1 is inactive: no say in consensus, so its weight is clipped to the active consensus
    assert dict(r.bonds[1]).get(2, 0) == dict(r.bonds[0])[2] > 0


@pytest.mark.parametrize("mode", MODES)
def test_sparse_column_drop_under_liquid_alpha(mode: Mode) -> None:
    old = [[(2, 30000), (3, 30000)], [(2, 30000), (3, 30000)], [], []]
    omit = [[(2, 65535)], [(2, 65535)], [], []]
    explicit = [[(2, 65535), (3, 0)], [(2, 65535), (3, 0)], [], []]
    vp = [True, True, False, False]
    p = YumaParams(tempo=10, liquid_alpha_enabled=True, bonds_penalty=0)
    r = epoch(inputs(4, stake=[1, 1, 0, 0], weights=omit, bonds=old, validator_permit=vp), p, mode)
    assert 3 not in dict(r.bonds[0])  # omitted uid: bond dropped at once
    r = epoch(
        inputs(4, stake=[1, 1, 0, 0], weights=explicit, bonds=old, validator_permit=vp), p, mode
    )
    assert 0 < dict(r.bonds[0])[3] < 30000  # explicit zero: bond decays
    r = epoch(
        inputs(4, stake=[1, 1, 0, 0], weights=omit, bonds=old, validator_permit=vp),
        replace(p, liquid_alpha_enabled=False),
        mode,
    )
    assert 0 < dict(r.bonds[0])[3] < 30000  # no liquid alpha: normal decay


@pytest.mark.parametrize("mode", MODES)
def test_bonds_cleared_without_new_permit_and_reset_for_new_miner(mode: Mode) -> None:
    old = [[(2, 30000), (3, 30000)], [(2, 30000)], [], []]
    inp = inputs(4, stake=[10, 0, 0, 0], bonds=old, validator_permit=[True, True, False, False])
    inp = replace(inp, block_at_registration=[1, 1, 1, 95], last_mechanism_step_block=90)
    r = epoch(inp, P3, mode)
    assert r.bonds[1] == ()  # lost its permit (no stake)
    assert 3 not in dict(r.bonds[0]) and 2 in dict(r.bonds[0])  # uid3 registered at 95 > LMS


@pytest.mark.parametrize("mode", MODES)
def test_emission_split_halves(mode: Mode) -> None:
    w = [[(2, 65535), (3, 32767)], [(2, 65535), (3, 32767)], [], []]
    inp = inputs(4, stake=[3, 1, 0, 0], weights=w, validator_permit=[True, True, False, False])
    r = epoch(inp, P3, mode)
    assert sum(r.server_emission) == pytest.approx(500_000, abs=4)
    assert sum(r.validator_emission) == pytest.approx(500_000, abs=4)
    assert sum(r.server_emission) + sum(r.validator_emission) <= 1_000_000
    assert r.incentive_u16[2] == int(r.incentive[2] * 65535)


# ---- fast == exact -----------------------------------------------------------------------------


@st.composite
def random_inputs(draw: st.DrawFn) -> tuple[EpochInputs, YumaParams]:
    n = draw(st.integers(2, 8))
    u16 = st.integers(0, 65535)
    stake = draw(st.lists(st.integers(0, 10**12), min_size=n, max_size=n))
    rows = []
    for _ in range(n):
        js = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n))
        rows.append([(j, draw(u16)) for j in js])
    bonds = []
    for _ in range(n):
        js = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n))
        bonds.append([(j, draw(u16)) for j in js])
    block = 1000
    inp = EpochInputs(
        block=block,
        stake=stake,
        weights=rows,
        bonds=bonds,
        last_update=draw(st.lists(st.integers(0, block), min_size=n, max_size=n)),
        block_at_registration=draw(st.lists(st.integers(0, block), min_size=n, max_size=n)),
        validator_permit=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        owner_uid=draw(st.none() | st.integers(0, n - 1)),
        commit_blocks=draw(st.lists(st.none() | st.integers(0, block), min_size=n, max_size=n)),
        last_mechanism_step_block=draw(st.integers(0, block)),
        emission=10**9,
    )
    params = YumaParams(
        tempo=draw(st.sampled_from([1, 10, 360])),
        bonds_penalty=draw(st.sampled_from([0, 32768, 65535])),
        yuma3_enabled=draw(st.booleans()),
        liquid_alpha_enabled=draw(st.booleans()),
        max_validators=draw(st.integers(1, 8)),
        commit_reveal_enabled=draw(st.booleans()),
        stake_threshold=draw(st.sampled_from([0, 10**6])),
    )
    return inp, params


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_inputs())
def test_fast_matches_exact(case: tuple[EpochInputs, YumaParams]) -> None:
    inp, p = case
    ex, fa = epoch(inp, p, "exact"), epoch(inp, p, "fast")
    # Consensus is discontinuous where a partial sum of active stake equals 1 - kappa; there
    # floats and fixed point may round to different sides. Such knife edges are skipped.
    a = [x for x in ex.active_stake if x > 0]
    minority = sum(a) - p.kappa / 65535
    edges = {round(sum(c), 12) for k in range(len(a) + 1) for c in combinations(a, k)}
    assume(all(abs(e - minority) > 1e-6 for e in edges))
    # Yuma2 bonds start from the I32F32 product weight * stake, which underflows to 0 below one
    # unit (2^-32): a validator with a vanishing stake share forms no bond on chain and the float
    # engine rounds that knife edge either way. Skip products within 64 units of it (raw row
    # shares bound the masked, renormalised ones from below).
    for i, row in enumerate(inp.weights):
        total = sum(v for _, v in row)
        share = ex.active_stake[i]
        assume(not any(0 < share * v / total < 2.0**-26 for _, v in row if v > 0))
    assert fa.active == ex.active and fa.validator_permit == ex.validator_permit
    for name in ("stake_weight", "consensus", "validator_trust", "incentive", "dividends"):
        assert getattr(fa, name) == pytest.approx(getattr(ex, name), abs=1e-4), name
    n = inp.n
    for i in range(n):
        fb, eb = dict(fa.bonds[i]), dict(ex.bonds[i])
        for j in range(n):
            assert abs(fb.get(j, 0) - eb.get(j, 0)) <= 8, (i, j)  # ~1e-4 of u16
    for name in ("server_emission", "validator_emission"):
        assert np.abs(np.subtract(getattr(fa, name), getattr(ex, name))).max() <= 1e-4 * 1e9


def test_epoch_fast_dense_feeds_its_bonds_back() -> None:
    rng = np.random.default_rng(0)
    n = 12
    w = rng.random((n, n)) * (rng.random((n, n)) < 0.5)
    stake = np.concatenate([rng.random(4) * 1e9, np.zeros(n - 4)])
    bonds = np.zeros((n, n))
    permit = np.zeros(n, dtype=bool)
    for _ in range(5):
        r = epoch_fast_dense(w, bonds, stake, np.ones(n, dtype=bool), permit, YumaParams())
        bonds, permit = r.bonds, r.validator_permit
    assert permit[:4].all() and not permit[4:].any()
    assert r.dividends.sum() == pytest.approx(1.0)
    assert r.incentive.sum() == pytest.approx(1.0)
    assert np.all(bonds[4:] == 0) and bonds.max() <= 1.0


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"last_update": [1, 1]}, "last_update: expected length 3"),
        ({"weights": [[(3, 1)], [], []]}, r"weights\[0\]: uid 3 out of range"),
        ({"bonds": [[], [(0, 70000)], []]}, r"bonds\[1\]: value 70000"),
        ({"stake": [1, -1, 0]}, r"stake\[1\] is negative"),
        ({"weights": [[(1, 1), (1, 2)], [], []]}, "duplicate uid 1"),
        ({"owner_uid": 5}, "owner_uid 5 out of range"),
    ],
)
def test_bad_input_raises(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        epoch(replace(inputs(3), **change), P3)


def test_bad_params_and_mode_raise() -> None:
    with pytest.raises(ValueError, match="kappa"):
        epoch(inputs(3), YumaParams(kappa=70000))
    with pytest.raises(ValueError, match="mode"):
        epoch(inputs(3), P3, "slow")  # type: ignore[arg-type]


# ---- Yuma2 columns nobody weights any more ----------------------------------------------------


def test_yuma2_abandoned_columns_round_like_exact_for_many_epochs() -> None:
    """A column no active stake weights keeps its proportions in real arithmetic, so float
    storage froze it while the chain's truncations lower it ~1 LSB per epoch (1.1e-3 after 70
    epochs). The fast engine computes such columns in the chain's fixed point: equal bonds."""
    p = YumaParams(yuma3_enabled=False, max_validators=8, tempo=1)
    nets = {m: Net([3, 5, 7, 11], 4, p, m) for m in MODES}
    first = [[(4, 1000 * (v + 1) + 17), (5, 32767), (6, 49149), (7, 65535)] for v in range(4)]
    for e in range(100):
        for net in nets.values():
            net.block += 1
            if e == 0:
                for v in range(4):
                    net.set(v, first[v])
            if e == 3:  # everybody drops uids 4 and 5
                for v in range(4):
                    net.set(v, [(6, 49149), (7, 65535)])
            net.epoch()
        ex, fa = nets["exact"], nets["fast"]
        assert fa.b == ex.b, e
    assert 0 < ex.bond(0, 4) < ex.bond(1, 4) - 10  # the column did drift (and stayed ordered)


# ---- SparseRows: the CSR rows the fast engine reads and returns --------------------------------


def test_sparse_rows_read_like_lists_and_chain_without_conversion() -> None:
    from scoring.yuma_rows import SparseRows, as_rows

    rows = [[(2, 7), (0, 3)], [], [(1, 65535)]]
    sr = as_rows("weights", rows, 3)
    assert isinstance(sr, SparseRows) and len(sr) == 3
    assert sr[0] == ((2, 7), (0, 3)) and sr[1] == () and sr[-1] == ((1, 65535),)
    assert sr == rows and list(sr) == [tuple(r) for r in rows]
    with pytest.raises(ValueError, match=r"not writeable|read-only"):
        sr.values[0] = 1
    # chained fast epochs: bonds as SparseRows (reused dense rows) == bonds as plain lists
    rng = np.random.default_rng(3)
    n, nv = 24, 6
    stake = [int(x) for x in rng.integers(10**9, 10**12, nv)] + [0] * (n - nv)
    p = YumaParams(tempo=10, liquid_alpha_enabled=True, max_validators=nv)
    inp = inputs(n, stake=stake, validator_permit=[i < nv for i in range(n)])
    csr_bonds: Any = [[] for _ in range(n)]
    list_bonds: Any = [[] for _ in range(n)]
    for e in range(6):
        if e == 3:  # uid 0 loses its permit to a new staker: the rows in play change
            inp = replace(inp, stake=[1, *stake[1:nv], 10**13, *stake[nv + 1 :]])
        w = [
            sorted(
                (int(j), int(rng.integers(1, 65536))) for j in rng.choice(range(nv, n), 10, False)
            )
            if i < nv
            else []
            for i in range(n)
        ]
        a = epoch(replace(inp, weights=w, bonds=csr_bonds), p, "fast")
        b = epoch(replace(inp, weights=w, bonds=list_bonds), p, "fast")
        assert isinstance(a.bonds, SparseRows) and a.bonds.dense is not None
        assert a.bonds == b.bonds and a.dividends == b.dividends and a.incentive == b.incentive
        csr_bonds, list_bonds = a.bonds, [list(r) for r in b.bonds]
        inp = replace(inp, validator_permit=list(a.validator_permit))
    assert not inp.validator_permit[0] and inp.validator_permit[nv]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[(1, 2, 3)], [], []], r"weights\[0\]: entries must be \(uid, u16\) pairs"),
        ([[(1,)], [], []], r"weights\[0\]: entries must be \(uid, u16\) pairs"),
        ([[], [(0, 1), (5, 1)], []], r"weights\[1\]: uid 5 out of range"),
        ([[(0, 1), (0, 2)], [], []], r"weights\[0\]: duplicate uid 0"),
        ([[], [], [(2, 1), (1, -4)]], r"weights\[2\]: value -4 for uid 1"),
        ([[(0, "x")], [], []], r"weights: entries must be pairs of integers"),
    ],
)
def test_bad_rows_name_the_entry(rows: list[Any], message: str) -> None:
    for mode in MODES:
        with pytest.raises(ValueError, match=message):
            epoch(replace(inputs(3), weights=rows), P3, mode)


# ---- fast == exact on mainnet-shaped random states, several epochs ------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    yuma3=st.booleans(),
    liquid=st.booleans(),
    penalty=st.sampled_from([0, 32768, 65535]),
)
def test_fast_matches_exact_on_larger_random_subnets(
    seed: int, yuma3: bool, liquid: bool, penalty: int
) -> None:
    """64 uids, 16 validators weighting random subsets that shift between epochs (columns get
    abandoned and re-weighted); each engine carries its own bonds. Max deviation <= 1e-4."""
    rng = np.random.default_rng(seed)
    n, nv = 64, 16
    p = YumaParams(
        tempo=100,
        yuma3_enabled=yuma3,
        liquid_alpha_enabled=liquid,
        bonds_penalty=penalty,
        max_validators=nv,
    )
    stake = [int(x) for x in rng.integers(10**9, 10**13, nv)] + [0] * (n - nv)
    base = inputs(n, stake=stake, validator_permit=[i < nv for i in range(n)], block=1000)
    base = replace(base, last_update=[990] * n)
    bonds: dict[str, Any] = {m: [[] for _ in range(n)] for m in MODES}
    for _ in range(4):
        per = int(rng.integers(8, n - nv))
        w = [
            sorted(
                (int(j), int(rng.integers(1, 65536)))
                for j in rng.choice(range(nv, n), per, replace=False)
            )
            if i < nv
            else []
            for i in range(n)
        ]
        r = {m: epoch(replace(base, weights=w, bonds=bonds[m]), p, m) for m in MODES}
        ex, fa = r["exact"], r["fast"]
        for name in ("consensus", "validator_trust", "incentive", "dividends"):
            assert np.abs(np.subtract(getattr(fa, name), getattr(ex, name))).max() <= 1e-4, name
        for i in range(n):
            fb, eb = dict(fa.bonds[i]), dict(ex.bonds[i])
            for j in fb.keys() | eb.keys():
                assert abs(fb.get(j, 0) - eb.get(j, 0)) <= 6, (i, j)  # 6 LSB ~ 0.92e-4
        bonds = {m: r[m].bonds for m in MODES}
