"""The subnet epoch in numpy float64: same algorithm as ``yuma_exact``, for simulator sweeps.

:func:`epoch_fast_dense` is the batched entry point: dense ``[n, n]`` matrices in, a
:class:`FastEpoch` out, with ``bonds`` already in stored form (u16-quantised, rows of lost
permits cleared) so the simulator feeds them to the next epoch unchanged. ``present`` masks carry
the chain's explicit-entry semantics (an explicit zero weight keeps a decaying bond under liquid
alpha; an omitted uid loses it at once); when omitted, "present" means "non-zero".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.yuma_types import EpochInputs, EpochResult, Row, YumaParams

F = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
U16 = 65535.0


@dataclass(frozen=True)
class FastEpoch:
    """Per-uid vectors and the new bond matrix of one fast epoch."""

    stake_weight: F  # normalised S after the stake threshold
    active_stake: F  # A: S masked by active & stored permit, normalised
    validator_permit: B  # new permits VP' (store and pass as ``permit`` next epoch)
    consensus: F
    validator_trust: F
    incentive: F
    dividends: F
    bonds: F  # stored form / 65535 (Yuma3: proportions; Yuma2: column-max-upscaled)
    bonds_present: B  # which entries exist in the stored rows
    server_share: F  # fraction of E per uid (multiply by E and floor for rao)
    validator_share: F


def _normalize(x: F) -> F:
    s = float(x.sum())
    return x / s if s != 0 else x.copy()


def _col_normalize(m: F) -> F:
    s = m.sum(axis=0)
    return np.asarray(np.divide(m, s, out=m.copy(), where=s != 0), dtype=np.float64)


def topk_nonzero(x: F, k: int) -> B:
    """Top-k among non-zero values; stable ascending sort drops the lowest n-k (lower uid first)."""
    n = x.shape[0]
    out: B = np.asarray(x != 0, dtype=np.bool_)
    if n < k:
        return out
    drop = np.argsort(x, kind="stable")[: n - k]
    out[drop] = False
    return out


def weighted_median_cols(a: F, w: F, kappa: float) -> F:
    """Per column, the smallest x with stake(score <= x) > sum(A) - kappa (chain semantics)."""
    rows = a > 0
    n = w.shape[1]
    if not rows.any():
        return np.zeros(n)
    stake = _normalize(a[rows])
    minority = float(stake.sum()) - kappa
    sub = w[rows]
    order = np.argsort(sub, axis=0, kind="stable")
    scores = np.take_along_axis(sub, order, axis=0)
    cum = np.cumsum(stake[order], axis=0)
    above = cum > minority
    idx = np.where(above.any(axis=0), above.argmax(axis=0), sub.shape[0] - 1)
    return np.asarray(scores[idx, np.arange(n)], dtype=np.float64)


def _alpha_sigmoid(c: F, w: F, b: F, lo: float, hi: float, steep: float) -> F:
    buy = np.clip(w - c[None, :], 0.0, 1.0)
    sell = np.clip(b - w, 0.0, 1.0)
    diff = np.where(w >= b, buy, sell)
    arg = np.clip(-(steep / 100.0) * (diff - 0.5), -20.0, 20.0)
    sig = 1.0 / (1.0 + np.exp(arg))
    return np.asarray(np.clip(lo + sig * (hi - lo), lo, hi), dtype=np.float64)


def _visible(present: B, order: npt.NDArray[np.int64] | None) -> B:
    """Entries the merge walk sees: those whose uid exceeds every uid listed before them."""
    if order is None:
        return present
    vis = present.copy()
    for i in range(present.shape[0]):
        js = np.flatnonzero(present[i])
        if js.size < 2:
            continue
        seq = js[np.argsort(order[i, js], kind="stable")]
        prev_max = np.maximum.accumulate(np.concatenate(([-1], seq[:-1])))
        vis[i, seq[seq <= prev_max]] = False
    return vis


def epoch_fast_dense(
    weights: F,
    bonds_prev: F,
    stake: F,
    active: B,
    permit: B,
    params: YumaParams,
    *,
    owner_uid: int | None = None,
    weights_present: B | None = None,
    bonds_present: B | None = None,
    reset_cols: B | None = None,
    weights_order: npt.NDArray[np.int64] | None = None,
    bonds_order: npt.NDArray[np.int64] | None = None,
) -> FastEpoch:
    """One epoch on dense matrices.

    ``weights``: raw row weights (any scale; u16 as stored is fine) with the outdated and
    commit-reveal masks already applied by the caller (zero those entries and clear them in
    ``weights_present``); permit rows and the diagonal (except the owner's) are masked here.
    ``bonds_prev``: last epoch's ``FastEpoch.bonds`` (or stored u16 / 65535). ``stake``: raw
    stake (threshold applied here, owner exempt). ``active``/``permit``: activity flags and the
    *stored* permits. ``reset_cols``: miners re-registered since the last epoch (their bonds are
    dropped). ``*_order``: position of each entry in its stored row (for rows not sorted by uid,
    liquid alpha's merge walk misses entries listed after a larger uid -- pitfall B); omitted
    means sorted rows, which is what dense matrices are.
    """
    p = params
    n = stake.shape[0]
    s = stake.astype(np.float64)
    keep = s >= p.stake_threshold
    if owner_uid is not None:
        keep[owner_uid] = True
    # S lives on the I32F32 grid on chain; quantising keeps permits (top-k ties, dust stake that
    # rounds to 0) identical to the exact engine.
    s_w = np.floor(_normalize(np.where(keep, s, 0.0)) * 2.0**32) / 2.0**32
    vp = permit.astype(bool).copy()
    new_vp = topk_nonzero(s_w, p.max_validators)
    if owner_uid is not None:
        vp[owner_uid] = True
        new_vp[owner_uid] = True
    a = _normalize(np.where(active & vp, s_w, 0.0))

    present = (weights > 0) if weights_present is None else weights_present.copy()
    present &= vp[:, None]
    diag = np.eye(n, dtype=bool)
    if owner_uid is not None:
        diag[owner_uid, owner_uid] = False
    present &= ~diag
    w = np.where(present, weights, 0.0)
    rs = w.sum(axis=1, keepdims=True)
    w = np.divide(w, rs, out=w.copy(), where=rs > 0)

    cons = weighted_median_cols(a, w, p.kappa / U16)
    over = w > cons[None, :]
    clipped = np.where(over, cons[None, :], w)
    clip_present = present & ~(over & (cons[None, :] <= 0))
    clipped = np.where(clip_present, clipped, 0.0)
    vtrust = clipped.sum(axis=1)
    incentive = _normalize(a @ clipped)

    beta = p.bonds_penalty / U16
    if p.bonds_penalty == 0:
        wb, wb_present = w, present
    elif p.bonds_penalty == 65535:
        wb, wb_present = clipped, clip_present
    else:  # interpolation rebuilds rows in uid order
        wb = w + beta * (clipped - w)
        wb_present = wb > 0
        wb = np.where(wb_present, wb, 0.0)
        weights_order = None

    old_present = (bonds_prev > 0) if bonds_present is None else bonds_present.copy()
    if reset_cols is not None:
        old_present &= ~reset_cols[None, :]
    old = np.where(old_present, bonds_prev, 0.0)
    alpha = 1.0 - p.bonds_moving_avg / 1e6
    if p.yuma3_enabled:
        if p.liquid_alpha_enabled and bool((cons != 0).any()):
            wl = np.where(_visible(wb_present, weights_order), wb, 0.0)
            bl = np.where(_visible(old_present, bonds_order), old, 0.0)
            al = _alpha_sigmoid(
                cons, wl, bl, p.alpha_low / U16, p.alpha_high / U16, p.alpha_sigmoid_steepness
            )
            ema = np.minimum((1.0 - al) * old + np.maximum(al * wb, 0.0), 1.0)
            ema_present = wb_present & (ema > 0)
        else:
            ema = alpha * wb + (1.0 - alpha) * old
            ema_present = (wb_present | old_present) & (ema > 0)
        ema = np.where(ema_present, ema, 0.0)
        dividends = _normalize((_col_normalize(ema) @ incentive) * a)
        stored = ema
    else:
        old_n = _col_normalize(old)
        delta = _col_normalize(wb * a[:, None])
        ema = alpha * delta + (1.0 - alpha) * old_n
        ema_present = (wb_present | old_present) & (ema > 0)
        ema = _col_normalize(np.where(ema_present, ema, 0.0))
        dividends = _normalize(ema @ incentive)
        mx = ema.max(axis=0)
        stored = np.divide(ema, mx, out=ema.copy(), where=mx != 0)

    bonds_q = np.floor(stored * U16 + 1e-9) / U16
    bonds_q[~new_vp] = 0.0
    bonds_p = ema_present & new_vp[:, None]

    sum_c = float((incentive + dividends).sum())
    if sum_c != 0:
        server, validator = incentive / sum_c, dividends / sum_c
    else:
        server = incentive.copy()
        validator = s_w.copy() if float(a.sum()) == 0 else a.copy()
    return FastEpoch(
        stake_weight=s_w,
        active_stake=a,
        validator_permit=new_vp,
        consensus=cons,
        validator_trust=vtrust,
        incentive=incentive,
        dividends=dividends,
        bonds=bonds_q,
        bonds_present=bonds_p,
        server_share=server,
        validator_share=validator,
    )


def _dense(rows: Sequence[Row], n: int) -> tuple[F, B, npt.NDArray[np.int64] | None]:
    """Dense values, presence and in-row positions (None when every row is uid-sorted)."""
    m = np.zeros((n, n))
    pres = np.zeros((n, n), dtype=bool)
    order = np.full((n, n), -1, dtype=np.int64)
    unsorted = False
    for i, row in enumerate(rows):
        if not row:
            continue
        js = np.fromiter((e[0] for e in row), dtype=np.int64, count=len(row))
        m[i, js] = np.fromiter((e[1] for e in row), dtype=np.float64, count=len(row))
        pres[i, js] = True
        order[i, js] = np.arange(len(row))
        unsorted = unsorted or bool((np.diff(js) < 0).any())
    return m, pres, (order if unsorted else None)


def run_fast(inp: EpochInputs, p: YumaParams) -> EpochResult:
    """Sparse front end of the fast engine: build dense masks, run, re-sparsify bonds."""
    n, b = inp.n, inp.block
    cutoff = max(1, p.activity_cutoff_factor * p.tempo // 1000)
    lu = np.asarray(inp.last_update, dtype=np.int64)
    reg = np.asarray(inp.block_at_registration, dtype=np.int64)
    active = ~(lu + cutoff < b)
    w, w_pres, w_ord = _dense(inp.weights, n)
    keep = ~(lu[:, None] <= reg[None, :])
    if p.commit_reveal_enabled and inp.commit_blocks is not None:
        cb = np.array([np.inf if c is None else c for c in inp.commit_blocks], dtype=np.float64)
        keep &= ~(cb[:, None] < reg[None, :])
    w_pres &= keep
    w = np.where(w_pres, w, 0.0)
    bonds, b_pres, b_ord = _dense(inp.bonds, n)
    t0 = inp.last_mechanism_step_block + 1 if inp.last_mechanism_step_block else max(0, b - p.tempo)
    r = epoch_fast_dense(
        w,
        bonds / U16,
        np.asarray(inp.stake, dtype=np.float64),
        active,
        np.asarray(inp.validator_permit, dtype=bool),
        p,
        owner_uid=inp.owner_uid,
        weights_present=w_pres,
        bonds_present=b_pres,
        reset_cols=t0 <= reg,
        weights_order=w_ord,
        bonds_order=b_ord,
    )
    liquid = p.yuma3_enabled and p.liquid_alpha_enabled and bool((r.consensus != 0).any())
    keep_order = liquid and p.bonds_penalty in (0, 65535)
    bonds_out = []
    for i in range(n):
        js = np.flatnonzero(r.bonds_present[i])
        if keep_order and w_ord is not None:
            js = js[np.argsort(w_ord[i, js], kind="stable")]
        bonds_out.append(tuple((int(j), round(r.bonds[i, j] * U16)) for j in js))
    e = inp.emission

    def u16(x: F) -> tuple[int, ...]:
        return tuple(int(v) for v in np.floor(x * U16 + 1e-9).clip(0, U16))

    def fl(x: F) -> tuple[float, ...]:
        return tuple(float(v) for v in x)

    return EpochResult(
        active=tuple(bool(v) for v in active),
        stake_weight=fl(r.stake_weight),
        validator_permit=tuple(bool(v) for v in r.validator_permit),
        consensus=fl(r.consensus),
        validator_trust=fl(r.validator_trust),
        incentive=fl(r.incentive),
        dividends=fl(r.dividends),
        bonds=tuple(bonds_out),
        server_emission=tuple(int(v) for v in np.floor(r.server_share * e)),
        validator_emission=tuple(int(v) for v in np.floor(r.validator_share * e)),
        incentive_u16=u16(r.incentive),
        dividends_u16=u16(r.dividends),
        consensus_u16=u16(r.consensus),
        validator_trust_u16=u16(r.validator_trust),
        stake_weight_u16=u16(r.stake_weight),
        active_stake=fl(r.active_stake),
    )
