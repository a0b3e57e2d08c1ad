"""The sparse front end of the fast engine (``epoch(mode="fast")``): CSR rows in and out.

Builds the dense matrices of the rows in play straight from :class:`SparseRows` (one scatter,
no loop over entries), applies the outdated and commit-reveal masks per entry, runs
:func:`scoring.yuma_fast._core` and returns the stored bonds as :class:`SparseRows` again, so
the cost over the dense core is a few array passes whatever the number of entries.
"""

from __future__ import annotations

import numpy as np

from scoring.yuma_fast import I64, U16, B, F, _core, shares, stakes
from scoring.yuma_rows import SparseRows, trusted
from scoring.yuma_types import EpochInputs, EpochResult, YumaParams

_U64_FLOAT_MAX = float(np.nextafter(2.0**64, 0))  # largest float64 below 2**64 (u64 saturation)


def _compact(
    m: SparseRows, pos: I64, r: int, n: int, keep: B | None = None, u16: bool = False
) -> tuple[F, B, I64 | None]:
    """Values (``u16``: as proportions, /65535), presence and in-row positions of the rows with
    ``pos >= 0`` as ``[r, n]`` (positions None when the rows are sorted by uid, as the SDK
    submits them). Bonds the fast engine returned come with that form already."""
    if m.dense is not None and keep is None:  # bonds of the previous fast epoch: reuse rows
        had, values_d, present_d = m.dense
        if had.shape[0] == r and (pos[had] == np.arange(r)).all():
            return values_d, present_d, None  # read-only; the core never writes its inputs
        to = pos[had]
        moved_v, moved_p = np.zeros((r, n)), np.zeros((r, n), dtype=bool)
        moved_v[to[to >= 0]] = values_d[to >= 0]
        moved_p[to[to >= 0]] = present_d[to >= 0]
        return moved_v, moved_p, None
    counts = np.diff(m.indptr)
    flat = np.repeat(pos * n, counts) + m.uids  # negative for rows not in play
    values = m.values
    if keep is not None or bool((pos[counts > 0] < 0).any()):
        sel = flat >= 0 if keep is None else (flat >= 0) & keep
        flat, values = flat[sel], values[sel]
    else:
        sel = None
    vals = np.full(r * n, -1.0)  # -1 marks "no entry": one scatter gives values and presence
    vals[flat] = values / U16 if u16 else values
    pres = vals >= 0
    np.maximum(vals, 0.0, out=vals)
    if m.rows_sorted():
        return vals.reshape(r, n), pres.reshape(r, n), None
    row = m.row_of_entry()
    in_row = np.arange(len(row)) - m.indptr[row]
    order = np.full(r * n, -1, dtype=np.int64)
    order[flat] = in_row if sel is None else in_row[sel]
    return vals.reshape(r, n), pres.reshape(r, n), order.reshape(r, n)


def _entry_mask(
    inp: EpochInputs, p: YumaParams, weights: SparseRows, lu: I64, reg: I64
) -> B | None:
    """Weights kept by the outdated and commit-reveal masks, per entry (None: all of them)."""
    cb = None
    if p.commit_reveal_enabled and inp.commit_blocks is not None:
        cb = np.array([np.inf if c is None else c for c in inp.commit_blocks], dtype=np.float64)
    has = np.diff(weights.indptr) > 0
    newest = int(reg.max()) if reg.size else 0
    if not has.any() or (
        int(lu[has].min()) > newest and (cb is None or float(cb[has].min()) >= newest)
    ):
        return None  # every weight was set after every registration: nothing to drop
    row = weights.row_of_entry()
    keep: B = ~(lu[row] <= reg[weights.uids])  # outdated: set before the miner registered
    if cb is not None:
        keep &= ~(cb[row] < reg[weights.uids])
    return keep


def run_fast(
    inp: EpochInputs, p: YumaParams, weights: SparseRows, bonds: SparseRows
) -> EpochResult:
    """One fast epoch from checked CSR ``weights``/``bonds`` (see ``yuma_types.check_inputs``)."""
    n, b = inp.n, inp.block
    cutoff = max(1, p.activity_cutoff_factor * p.tempo // 1000)
    lu = np.asarray(inp.last_update, dtype=np.int64)
    reg = np.asarray(inp.block_at_registration, dtype=np.int64)
    active = ~(lu + cutoff < b)
    st = stakes(
        np.asarray(inp.stake, dtype=np.float64),
        active,
        np.asarray(inp.validator_permit, dtype=bool),
        p,
        inp.owner_uid,
    )
    rows = np.flatnonzero(st.vp | bonds.nonempty_rows())
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(rows.shape[0])
    keep = _entry_mask(inp, p, weights, lu, reg)
    w, w_pres, w_ord = _compact(weights, pos, rows.shape[0], n, keep)
    old, b_pres, b_ord = _compact(bonds, pos, rows.shape[0], n, u16=True)
    t0 = inp.last_mechanism_step_block + 1 if inp.last_mechanism_step_block else max(0, b - p.tempo)
    out = _core(rows, w, w_pres, old, b_pres, st, p, inp.owner_uid, t0 <= reg, w_ord, b_ord)
    liquid = p.yuma3_enabled and p.liquid_alpha_enabled and bool((out.consensus != 0).any())
    bonds_out = _to_rows(out.bonds_u16, out.bonds_present, rows, n, w_ord if liquid else None, p)
    vtrust, dividends = np.zeros(n), np.zeros(n)
    vtrust[rows], dividends[rows] = out.vtrust, out.dividends
    server, validator = shares(st, out.incentive, dividends)
    # Per-uid outputs converted in one pass each (stacked), not vector by vector.
    vec = np.stack([st.s_w, out.consensus, vtrust, out.incentive, dividends, st.a])
    s_w, cons, trust, inc, div, a = map(tuple, vec.tolist())
    q = np.minimum(np.floor(vec[:5] * U16 + 1e-9), U16).astype(np.int64).tolist()  # all >= 0
    rao = np.floor(np.stack([server, validator]) * float(inp.emission))
    srv, val = map(tuple, np.minimum(rao, _U64_FLOAT_MAX).astype(np.uint64).tolist())
    return EpochResult(
        active=tuple(active.tolist()),
        stake_weight=s_w,
        validator_permit=tuple(st.new_vp.tolist()),
        consensus=cons,
        validator_trust=trust,
        incentive=inc,
        dividends=div,
        bonds=bonds_out,
        server_emission=srv,
        validator_emission=val,
        incentive_u16=tuple(q[3]),
        dividends_u16=tuple(q[4]),
        consensus_u16=tuple(q[1]),
        validator_trust_u16=tuple(q[2]),
        stake_weight_u16=tuple(q[0]),
        active_stake=a,
    )


def _to_rows(
    stored: F, present: B, rows: I64, n: int, w_ord: I64 | None, p: YumaParams
) -> SparseRows:
    """Stored bonds (u16 values ``[rows, n]``) as rows: in uid order (CSR built lazily from
    the dense form, which the next fast epoch reads directly), or in the weights' submission
    order where liquid alpha rebuilt the row from an unsorted weight row (as the chain's
    sparse EMA does)."""
    if w_ord is None or p.bonds_penalty not in (0, 65535):
        return SparseRows.from_dense(rows, stored, present, n)
    k, j = np.nonzero(present)
    by = np.lexsort((w_ord[present], k))
    values = stored[present].astype(np.int64)[by]
    counts = np.zeros(n, dtype=np.int64)
    counts[rows] = present.sum(axis=1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return trusted(indptr, j[by].astype(np.int64), values, n)
