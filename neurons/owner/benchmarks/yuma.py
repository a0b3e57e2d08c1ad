"""Time one Yuma epoch, exact (fixed point) vs fast (numpy), on a mainnet-sized subnet.

256 uids, 64 validators each weighting a random 160 of the 192 miners, Yuma3 + liquid alpha,
bonds carried from a warm-up epoch. Modes, run interleaved (one of each per round, so a busy
machine slows them alike; within a round a mode repeats for >= 50 ms) and timed in process CPU
time (which other jobs on the cores inflate less than wall time); the minimum over rounds is
reported:

* exact: ``epoch(mode="exact")`` on rows as Python lists (what the devnet stores).
* fast: ``epoch(mode="fast")`` on :class:`~scoring.yuma.SparseRows` (weights as a chain keeps
  them, bonds as the previous fast epoch returned them): the public sparse API.
* fast, list rows: the same from Python lists, including their one-off conversion.
* dense: ``epoch_fast_dense`` on dense matrices (the simulator's entry point).

Also prints the largest deviation of fast from exact on this state. The last line is the ratio.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from scoring.yuma import EpochInputs, EpochResult, SparseRows, YumaParams, epoch, epoch_fast_dense
from scoring.yuma_rows import as_rows


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


def dense_call(inp: EpochInputs, params: YumaParams) -> Callable[[], object]:
    n = inp.n
    w, bonds = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        for j, v in inp.weights[i]:
            w[i, j] = v
        for j, v in inp.bonds[i]:
            bonds[i, j] = v / 65535
    stake = np.asarray(inp.stake, dtype=np.float64)
    active = np.ones(n, dtype=bool)
    permit = np.asarray(inp.validator_permit)
    return lambda: epoch_fast_dense(w, bonds, stake, active, permit, params)


def deviation(a: EpochResult, b: EpochResult) -> float:
    """Max |a - b| over incentive, dividends, consensus, trust and stored bonds (/65535)."""
    worst = max(
        float(np.abs(np.subtract(getattr(a, f), getattr(b, f))).max())
        for f in ("incentive", "dividends", "consensus", "validator_trust")
    )
    for ra, rb in zip(a.bonds, b.bonds, strict=True):
        da, db = dict(ra), dict(rb)
        for j in da.keys() | db.keys():
            worst = max(worst, abs(da.get(j, 0) - db.get(j, 0)) / 65535)
    return worst


def cpu_min(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Minimum process CPU seconds per call, the modes interleaved round by round; in a round
    each mode runs back to back for at least 50 ms (one exact epoch; many fast ones), so a
    mode is timed in its steady state, as a simulator sweep runs it."""
    batch = {}
    for name, call in calls.items():
        t0 = time.process_time()
        call()
        batch[name] = max(1, int(0.05 / max(time.process_time() - t0, 1e-6)))
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.process_time()
            for _ in range(batch[name]):
                call()
            best[name] = min(best[name], (time.process_time() - t0) / batch[name])
    return best


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="subnet bench yuma", description=__doc__.split("\n")[0])
    ap.add_argument("--uids", type=int, default=256)
    ap.add_argument("--validators", type=int, default=64)
    ap.add_argument("--per-row", type=int, default=160, help="miners each validator weights")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="5 rounds (well under 2 minutes)")
    args = ap.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    params = YumaParams(liquid_alpha_enabled=True, max_validators=args.validators)
    per_row = min(args.per_row, args.uids - args.validators)
    first = make_inputs(args.uids, args.validators, per_row, seed=0)
    warm = epoch(first, params, "fast")  # bonds carried over: the same values for every mode
    assert isinstance(warm.bonds, SparseRows)
    lists = replace(first, bonds=[list(r) for r in warm.bonds])
    csr = replace(first, weights=as_rows("weights", first.weights, first.n), bonds=warm.bonds)

    t = cpu_min(
        {
            "exact": lambda: epoch(lists, params, "exact"),
            "fast": lambda: epoch(csr, params, "fast"),
            "fast_lists": lambda: epoch(lists, params, "fast"),  # converts every call
            "dense": dense_call(lists, params),
        },
        rounds,
    )
    ex = epoch(lists, params, "exact")
    dev = deviation(ex, epoch(csr, params, "fast"))
    print(
        f"Yuma epoch: {args.uids} uids, {args.validators} validators, {per_row} weights/row,"
        f" {sum(c > 0 for c in ex.consensus)} miners in consensus;"
        f" process CPU seconds, min of {rounds} interleaved rounds"
    )
    print(f"{'mode':<12}{'seconds':>10}")
    print(f"{'exact':<12}{t['exact']:>10.5f}  (fixed point, Python integers, list rows)")
    print(f"{'fast':<12}{t['fast']:>10.5f}  (epoch(mode='fast') on SparseRows)")
    print(f"{'fast lists':<12}{t['fast_lists']:>10.5f}  (the same from Python lists)")
    print(f"{'dense':<12}{t['dense']:>10.5f}  (epoch_fast_dense, the simulator's entry point)")
    print(f"max |fast - exact| on this state: {dev:.2e}")
    print(
        f"exact/fast {t['exact'] / t['fast']:.1f}x; fast/dense {t['fast'] / t['dense']:.2f}x;"
        f" fast lists/dense {t['fast_lists'] / t['dense']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
