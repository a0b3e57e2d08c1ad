"""The simulated subnet's chain state between epochs: uids, registrations, weights, bonds, permits.

Timeline of epoch ``t`` (tempo ``T``, blocks): the epoch runs at block ``b = (t+1)·T``;
registrations of that interval happen at ``t·T + 1``, weights are set at ``b - 1``. So the chain's
masks behave as on mainnet: weights set before a miner (re)registered are "outdated" for it, bonds
to a re-registered uid are reset, a validator that stops setting weights goes inactive once
``LastUpdate + activity_cutoff < b``. Weights are stored as the SDK submits them: max-upscaled
u16 with zeros omitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.params import ParamError
from scoring.sim_population import ChainSim, Population
from scoring.yuma import (
    EpochInputs,
    FastEpoch,
    YumaParams,
    activity_cutoff,
    epoch,
    epoch_fast_dense,
)

F = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
Int = npt.NDArray[np.int64]
U16 = 65535.0


def quantize_rows(w: F) -> F:
    """Rows as stored on chain: ``round(w / max(row) · 65535)``; all-zero rows stay zero."""
    mx = w.max(axis=1, keepdims=True)
    scaled = np.divide(w, mx, out=np.zeros_like(w), where=mx > 0) * U16
    return np.asarray(np.round(scaled), dtype=np.float64)


@dataclass(frozen=True)
class EpochState:
    """The chain state one epoch reads (dense), convertible to the exact engine's sparse inputs."""

    block: int
    weights: F  # u16 values as stored (unmasked)
    weights_present: Bool
    bonds: F  # stored / 65535
    bonds_present: Bool
    stake: Int
    last_update: Int
    registration: Int
    permit: Bool
    lms: int
    tempo: int
    cutoff: int

    def run_fast(self, params: YumaParams, owner_uid: int) -> FastEpoch:
        """:func:`scoring.yuma.epoch_fast_dense` on this state, outdated mask applied here."""
        present = self.weights_present & (self.last_update[:, None] > self.registration[None, :])
        t0 = self.lms + 1 if self.lms else max(0, self.block - self.tempo)
        return epoch_fast_dense(
            np.where(present, self.weights, 0.0),
            self.bonds,
            self.stake.astype(np.float64),
            ~(self.last_update + self.cutoff < self.block),
            self.permit,
            params,
            owner_uid=owner_uid,
            weights_present=present,
            bonds_present=self.bonds_present,
            reset_cols=t0 <= self.registration,
        )

    def sparse_inputs(self, owner_uid: int) -> EpochInputs:
        def rows(m: F, present: Bool) -> list[list[tuple[int, int]]]:
            return [
                [(int(j), round(m[i, j])) for j in np.flatnonzero(present[i])]
                for i in range(m.shape[0])
            ]

        return EpochInputs(
            block=self.block,
            stake=[int(s) for s in self.stake],
            weights=rows(self.weights, self.weights_present),
            bonds=rows(self.bonds * U16, self.bonds_present),
            last_update=[int(x) for x in self.last_update],
            block_at_registration=[int(x) for x in self.registration],
            validator_permit=[bool(x) for x in self.permit],
            owner_uid=owner_uid,
            last_mechanism_step_block=self.lms,
        )


def exact_deviation(state: EpochState, fast: FastEpoch, params: YumaParams, owner: int) -> float:
    """Max |fast - exact| over incentive, dividends and stored bonds for one epoch's state."""
    ex = epoch(state.sparse_inputs(owner), params, mode="exact")
    b = np.zeros_like(fast.bonds)
    for i, row in enumerate(ex.bonds):
        for j, v in row:
            b[i, j] = v / U16
    return float(
        max(
            np.abs(np.asarray(ex.incentive) - fast.incentive).max(),
            np.abs(np.asarray(ex.dividends) - fast.dividends).max(),
            np.abs(b - fast.bonds).max(),
        )
    )


