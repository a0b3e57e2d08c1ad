"""Yuma epoch: chain test vectors (research/yuma.md §5), masks and privileges, fast == exact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.yuma import EpochInputs, EpochResult, YumaParams, epoch, epoch_fast_dense

MODES = ("exact", "fast")
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

    def __init__(self, stake: Sequence[int], n_servers: int, params: YumaParams, mode: str):
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
        r = epoch(inp, self.params, self.mode)  # type: ignore[arg-type]
        self.b = [list(row) for row in r.bonds]
        self.vp = list(r.validator_permit)
        return r

    def bond(self, i: int, j: int) -> int:
        return dict(self.b[i]).get(j, 0)


def run_schedule(
    stake: Sequence[int], n_servers: int, sched: list[Any], params: YumaParams, mode: str
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
def test_v1_test_bonds_yuma2_checkpoints(mode: str) -> None:
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
def test_v2_kappa_moves_first(mode: str) -> None:
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
def test_yuma3_scenarios(name: str, mode: str) -> None:
    stake, n_servers, sched, params, want = SCENARIOS[name]
    _, rs = run_schedule(stake, n_servers, sched, params, mode)
    for e, d in want.items():
        assert rs[e].dividends[:3] == pytest.approx(d, abs=1e-4), (name, e)


@pytest.mark.parametrize("mode", MODES)
def test_no_liquid_bonds_grow_by_alpha(mode: str) -> None:
    p = replace(LIQ, liquid_alpha_enabled=False)
    net, _ = run_schedule([33, 33, 34], 2, [[S1] * 3] * 3, p, mode)
    assert net.bond(0, 3) / 65535 == pytest.approx(0.0731, abs=1.2e-4)
