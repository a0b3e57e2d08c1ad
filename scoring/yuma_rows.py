"""Sparse rows of ``(uid, u16)`` pairs held as three flat arrays (CSR), and their checks.

The chain stores weights and bonds as one list of pairs per uid. The exact engine walks those
lists; the fast engine wants arrays. :class:`SparseRows` is both: a read-only sequence of rows
(indexing gives the same tuples a list of rows would, so every caller of the exact engine keeps
working) backed by ``indptr``/``uids``/``values`` arrays the fast engine reads without a Python
loop over entries. The fast engine returns its bonds in this form, so chained fast epochs never
convert at all; a plain list of rows is converted once, in :func:`as_rows`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import overload

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
U16 = 65535
Pairs = tuple[tuple[int, int], ...]
Dense = tuple[I64, npt.NDArray[np.float64], npt.NDArray[np.bool_]]


class SparseRows(Sequence[Pairs]):
    """Rows ``i`` of pairs ``(uids[k], values[k])`` for ``k`` in ``indptr[i]:indptr[i+1]``,
    in stored (submission) order. Immutable (the arrays are made read-only), so a check done
    once holds: :func:`as_rows` does not re-check rows it has checked for the same ``n``."""

    __slots__ = ("_arrays", "_checked_n", "_dense_u16", "_n", "_row", "_sorted", "dense")

    def __init__(self, indptr: I64, uids: I64, values: I64) -> None:
        if not len(indptr) or len(uids) != len(values) or int(indptr[-1]) != len(uids):
            raise ValueError("SparseRows: indptr, uids and values do not fit together")
        for a in (indptr, uids, values):
            a.flags.writeable = False
        self._arrays: tuple[I64, I64, I64] | None = (indptr, uids, values)
        self._n = len(indptr) - 1
        self._row: I64 | None = None
        self._sorted: bool | None = None
        self._checked_n = -1
        # (rows, [len(rows), n] values / 65535, presence): the same rows densely, when the fast
        # engine built them from such a matrix (its bonds), so the next epoch need not scatter
        self.dense: Dense | None = None
        self._dense_u16: npt.NDArray[np.float64] | None = None

    @classmethod
    def from_dense(
        cls, rows: I64, u16: npt.NDArray[np.float64], present: npt.NDArray[np.bool_], n: int
    ) -> SparseRows:
        """Rows ``rows`` of a dense ``[len(rows), n]`` u16 matrix (uid order, the rest empty).
        The CSR arrays are built only if something reads them; a following fast epoch reads
        the dense form instead."""
        out = cls.__new__(cls)
        out._arrays, out._n, out._row, out._sorted, out._checked_n = None, n, None, True, n
        for a in (rows, u16, present):
            a.flags.writeable = False
        out._dense_u16 = u16
        out.dense = (rows, u16 / U16, present)
        out.dense[1].flags.writeable = False
        return out

    def _csr(self) -> tuple[I64, I64, I64]:
        if self._arrays is None:
            assert self.dense is not None and self._dense_u16 is not None
            rows, _, present = self.dense
            counts = np.zeros(self._n, dtype=np.int64)
            counts[rows] = present.sum(axis=1)
            indptr = np.zeros(self._n + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
            uids = np.broadcast_to(np.arange(self._n, dtype=np.int64), present.shape)[present]
            values = self._dense_u16[present].astype(np.int64)  # row-major: uid order
            for a in (indptr, uids, values):
                a.flags.writeable = False
            self._arrays = (indptr, uids, values)
        return self._arrays

    @property
    def indptr(self) -> I64:
        return self._csr()[0]

    @property
    def uids(self) -> I64:
        return self._csr()[1]

    @property
    def values(self) -> I64:
        return self._csr()[2]

    def nonempty_rows(self) -> npt.NDArray[np.bool_]:
        """Which rows hold at least one entry (from the dense form when there is one)."""
        if self._arrays is None and self.dense is not None:
            rows, _, present = self.dense
            out = np.zeros(self._n, dtype=bool)
            out[rows] = present.any(axis=1)
            return out
        return np.asarray(np.diff(self.indptr) > 0, dtype=np.bool_)

    @classmethod
    def empty(cls, n: int) -> SparseRows:
        z = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(n + 1, dtype=np.int64), z, z.copy())

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> Pairs: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Pairs, ...]: ...
    def __getitem__(self, i: int | slice) -> Pairs | tuple[Pairs, ...]:
        if isinstance(i, slice):
            return tuple(self[k] for k in range(*i.indices(len(self))))
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        i %= n
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return tuple(zip(self.uids[lo:hi].tolist(), self.values[lo:hi].tolist(), strict=True))

    def __iter__(self) -> Iterator[Pairs]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(
            a == tuple(tuple(e) for e in b) for a, b in zip(self, other, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    def __repr__(self) -> str:
        return f"SparseRows({len(self)} rows, {len(self.uids)} entries)"

    def row_of_entry(self) -> I64:
        """The row index of every entry (``len(uids)`` values)."""
        if self._row is None:
            self._row = np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))
            self._row.flags.writeable = False
        return self._row

    def rows_sorted(self) -> bool:
        """Whether every row lists its uids in increasing order."""
        if self._sorted is None:
            row = self.row_of_entry()
            self._sorted = not bool(
                ((row[1:] == row[:-1]) & (self.uids[1:] < self.uids[:-1])).any()
            )
        return self._sorted


def as_rows(name: str, rows: Sequence[Sequence[tuple[int, int]]], n: int) -> SparseRows:
    """``rows`` as checked :class:`SparseRows`; raises ValueError naming the first bad entry.

    Checks what the chain guarantees of stored rows: ``n`` rows, pairs, uids in ``0..n-1`` and
    unique within a row, values that are u16.
    """
    if len(rows) != n:
        raise ValueError(f"{name}: expected {n} rows (one per uid), got {len(rows)}")
    out = rows if isinstance(rows, SparseRows) else _convert(name, rows)
    if out._checked_n != n:
        _check(name, out, n)
        out._checked_n = n
    return out


def _convert(name: str, rows: Sequence[Sequence[tuple[int, int]]]) -> SparseRows:
    lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    m = int(indptr[-1])
    widths = np.fromiter(map(len, chain.from_iterable(rows)), dtype=np.int64, count=m)
    if m and (widths != 2).any():
        k = int(np.flatnonzero(widths != 2)[0])
        i = int(np.searchsorted(indptr, k, side="right")) - 1
        entry = rows[i][k - int(indptr[i])]
        raise ValueError(f"{name}[{i}]: entries must be (uid, u16) pairs, got {entry!r}")
    try:
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(rows)), np.int64, count=2 * m)
    except (OverflowError, TypeError, ValueError) as e:
        raise ValueError(f"{name}: entries must be pairs of integers ({e})") from None
    pairs = flat.reshape(m, 2)
    return SparseRows(indptr, pairs[:, 0].copy(), pairs[:, 1].copy())


def trusted(indptr: I64, uids: I64, values: I64, n: int) -> SparseRows:
    """Rows the fast engine built itself (valid by construction for ``n`` uids)."""
    out = SparseRows(indptr, uids, values)
    out._checked_n = n
    return out


def _check(name: str, r: SparseRows, n: int) -> None:
    """Vectorised form of the per-entry checks; the message names the first bad entry."""
    m = len(r.uids)
    if not m:
        return
    row = r.row_of_entry()
    bad_uid = (r.uids < 0) | (r.uids >= n)
    key = np.where(bad_uid, -1 - np.arange(m), row * n + r.uids)  # bad uids never collide
    dup = np.zeros(m, dtype=bool)
    if (np.bincount(key[~bad_uid], minlength=1) > 1).any():
        dup[:] = True
        dup[np.unique(key, return_index=True)[1]] = False  # all but each key's first entry
    bad_value = (r.values < 0) | (r.values > U16)
    bad = bad_uid | dup | bad_value
    if not bad.any():
        return
    k = int(np.flatnonzero(bad)[0])
    i, j, v = int(row[k]), int(r.uids[k]), int(r.values[k])
    if bad_uid[k]:
        raise ValueError(f"{name}[{i}]: uid {j} out of range 0..{n - 1}")
    if dup[k]:
        raise ValueError(f"{name}[{i}]: duplicate uid {j}")
    raise ValueError(f"{name}[{i}]: value {v} for uid {j} is not a u16")
