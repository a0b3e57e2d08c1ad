"""What the localnet shows: per-miner rows read from the devnet and the validator's state DB.

Read-only on both files (the validator's database through its store's reader, opened
``mode=ro``; the devnet through its own handle, which only runs epochs that fell due, as every
reader does). Emission is measured as each miner's stake gained since the run started: a miner
never stakes, so its stake is the sum of everything it was paid, and a snapshot missed between
two epochs loses nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurons.validator.participant import Miner
from neurons.validator.store import StoreReader

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
    spot_checks: dict[str, int] = field(default_factory=dict)  # outcome -> drawn checks
    model_source: str = ""  # where its committed model is fetched from: "miner" | "hf"

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
    checks: dict[int, dict[str, int]] = field(default_factory=dict)  # uid -> outcome -> n
    sources: dict[str, str] = field(default_factory=dict)  # hotkey -> committed model's source


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
    """Miners' answers of steps after ``after_step``, the EMA and the last weights set (empty
    views while the validator has not created its database yet)."""
    with StoreReader(db_path, missing_ok=True) as db:
        last_row = db.last_step()
        last = after_step if last_row is None else last_row.step
        answers: dict[int, list[tuple[float, float, float, float, str]]] = {}
        for a in db.answers(after_step=after_step, through_step=last):
            if isinstance(a.who, Miner):
                answers.setdefault(a.who.uid, []).append(
                    (a.score, a.s_kl, a.s_ref, a.s_speed, a.cause.value)
                )
        rows = db.ema()
        latest = db.last_weight_set()  # a failure shows its error ...
        good = db.last_weight_set(successful_only=True)  # ... over the weights still in force
        checks = db.spot_check_counts(after_step=after_step, through_step=last)
        sources = {w.hotkey: w.source for w in db.model_status()}  # latest commitment last
    return ValidatorView(
        last,
        answers,
        {e.uid: e.ema for e in rows},
        dict(good.weights) if good is not None else {},
        latest.error if latest is not None and not latest.success else "",
        {e.uid: e.suspended for e in rows if e.suspended},
        checks,
        sources,
    )


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
            spot_checks=dict(view.checks.get(m.uid, {})),
            model_source=view.sources.get(m.hotkey, ""),
        )
