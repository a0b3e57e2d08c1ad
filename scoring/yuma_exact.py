"""The subnet epoch in the chain's fixed-point arithmetic (the devnet's reference).

Follows the sparse on-chain path step by step (see docs in ``scoring.yuma``): every value is an
I32F32 raw integer, every matrix a list of rows of ``(uid, value)`` kept in the order the chain
keeps them, because that order is observable (liquid alpha's merge walk, stored bond rows).
"""

from __future__ import annotations

from scoring import fixed as fx
from scoring.yuma_types import EpochInputs, EpochResult, YumaParams

Sparse = list[list[tuple[int, int]]]
ONE = fx.ONE32
HALF = ONE // 2


def _normalize(x: list[int]) -> list[int]:
    total = fx.sat32(sum(x))
    return [fx.div(v, total) for v in x] if total != 0 else list(x)


def _row_normalize(m: Sparse) -> Sparse:
    out: Sparse = []
    for row in m:
        s = fx.sat32(sum(v for _, v in row))
        out.append([(j, fx.div(v, s)) for j, v in row] if s > 0 else list(row))
    return out


def _col_normalize(m: Sparse, n: int) -> Sparse:
    sums = [0] * n
    for row in m:
        for j, v in row:
            sums[j] = fx.add(sums[j], v)
    return [[(j, fx.div(v, sums[j]) if sums[j] != 0 else v) for j, v in row] for row in m]


def _col_max_upscale(m: Sparse, n: int) -> Sparse:
    maxes = [0] * n
    for row in m:
        for j, v in row:
            maxes[j] = max(maxes[j], v)
    return [[(j, fx.div(v, maxes[j]) if maxes[j] != 0 else v) for j, v in row] for row in m]


def is_topk_nonzero(x: list[int], k: int) -> list[bool]:
    """Top-k by value among non-zero entries; stable ascending sort, so ties drop lower uids."""
    result = [v != 0 for v in x]
    n = len(x)
    if n < k:
        return result
    for idx in sorted(range(n), key=lambda i: x[i])[: n - k]:
        result[idx] = False
    return result