class ChainState:
    """Mutable per-run state (owned by one :func:`scoring.simulate.simulate` call)."""

    def __init__(self, pop: Population, chain: ChainSim, stake_unit: int) -> None:
        p = chain.yuma
        nv = pop.n_validators
        slots = min(len(pop.miners), chain.max_uids - 1 - nv)
        if slots < 1:
            raise ParamError("max_uids", f"{chain.max_uids} uids leave no slot for miners")
        if p.tempo < 3:
            raise ParamError("tempo", "the simulator needs tempo >= 3 blocks")
        self.chain, self.tempo = chain, p.tempo
        self.n = 1 + nv + slots
        self.validator_uids = np.arange(1, nv + 1)
        self.slot_uids = np.arange(nv + 1, self.n)
        self.slot_spec = np.full(slots, -1, dtype=np.int64)
        self.placed: set[int] = set()
        n = self.n
        self.stake = np.zeros(n, dtype=np.int64)
        self.stake[self.validator_uids] = [round(v.stake * stake_unit) for v in pop.validators]
        self.reg = np.zeros(n, dtype=np.int64)
        self.lu = np.zeros(n, dtype=np.int64)
        self.permit = np.zeros(n, dtype=bool)
        order = np.argsort(-self.stake[self.validator_uids], kind="stable")[: p.max_validators]
        self.permit[self.validator_uids[order]] = True
        self.w = np.zeros((n, n))
        self.bonds = np.zeros((n, n))
        self.bonds_present = np.zeros((n, n), dtype=bool)
        self.emission = np.zeros(n)
        self.lms = 0
        self.cutoff = activity_cutoff(p)
        self.chain_hist: list[F] = []  # normalised on-chain rows of validators, per epoch

    @classmethod
    def create(cls, pop: Population, chain: ChainSim, stake_unit: int) -> ChainState:
        return cls(pop, chain, stake_unit)

    def block(self, t: int) -> int:
        return (t + 1) * self.tempo

    def register_arrivals(self, pop: Population, t: int) -> None:
        """Place miners due by epoch ``t``; when full, prune the lowest-emission non-immune one.
        An arrival finding every candidate immune waits for a later epoch."""
        reg_block = t * self.tempo + 1
        for k, spec in enumerate(pop.miners):
            if k in self.placed or spec.arrive > t:
                continue
            empty = np.flatnonzero(self.slot_spec < 0)
            if empty.size:
                slot = int(empty[0])
            else:
                uids = self.slot_uids
                ok = reg_block - self.reg[uids] >= self.chain.immunity_period
                if not ok.any():
                    continue
                cand = np.flatnonzero(ok)
                key = np.lexsort((uids[cand], self.reg[uids[cand]], self.emission[uids[cand]]))
                slot = int(cand[key[0]])
            uid = int(self.slot_uids[slot])
            self.slot_spec[slot] = k
            self.placed.add(k)
            self.reg[uid] = self.lu[uid] = reg_block
            self.w[uid, :] = 0.0
            self.w[:, uid] = 0.0
            self.bonds[uid, :] = 0.0
            self.bonds_present[uid, :] = False

    def registered_specs(self, n_specs: int) -> Bool:
        out = np.zeros(n_specs, dtype=bool)
        out[self.slot_spec[self.slot_spec >= 0]] = True
        return out

    def miner_uids_registered(self) -> Int:
        return self.slot_uids[self.slot_spec >= 0]

    def per_spec(self, vec: F, n_specs: int) -> F:
        out = np.zeros(n_specs)
        held = self.slot_spec >= 0
        np.add.at(out, self.slot_spec[held], vec[self.slot_uids[held]])
        return out

    def spec_to_uid(self, m: F) -> F:
        """Columns per miner spec ``[V, M]`` -> columns per uid ``[V, N]`` (0 elsewhere)."""
        rows = np.zeros((m.shape[0], self.n), dtype=m.dtype)
        held = self.slot_spec >= 0
        rows[:, self.slot_uids[held]] = m[:, self.slot_spec[held]]
        return rows

    def copy_others(self, i: int, stake: F, t_src: int) -> F:
        """Stake-weighted mean of the other validators' on-chain rows at epoch ``t_src``."""
        if t_src < 0 or t_src >= len(self.chain_hist):
            return np.full(self.n, np.nan)
        rows = self.chain_hist[t_src]
        wts = stake * (rows.sum(axis=1) > 0)
        wts[i] = 0.0
        if wts.sum() <= 0:
            return np.full(self.n, np.nan)
        return np.asarray(wts @ rows / wts.sum(), dtype=np.float64)

    def set_weights(self, rows: F, t: int) -> None:
        """Store each non-NaN, non-empty row (u16, max-upscaled); NaN rows keep old weights."""
        for i, row in enumerate(rows):
            if np.isnan(row).any() or row.sum() <= 0:
                continue
            uid = int(self.validator_uids[i])
            self.w[uid] = quantize_rows(row[None, :])[0]
            self.lu[uid] = self.block(t) - 1
        vw = self.w[self.validator_uids]
        s = vw.sum(axis=1, keepdims=True)
        self.chain_hist.append(np.divide(vw, s, out=np.zeros_like(vw), where=s > 0))

    def chain_weight_mean(self, active_stake: F) -> F:
        a = active_stake[self.validator_uids]
        return np.asarray(a @ self.chain_hist[-1], dtype=np.float64)

    def epoch_inputs(self, t: int) -> EpochState:
        return EpochState(
            block=self.block(t),
            weights=self.w.copy(),
            weights_present=self.w > 0,
            bonds=self.bonds.copy(),
            bonds_present=self.bonds_present.copy(),
            stake=self.stake.copy(),
            last_update=self.lu.copy(),
            registration=self.reg.copy(),
            permit=self.permit.copy(),
            lms=self.lms,
            tempo=self.tempo,
            cutoff=self.cutoff,
        )

    def finish_epoch(self, fast: FastEpoch, t: int) -> None:
        self.bonds, self.bonds_present = fast.bonds, fast.bonds_present
        self.permit = fast.validator_permit
        self.emission = fast.server_share + fast.validator_share
        self.lms = self.block(t)
