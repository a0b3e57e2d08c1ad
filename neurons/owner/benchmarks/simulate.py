"""Time the incentive simulator on a mainnet-sized subnet: 256 uids, 64 validators, 100 epochs.

Scenario ``newcomer`` (owner uid + 64 validators + 191 miners, the newcomer prunes one), default
scoring config, Yuma3. Reports the whole run (fast engine every epoch, exact engine on the
sampled epochs), and, measured side by side on the same recorded chain states, the per-epoch
time of the exact and fast Yuma engines and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from scoring.sim_chain import EpochState, exact_deviation
from scoring.sim_scenarios import build
from scoring.simulate import OWNER_UID, SimConfig, simulate
from scoring.yuma_types import YumaParams


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="subnet bench simulate")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--validators", type=int, default=64)
    ap.add_argument("--miners", type=int, default=190)  # + the newcomer = 191 miner specs
    ap.add_argument("--exact-checks", type=int, default=3)
    args = ap.parse_args(argv)

    sc = build("newcomer", validators=args.validators, miners=args.miners, epochs=args.epochs)
    cfg = SimConfig(epochs=args.epochs, exact_checks=args.exact_checks)
    states: list[EpochState] = []

    from scoring import sim_chain

    original = sim_chain.ChainState.epoch_inputs

    def recording(self: sim_chain.ChainState, t: int) -> EpochState:
        state = original(self, t)
        if t in (args.epochs // 2, args.epochs - 1):
            states.append(state)
        return state

    sim_chain.ChainState.epoch_inputs = recording  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        result = simulate(sc.population, cfg)
        total = time.perf_counter() - started
    finally:
        sim_chain.ChainState.epoch_inputs = original  # type: ignore[method-assign]

    n_uids = 1 + args.validators + min(args.miners + 1, 256 - 1 - args.validators)
    print(
        f"scenario newcomer: {n_uids} uids, {args.validators} validators, "
        f"{args.epochs} epochs, {len(result.exact_epochs)} exact checks"
    )
    print(
        f"whole run: {total:.2f} s ({total / args.epochs * 1000:.1f} ms/epoch incl. exact "
        f"checks); max |fast - exact| = {result.max_deviation:.2e}"
    )

    params = YumaParams(tempo=360)
    fast_t, exact_t = [], []
    for state in states:
        for _ in range(3):
            t0 = time.perf_counter()
            fast = state.run_fast(params, OWNER_UID)
            fast_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        exact_deviation(state, fast, params, OWNER_UID)  # runs the exact engine once
        exact_t.append(time.perf_counter() - t0)
    f, e = statistics.median(fast_t), statistics.median(exact_t)
    print(
        f"per epoch: fast dense {f * 1000:.1f} ms, exact {e * 1000:.0f} ms "
        f"(incl. sparse conversion), ratio exact/fast = {e / f:.0f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