def weighted_median(stake: list[int], score: list[int], minority: int, hi: int) -> int:
    """The chain's deterministic mid-pivot partition search (iterative form of the recursion)."""
    part = list(range(len(score)))
    lo = 0
    while True:
        if not part:
            return 0
        if len(part) == 1:
            return score[part[0]]
        pivot = score[part[len(part) // 2]]
        lo_stake = hi_stake = 0
        lower: list[int] = []
        upper: list[int] = []
        for idx in part:
            if score[idx] == pivot:
                continue
            if score[idx] < pivot:
                lo_stake = fx.add(lo_stake, stake[idx])
                lower.append(idx)
            else:
                hi_stake = fx.add(hi_stake, stake[idx])
                upper.append(idx)
        if fx.add(lo, lo_stake) <= minority < fx.sub(hi, hi_stake):
            return pivot
        if minority < fx.add(lo, lo_stake) and lower:
            part, hi = lower, fx.add(lo, lo_stake)
        elif fx.sub(hi, hi_stake) <= minority and upper:
            part, lo = upper, fx.sub(hi, hi_stake)
        else:
            return pivot


def consensus(active_stake: list[int], w: Sparse, n: int, kappa: int) -> list[int]:
    use_stake = _normalize([s for s in active_stake if s > 0])
    stake_sum = fx.sat32(sum(use_stake))
    minority = fx.sub(stake_sum, kappa)
    cols = [[0] * len(use_stake) for _ in range(n)]
    k = 0
    for r, s in enumerate(active_stake):
        if s <= 0:
            continue
        for c, v in w[r]:
            cols[c][k] = v
        k += 1
    return [weighted_median(use_stake, cols[c], minority, stake_sum) for c in range(n)]


def col_clip(w: Sparse, c: list[int]) -> Sparse:
    """min(w, C_j); an entry above a zero consensus is dropped, not stored as 0."""
    out: Sparse = []
    for row in w:
        r: list[tuple[int, int]] = []
        for j, v in row:
            if c[j] < v:
                if c[j] > 0:
                    r.append((j, c[j]))
            else:
                r.append((j, v))
        out.append(r)
    return out


def interpolate(m1: Sparse, m2: Sparse, n: int, ratio: int) -> Sparse:
    if ratio == 0:
        return [list(r) for r in m1]
    if ratio == ONE:
        return [list(r) for r in m2]
    out: Sparse = []
    for r1, r2 in zip(m1, m2, strict=True):
        d1, d2 = [0] * n, [0] * n
        for j, v in r1:
            d1[j] = v
        for j, v in r2:
            d2[j] = v
        row = []
        for j in range(n):
            val = fx.add(d1[j], fx.mul(ratio, fx.sub(d2[j], d1[j])))
            if val > 0:
                row.append((j, val))
        out.append(row)
    return out


def mat_ema(new: Sparse, old: Sparse, n: int, alpha: int) -> Sparse:
    """alpha*new + (1-alpha)*old over the union of entries; keeps positives, sorted by uid."""
    oma = fx.sub(ONE, alpha)
    out: Sparse = []
    for rn, ro in zip(new, old, strict=True):
        acc = [0] * n
        for j, v in rn:
            acc[j] = fx.add(acc[j], fx.mul(alpha, v))
        for j, v in ro:
            acc[j] = fx.add(acc[j], fx.mul(oma, v))
        out.append([(j, v) for j, v in enumerate(acc) if v > 0])
    return out


def _merge_lookup(row: list[tuple[int, int]], n: int) -> list[int]:
    """Dense view of a row as the chain's merge walk sees it (assumes sorted rows; pitfall B:
    an entry is visible only if its uid exceeds every uid listed before it)."""
    dense = [0] * n
    top = -1
    for j, v in row:
        if j > top:
            dense[j] = v
            top = j
    return dense


def alpha_sigmoid(c: int, w: int, b: int, lo: int, hi: int, steep: int) -> int:
    buy = min(max(fx.sub(w, c), 0), ONE)
    sell = min(max(fx.sub(b, w), 0), ONE)
    diff = buy if w >= b else sell
    arg = fx.mul(fx.div(steep, fx.from_int(-100)), fx.sub(diff, HALF))
    sig = fx.div(ONE, fx.add(ONE, fx.exp_safe(arg)))
    a = fx.add(lo, fx.mul(sig, fx.sub(hi, lo)))
    return min(max(a, lo), hi)


def mat_ema_liquid(new: Sparse, old: Sparse, cons: list[int], n: int, p: YumaParams) -> Sparse:
    """Liquid alpha 2: per-entry alpha; only entries present in the new row survive (pitfall A)."""
    lo, hi = fx.u16_proportion(p.alpha_low), fx.u16_proportion(p.alpha_high)
    steep = fx.from_int(p.alpha_sigmoid_steepness)
    out: Sparse = []
    for rn, ro in zip(new, old, strict=True):
        wl, bl = _merge_lookup(rn, n), _merge_lookup(ro, n)
        alphas = [alpha_sigmoid(cons[j], wl[j], bl[j], lo, hi, steep) for j in range(n)]
        decayed = [0] * n
        for j, v in ro:
            decayed[j] = fx.mul(fx.sub(ONE, alphas[j]), v)
        row = []
        for j, v in rn:
            val = min(fx.add(decayed[j], max(fx.mul(alphas[j], v), 0)), ONE)
            if val > 0:
                row.append((j, val))
        out.append(row)
    return out


def ema_alpha(bonds_moving_avg: int) -> int:
    """1 - bma/1e6, with the quotient taken in I64F64 and floored to I32F32 as the chain does."""
    bma = fx.fixed64_to_fixed32(fx.div64(fx.to_fixed64(bonds_moving_avg), fx.to_fixed64(10**6)))
    return fx.sub(ONE, bma)


def run_exact(inp: EpochInputs, p: YumaParams) -> EpochResult:
    n, b, owner = inp.n, inp.block, inp.owner_uid
    cutoff = max(1, p.activity_cutoff_factor * p.tempo // 1000)
    active = [not (lu + cutoff < b) for lu in inp.last_update]

    s64 = [fx.to_fixed64(s) for s in inp.stake]
    s64 = [
        0 if fx.fixed64_to_u64(v) < p.stake_threshold and i != owner else v
        for i, v in enumerate(s64)
    ]
    total = sum(s64)
    stake = [fx.fixed64_to_fixed32(fx.div64(v, total) if total else v) for v in s64]

    vp = [bool(v) or i == owner for i, v in enumerate(inp.validator_permit)]
    new_vp = is_topk_nonzero(stake, p.max_validators)
    if owner is not None:
        new_vp[owner] = True

    a = _normalize([s if active[i] and vp[i] else 0 for i, s in enumerate(stake)])

    reg = inp.block_at_registration
    w: Sparse = []
    for i, row in enumerate(inp.weights):
        if not vp[i]:
            w.append([])
            continue
        lu = inp.last_update[i]
        cb = inp.commit_blocks[i] if (p.commit_reveal_enabled and inp.commit_blocks) else None
        w.append(
            [
                (j, fx.from_int(v))
                for j, v in row
                if (j != i or i == owner)
                and not lu <= reg[j]
                and not (cb is not None and cb < reg[j])
            ]
        )
    w = _row_normalize(w)

    cons = consensus(a, w, n, fx.u16_proportion(p.kappa))
    clipped = col_clip(w, cons)
    vtrust = [fx.sat32(sum(v for _, v in row)) for row in clipped]
    ranks = [0] * n
    for i, row in enumerate(clipped):
        for j, v in row:
            ranks[j] = fx.add(ranks[j], fx.mul(a[i], v))
    incentive = _normalize(ranks)
    wb = interpolate(w, clipped, n, fx.u16_proportion(p.bonds_penalty))

    t0 = inp.last_mechanism_step_block + 1 if inp.last_mechanism_step_block else max(0, b - p.tempo)
    alpha = ema_alpha(p.bonds_moving_avg)
    if p.yuma3_enabled:
        old = [[(j, fx.u16_proportion(v)) for j, v in row if not t0 <= reg[j]] for row in inp.bonds]
        if p.liquid_alpha_enabled and any(c != 0 for c in cons):
            ema = mat_ema_liquid(wb, old, cons, n, p)
        else:
            ema = mat_ema(wb, old, n, alpha)
        norm = _col_normalize(ema, n)
        per_val = [fx.sat32(sum(fx.mul(v, incentive[j]) for j, v in row)) for row in norm]
        dividends = _normalize([fx.mul(pv, a[i]) for i, pv in enumerate(per_val)])
        stored = ema
    else:
        old = [[(j, fx.from_int(v)) for j, v in row if not t0 <= reg[j]] for row in inp.bonds]
        old = _col_normalize(old, n)
        delta = _col_normalize(
            [[(j, fx.mul(v, a[i])) for j, v in row] for i, row in enumerate(wb)], n
        )
        ema = _col_normalize(mat_ema(delta, old, n, alpha), n)
        dividends = _normalize(
            [fx.sat32(sum(fx.mul(incentive[j], v) for j, v in row)) for row in ema]
        )
        stored = _col_max_upscale(ema, n)

    sum_c = fx.sat32(sum(fx.add(i_, d) for i_, d in zip(incentive, dividends, strict=True)))
    if sum_c != 0:
        server = [fx.div(v, sum_c) for v in incentive]
        validator = [fx.div(v, sum_c) for v in dividends]
    else:
        server = list(incentive)
        validator = list(stake) if sum(a) == 0 else list(a)

    def fl(xs: list[int]) -> tuple[float, ...]:
        return tuple(fx.to_float(v) for v in xs)

    def u16(xs: list[int]) -> tuple[int, ...]:
        return tuple(fx.to_u16_proportion(v) for v in xs)

    bonds_out = tuple(
        tuple((j, fx.to_u16_proportion(v)) for j, v in row) if new_vp[i] else ()
        for i, row in enumerate(stored)
    )
    return EpochResult(
        active=tuple(active),
        stake_weight=fl(stake),
        validator_permit=tuple(new_vp),
        consensus=fl(cons),
        validator_trust=fl(vtrust),
        incentive=fl(incentive),
        dividends=fl(dividends),
        bonds=bonds_out,
        server_emission=tuple(fx.rao_share(v, inp.emission) for v in server),
        validator_emission=tuple(fx.rao_share(v, inp.emission) for v in validator),
        incentive_u16=u16(incentive),
        dividends_u16=u16(dividends),
        consensus_u16=u16(cons),
        validator_trust_u16=u16(vtrust),
        stake_weight_u16=u16(stake),
        active_stake=fl(a),
    )
