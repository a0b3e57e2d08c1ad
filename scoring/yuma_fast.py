"""The subnet epoch in numpy float64: same algorithm as ``yuma_exact``, for simulator sweeps.

:func:`epoch_fast_dense` is the batched entry point: dense ``[n, n]`` matrices in, a
:class:`FastEpoch` out, with ``bonds`` already in stored form (u16-quantised, rows of lost
permits cleared) so the simulator feeds them to the next epoch unchanged. ``present`` masks carry
the chain's explicit-entry semantics (an explicit zero weight keeps a decaying bond under liquid
alpha; an omitted uid loses it at once); when omitted, "present" means "non-zero".
:func:`run_fast` is the sparse front end behind ``epoch(mode="fast")`` (``yuma_fast_sparse``).

Only rows "in play" are computed: a row with no permit has no weights, and one with no stored
bonds either contributes nothing (no trust, no bonds, no dividends). On a mainnet-shaped subnet
(64 permits of 256 uids) that is a quarter of the matrix; both front ends share :func:`_core`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.yuma_exact import ema_alpha
from scoring.yuma_types import YumaParams

F = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]
U16 = 65535.0
ONE = 1 << 32  # I32F32 one


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


@dataclass(frozen=True)
class Stakes:
    """The per-uid part of an epoch that needs no matrix: stake, permits, active stake."""

    s_w: F
    vp: B  # stored permits used this epoch (owner forced)
    new_vp: B
    a: F


@dataclass(frozen=True)
class RowsOut:
    """What :func:`_core` computes on the rows in play (``rows``) and on all columns."""

    consensus: F
    incentive: F
    vtrust: F  # per row in play
    dividends: F  # per row in play
    bonds_u16: F  # [rows, n] stored u16 values (as floats)
    bonds_present: B


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
    """Per column, the smallest x with stake(score <= x) > sum(A) - kappa (chain semantics).

    Ties need no stable sort: whichever tied entry crosses the stake level, the score is the
    same. Columns are sorted as contiguous rows of the transpose.
    """
    rows = a > 0
    n = w.shape[1]
    if not rows.any():
        return np.zeros(n)
    stake = _normalize(a[rows])
    minority = float(stake.sum()) - kappa
    sub = np.ascontiguousarray(w[rows].T)  # [n, validators]
    order = np.argsort(sub, axis=1)
    above = np.cumsum(stake[order], axis=1) > minority
    idx = np.where(above.any(axis=1), above.argmax(axis=1), sub.shape[1] - 1)
    cols = np.arange(n)
    return np.asarray(sub[cols, order[cols, idx]], dtype=np.float64)


def _alpha_sigmoid(c: F, w: F, b: F, lo: float, hi: float, steep: float) -> F:
    """Liquid alpha per entry; all inputs lie in [0, 1], so the clamps of ``d`` reduce to
    ``max(w - c, 0)`` (buy) and ``b - w`` (sell, where ``b > w``)."""
    d = np.where(w >= b, np.maximum(w - c[None, :], 0.0), b - w)
    d -= 0.5
    d *= -(steep / 100.0)
    np.clip(d, -20.0, 20.0, out=d)
    np.exp(d, out=d)
    d += 1.0
    np.divide(hi - lo, d, out=d)
    d += lo
    return np.asarray(np.clip(d, lo, hi, out=d), dtype=np.float64)


def _visible(present: B, order: I64 | None) -> B:
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


def stakes(stake: F, active: B, permit: B, p: YumaParams, owner_uid: int | None) -> Stakes:
    """Stake threshold and normalisation, stored and new permits, active stake."""
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
    return Stakes(s_w, vp, new_vp, _normalize(np.where(active & vp, s_w, 0.0)))


def yuma2_idle_columns(u: I64, bonds_moving_avg: int) -> I64:
    """Stored Yuma2 bonds (u16) of columns nobody's active stake weights any more, computed in
    the chain's fixed point (as ``yuma_exact`` does) instead of float.

    Such a column keeps its proportions in real arithmetic (``(1-alpha)`` cancels in the
    normalisation), so float storage keeps ``u`` unchanged while the chain's truncating
    quotients lose up to one u16 step per epoch; with no weights to pull the column back the
    difference grows without bound (1.1e-3 after ~70 epochs). The chain's steps are: column-
    normalise the u16 integers, scale by ``1-alpha`` (floored), column-normalise, max-upscale,
    floor to u16; each fits in uint64 for u16 inputs. 0 means the entry is dropped.
    """
    oma = ONE - ema_alpha(bonds_moving_avg)
    u64 = u.astype(np.uint64)
    col = u64.sum(axis=0)
    old_n = np.zeros_like(u64)
    np.floor_divide(u64 << np.uint64(32), col, out=old_n, where=col > 0)
    acc = old_n if oma >= ONE else (old_n * np.uint64(oma)) >> np.uint64(32)
    s = acc.sum(axis=0)
    full = acc >= ONE  # a lone entry holding the whole column: its quotient is exactly ONE
    x = np.full_like(acc, ONE)
    np.floor_divide(np.where(full, 0, acc) << np.uint64(32), s, out=x, where=~full & (s > 0))
    x[acc == 0] = 0
    mx = x.max(axis=0)
    top = x >= mx
    y = np.full_like(x, ONE)
    np.floor_divide(np.where(top, 0, x) << np.uint64(32), mx, out=y, where=~top & (mx > 0))
    y[acc == 0] = 0
    stored = ((y * np.uint64(65535)) >> np.uint64(32)).astype(np.int64)
    return np.where(acc > 0, stored, -1)


def _core(
    rows: I64,
    w: F,
    present: B,
    bonds_prev: F,
    old_present: B,
    st: Stakes,
    p: YumaParams,
    owner_uid: int | None,
    reset_cols: B | None,
    weights_order: I64 | None,
    bonds_order: I64 | None,
) -> RowsOut:
    """Weights to bonds on the rows in play: ``w``/``present``/``bonds_prev``/``old_present``
    are ``[len(rows), n]`` (raw weights with outdated/commit-reveal entries removed)."""
    r = rows.shape[0]
    a = st.a[rows]
    present = present & st.vp[rows][:, None]
    own = rows != owner_uid if owner_uid is not None else np.ones(r, dtype=bool)
    present[np.arange(r)[own], rows[own]] = False  # the diagonal, except the owner's
    w = np.where(present, w, 0.0)
    rs = w.sum(axis=1, keepdims=True)
    w = np.divide(w, rs, out=w, where=rs > 0)

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

    if reset_cols is not None and reset_cols.any():
        old_present = old_present & ~reset_cols[None, :]
    old = np.where(old_present, bonds_prev, 0.0)
    alpha = 1.0 - p.bonds_moving_avg / 1e6
    if p.yuma3_enabled:
        if p.liquid_alpha_enabled and bool((cons != 0).any()):
            # wb and old are already 0 off their presence masks: only the merge walk hides more
            wl, bl = wb, old
            if weights_order is not None:
                wl = np.where(_visible(wb_present, weights_order), wb, 0.0)
            if bonds_order is not None:
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
        stored = np.floor(ema * U16 + 1e-9)
    else:
        old_n = _col_normalize(old)
        delta = wb * a[:, None]
        idle = (delta.sum(axis=0) == 0) & old_present.any(axis=0)
        delta = _col_normalize(delta)
        ema = alpha * delta + (1.0 - alpha) * old_n
        ema_present = (wb_present | old_present) & (ema > 0)
        ema = _col_normalize(np.where(ema_present, ema, 0.0))
        dividends = _normalize(ema @ incentive)
        mx = ema.max(axis=0, initial=0.0)
        stored = np.floor(np.divide(ema, mx, out=ema.copy(), where=mx != 0) * U16 + 1e-9)
        if idle.any():
            u = np.where(old_present[:, idle], np.round(old[:, idle] * U16), 0).astype(np.int64)
            kept = yuma2_idle_columns(u, p.bonds_moving_avg)
            stored[:, idle] = np.maximum(kept, 0)
            ema_present[:, idle] = kept >= 0

    lost = ~st.new_vp[rows]
    stored[lost] = 0.0
    bonds_p = ema_present & ~lost[:, None]
    return RowsOut(cons, incentive, vtrust, dividends, stored, bonds_p)


def shares(st: Stakes, incentive: F, dividends: F) -> tuple[F, F]:
    """Server and validator fractions of the epoch's emission."""
    sum_c = float((incentive + dividends).sum())
    if sum_c != 0:
        return incentive / sum_c, dividends / sum_c
    return incentive.copy(), (st.s_w.copy() if float(st.a.sum()) == 0 else st.a.copy())


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
    weights_order: I64 | None = None,
    bonds_order: I64 | None = None,
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
    n = stake.shape[0]
    st = stakes(stake, active, permit, params, owner_uid)
    old_present = (bonds_prev > 0) if bonds_present is None else bonds_present
    rows = np.flatnonzero(st.vp | old_present.any(axis=1))
    w = weights[rows]
    out = _core(
        rows,
        w,
        (w > 0) if weights_present is None else weights_present[rows],
        bonds_prev[rows],
        old_present[rows],
        st,
        params,
        owner_uid,
        reset_cols,
        None if weights_order is None else weights_order[rows],
        None if bonds_order is None else bonds_order[rows],
    )
    bonds = np.zeros((n, n))
    bonds[rows] = out.bonds_u16 / U16
    bonds_p = np.zeros((n, n), dtype=bool)
    bonds_p[rows] = out.bonds_present
    vtrust, dividends = np.zeros(n), np.zeros(n)
    vtrust[rows], dividends[rows] = out.vtrust, out.dividends
    server, validator = shares(st, out.incentive, dividends)
    return FastEpoch(
        stake_weight=st.s_w,
        active_stake=st.a,
        validator_permit=st.new_vp,
        consensus=out.consensus,
        validator_trust=vtrust,
        incentive=out.incentive,
        dividends=dividends,
        bonds=bonds,
        bonds_present=bonds_p,
        server_share=server,
        validator_share=validator,
    )
