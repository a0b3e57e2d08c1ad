"""Time one Yuma epoch, exact (fixed point) vs fast (numpy), on a mainnet-sized subnet.

256 uids, 64 validators each weighting a random 160 of the 192 miners, Yuma3 + liquid alpha,
bonds carried from a warm-up epoch. Prints the median of a few runs per mode and the ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence

import numpy as np

from scoring.yuma import EpochInputs, EpochResult, YumaParams, epoch, epoch_fast_dense


def make_inputs(n: int, validators: int, per_row: int, seed: int) -> EpochInputs:
    rng = random.Random(seed)
    stake = [rng.randint(10**9, 10**13) if i < validators else 0 for i in range(n)]
    weights = [
        sorted((j, rng.randint(1, 65535)) for j in rng.sample(range(validators, n), per_row))
        if i < validators
        else []
        for i in range(n)
    ]
    return EpochInputs(
        block=10_000,
        stake=stake,
        weights=weights,
        bonds=[[] for _ in range(n)],
        last_update=[9_900] * n,
        block_at_registration=[1] * n,
        validator_permit=[i < validators for i in range(n)],
        emission=148 * 10**9,
    )


def time_mode(inp: EpochInputs, params: YumaParams, mode: str, repeats: int) -> float:
    warm = epoch(inp, params, "exact")
    inp = EpochInputs(**{**inp.__dict__, "bonds": warm.bonds})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        epoch(inp, params, mode)  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_dense(inp: EpochInputs, params: YumaParams, warm: EpochResult, repeats: int) -> float:
    n = inp.n
    w = np.zeros((n, n))
    bonds = np.zeros((n, n))
    for i in range(n):
        for j, v in inp.weights[i]:
            w[i, j] = v
        for j, v in warm.bonds[i]:
            bonds[i, j] = v / 65535
    stake = np.asarray(inp.stake, dtype=np.float64)
    active = np.ones(n, dtype=bool)
    permit = np.asarray(inp.validator_permit)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        epoch_fast_dense(w, bonds, stake, active, permit, params)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="subnet bench yuma", description=__doc__)
    ap.add_argument("--uids", type=int, default=256)
    ap.add_argument("--validators", type=int, default=64)
    ap.add_argument("--per-row", type=int, default=160, help="miners each validator weights")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    params = YumaParams(liquid_alpha_enabled=True, max_validators=args.validators)
    per_row = min(args.per_row, args.uids - args.validators)
    inp = make_inputs(args.uids, args.validators, per_row, seed=0)
    exact = time_mode(inp, params, "exact", args.repeats)
    fast = time_mode(inp, params, "fast", args.repeats)
    r = epoch(inp, params, "exact")
    dense = time_dense(inp, params, r, args.repeats)
    print(
        f"Yuma epoch: {args.uids} uids, {args.validators} validators, {per_row} weights/row,"
        f" {sum(c > 0 for c in r.consensus)} miners in consensus, median of {args.repeats}"
    )
    print(f"{'mode':<8}{'seconds':>12}")
    print(f"{'exact':<8}{exact:>12.4f}")
    print(f"{'fast':<8}{fast:>12.4f}")
    print(f"{'dense':<8}{dense:>12.4f}  (epoch_fast_dense, the simulator's entry point)")
    print(f"{'ratio':<8}{exact / fast:>12.1f}  (exact/fast)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
