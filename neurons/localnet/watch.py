"""What the localnet shows: per-miner rows read from the devnet and the validator's state DB.

Read-only on both files (the validator's database is opened ``mode=ro``; the devnet through its
own handle, which only runs epochs that fell due, as every reader does). Emission is measured
as each miner's stake gained since the run started: a miner never stakes, so its stake is the
sum of everything it was paid, and a snapshot missed between two epochs loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAO_PER_ALPHA = 1e9


@dataclass(frozen=True)
class Member:
    """One miner of the localnet: its uid, hotkey and the role it plays."""

    uid: int
    hotkey: str
    role: str


@dataclass(frozen=True)
class MinerRow:
    """One miner in one epoch window. Score components are means over the window's answers."""

    uid: int
    role: str
    answers: int
    score: float | None
    s_kl: float | None
    s_ref: float | None
    s_speed: float | None
    causes: dict[str, int]  # cause code -> answers of the window (failures only)
    ema: float | None
    weight: float | None
    incentive: float
    emission: float  # alpha paid in this window
    emission_total: float  # alpha paid since the run started
    alive: bool = True
    suspended: int = 0  # validator rounds left without reward after a proven lie

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Snapshot:
    """The state at one chain epoch (``epoch`` counts epochs since the run started, from 1)."""

    epoch: int
    chain_epoch: int
    block: int
    elapsed_s: float
    steps: int  # validator steps committed so far
    miners: tuple[MinerRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "chain_epoch": self.chain_epoch,
            "block": self.block,
            "elapsed_s": round(self.elapsed_s, 2),
            "steps": self.steps,
            "miners": [m.to_json() for m in self.miners],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            int(data["epoch"]),
            int(data["chain_epoch"]),
            int(data["block"]),
            float(data["elapsed_s"]),
            int(data["steps"]),
            tuple(MinerRow(**m) for m in data["miners"]),
        )


@dataclass(frozen=True)
class ChainView:
    block: int
    epoch_index: int
    stake: dict[int, int]  # uid -> alpha rao
    incentive: dict[int, float]


@dataclass(frozen=True)
class ValidatorView:
    last_step: int
    answers: dict[int, list[tuple[float, float, float, float, str]]]  # score, kl, ref, speed, cause
    ema: dict[int, float]
    weights: dict[int, float]
    weight_error: str = ""
    suspended: dict[int, int] = field(default_factory=dict)  # uid -> rounds left


def read_chain(devnet_file: Path, netuid: int) -> ChainView:
    from subnet.chain.devnet import Devnet

    net = Devnet.open(devnet_file)
    try:
        status = net.status()
    finally:
        net.close()
    for sub in status.subnets:
        if sub.netuid == netuid:
            return ChainView(
                status.head,
                sub.epoch_index,
                {n.uid: n.stake for n in sub.neurons},
                {n.uid: n.incentive for n in sub.neurons},
            )
    raise LookupError(f"netuid {netuid} is not on the devnet {devnet_file}")


def read_validator(db_path: Path, after_step: int) -> ValidatorView:
    """Answers of steps after ``after_step``, the EMA and the last weights set (empty views
    while the validator has not created its database yet)."""
    if not db_path.exists():
        return ValidatorView(after_step, {}, {}, {})
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return _read_validator(db, after_step)
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return ValidatorView(after_step, {}, {}, {})
        raise
    finally:
        db.close()


def _read_validator(db: sqlite3.Connection, after_step: int) -> ValidatorView:
    row = db.execute("SELECT MAX(step) FROM steps").fetchone()
    last = int(row[0]) if row and row[0] is not None else after_step
    answers: dict[int, list[tuple[float, float, float, float, str]]] = {}
    for uid, score, s_kl, s_ref, s_speed, cause in db.execute(
        "SELECT uid, score, s_kl, s_ref, s_speed, cause FROM answers WHERE step > ? AND step <= ?",
        (after_step, last),
    ):
        answers.setdefault(int(uid), []).append(
            (float(score), float(s_kl), float(s_ref), float(s_speed), str(cause))
        )
    rows = db.execute("SELECT uid, ema, suspended FROM ema").fetchall()
    ema = {int(u): float(e) for u, e, _ in rows}
    suspended = {int(u): int(h) for u, _, h in rows if h}
    weights: dict[int, float] = {}
    error = ""
    got = db.execute(
        "SELECT weights_json, success, error FROM weight_sets ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if got is not None:
        if int(got[1]):
            weights = {int(k): float(v) for k, v in json.loads(got[0]).items()}
        else:
            error = str(got[2])
    if not weights:
        ok = db.execute(
            "SELECT weights_json FROM weight_sets WHERE success = 1 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if ok is not None:
            weights = {int(k): float(v) for k, v in json.loads(ok[0]).items()}
    return ValidatorView(last, answers, ema, weights, error, suspended)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class Watcher:
    """Turns successive reads into one :class:`Snapshot` per chain epoch."""

    devnet_file: Path
    netuid: int
    validator_db: Path
    members: tuple[Member, ...]
    start_stake: dict[int, int] = field(default_factory=dict)
    start_epoch: int = -1
    last_epoch: int = -1
    last_step: int = 0
    prev_stake: dict[int, int] = field(default_factory=dict)

    def begin(self) -> ChainView:
        """Take the baseline: emission and epochs are counted from here."""
        chain = read_chain(self.devnet_file, self.netuid)
        self.start_stake = dict(chain.stake)
        self.prev_stake = dict(chain.stake)
        self.start_epoch = self.last_epoch = chain.epoch_index
        start = read_validator(self.validator_db, 0)
        self.last_step = start.last_step
        return chain

    def poll(self, elapsed_s: float, alive: Mapping[int, bool]) -> tuple[Snapshot, bool]:
        """The current window: ``(snapshot, True)`` when a chain epoch closed it since the last
        call (the next window starts empty), else ``(partial snapshot, False)`` for a live view.
        """
        chain = read_chain(self.devnet_file, self.netuid)
        closed = chain.epoch_index != self.last_epoch
        view = read_validator(self.validator_db, self.last_step)
        rows = tuple(self._row(m, chain, view, alive.get(m.uid, True)) for m in self.members)
        done = self.last_epoch - self.start_epoch
        snap = Snapshot(
            chain.epoch_index - self.start_epoch if closed else done + 1,
            chain.epoch_index,
            chain.block,
            elapsed_s,
            view.last_step,
            rows,
        )
        if closed:
            self.last_epoch, self.last_step, self.prev_stake = (
                chain.epoch_index,
                view.last_step,
                dict(chain.stake),
            )
        return snap, closed

    def _row(self, m: Member, chain: ChainView, view: ValidatorView, alive: bool) -> MinerRow:
        got = view.answers.get(m.uid, [])
        causes = Counter(c for *_, c in got if c != "ok")
        stake = chain.stake.get(m.uid, 0)
        return MinerRow(
            uid=m.uid,
            role=m.role,
            answers=len(got),
            score=_mean([a[0] for a in got]),
            s_kl=_mean([a[1] for a in got]),
            s_ref=_mean([a[2] for a in got]),
            s_speed=_mean([a[3] for a in got]),
            causes=dict(causes.most_common()),
            ema=view.ema.get(m.uid),
            weight=view.weights.get(m.uid),
            incentive=chain.incentive.get(m.uid, 0.0),
            emission=(stake - self.prev_stake.get(m.uid, 0)) / RAO_PER_ALPHA,
            emission_total=(stake - self.start_stake.get(m.uid, 0)) / RAO_PER_ALPHA,
            alive=alive,
            suspended=view.suspended.get(m.uid, 0),
        )
