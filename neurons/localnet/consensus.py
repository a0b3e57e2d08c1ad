"""What the localnet shows of its validators: vtrust, dividends, agreement with consensus.

Read-only, like :mod:`neurons.localnet.watch`: the devnet through its own handle (its status
holds each uid's stake, vtrust, dividends and consensus from the last epoch, and the weight rows
in force), each validator's state database through its store's reader (steps, weight sets).

Dividends are measured as stake gained, as emission is for miners: a validator never unstakes
on the localnet, so everything it gains is what the epochs paid it. Its **dividend share** is
its gain over all the validators' gain, its **stake share** its seeded stake over theirs, and
its **yield** the ratio (1: paid exactly its stake's share). **Cosine** compares the weights it
has in force with the consensus vector (the clipping level of every column), so 1 means its
weights point where the stake-weighted median of all validators points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurons.localnet.validators import HONEST, ValidatorPlan
from neurons.validator.store import StoreReader
from subnet.errors import StateError

RAO_PER_ALPHA = 1e9
# The bar for "the honest validators agree" (and the e2e's).
AGREE_VTRUST = 0.9
AGREE_COSINE = 0.95


@dataclass(frozen=True)
class ValidatorRow:
    """One validator at the close of one epoch window."""

    uid: int
    name: str
    role: str
    stake: float  # alpha now
    vtrust: float
    dividends: float  # the chain's D at the last epoch (0..1 over every uid)
    earned: float  # alpha gained since the run's start
    earned_epoch: float  # alpha gained in this window
    cosine: float | None  # weights in force vs the consensus vector
    steps: int  # steps committed this run
    weight_sets: int  # successful weight sets this run
    weights: dict[int, float] = field(default_factory=dict)  # in force, as fractions

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["weights"] = {str(k): round(v, 6) for k, v in self.weights.items()}
        return out


def cosine(a: Mapping[int, float], b: Mapping[int, float]) -> float | None:
    """Cosine of two sparse non-negative vectors (None when either is all zero)."""
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return None if na == 0 or nb == 0 else dot / (na * nb)


@dataclass(frozen=True)
class ChainValidators:
    """What the devnet says about every uid, for the validators' rows."""

    stake: dict[int, int]  # rao
    vtrust: dict[int, float]
    dividends: dict[int, float]
    consensus: dict[int, float]
    rows: dict[int, dict[int, float]]  # weights in force, as fractions of each row


def read_chain_validators(devnet_file: Path, netuid: int) -> ChainValidators:
    from subnet.chain.devnet import Devnet

    net = Devnet.open(devnet_file)
    try:
        status = net.status()
        raw = net.weights(netuid)
    finally:
        net.close()
    sub = next((s for s in status.subnets if s.netuid == netuid), None)
    if sub is None:
        raise LookupError(f"netuid {netuid} is not on the devnet {devnet_file}")
    rows = {}
    for uid, row in raw.items():
        total = sum(v for _, v in row)
        if total > 0:
            rows[uid] = {int(u): v / total for u, v in row}
    return ChainValidators(
        {n.uid: n.stake for n in sub.neurons},
        {n.uid: n.vtrust for n in sub.neurons},
        {n.uid: n.dividends for n in sub.neurons},
        {n.uid: n.consensus for n in sub.neurons if n.consensus > 0},
        rows,
    )


def _counts(db: Path) -> tuple[int, int]:
    """(steps committed, successful weight sets) in a validator's database."""
    try:
        with StoreReader(db, missing_ok=True) as reader:
            return reader.step_count(), len(reader.weight_sets(successful_only=True))
    except StateError:
        return 0, 0


@dataclass
class ValidatorWatcher:
    """Turns reads at each epoch's close into one row per validator."""

    devnet_file: Path
    netuid: int
    plans: Sequence[ValidatorPlan]
    before: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> counts at start
    start_stake: dict[int, int] = field(default_factory=dict)
    prev_stake: dict[int, int] = field(default_factory=dict)

    def started(self) -> None:
        """The validators are about to start: steps and weight sets are counted from here."""
        self.before = {p.name: _counts(p.db) for p in self.plans}

    def begin(self) -> None:
        """Emission counting starts: dividends are stake gained from here."""
        chain = read_chain_validators(self.devnet_file, self.netuid)
        self.start_stake = dict(chain.stake)
        self.prev_stake = dict(chain.stake)

    def poll(self) -> tuple[ValidatorRow, ...]:
        chain = read_chain_validators(self.devnet_file, self.netuid)
        rows = []
        for p in self.plans:
            steps, sets = _counts(p.db)
            steps0, sets0 = self.before.get(p.name, (0, 0))
            stake = chain.stake.get(p.uid, 0)
            weights = chain.rows.get(p.uid, {})
            rows.append(
                ValidatorRow(
                    uid=p.uid,
                    name=p.name,
                    role=p.role,
                    stake=stake / RAO_PER_ALPHA,
                    vtrust=chain.vtrust.get(p.uid, 0.0),
                    dividends=chain.dividends.get(p.uid, 0.0),
                    earned=(stake - self.start_stake.get(p.uid, stake)) / RAO_PER_ALPHA,
                    earned_epoch=(stake - self.prev_stake.get(p.uid, stake)) / RAO_PER_ALPHA,
                    cosine=cosine(weights, chain.consensus),
                    steps=steps - steps0,
                    weight_sets=sets - sets0,
                    weights=weights,
                )
            )
        self.prev_stake = dict(chain.stake)
        return tuple(rows)


def summarize_validators(
    plans: Sequence[ValidatorPlan],
    start_stake: Mapping[int, int],
    epochs: Sequence[Sequence[ValidatorRow]],
) -> dict[str, Any]:
    """The JSON ``validators`` section: one record per validator and whether the honest agree.

    Stake shares are of the validators' stake when emission counting began; dividend shares of
    what the validators gained since; vtrust and cosine are the last epoch's.
    """
    if not epochs:
        return {"validators": [], "agreement": {}}
    last = {r.uid: r for r in epochs[-1]}
    stake = {p.uid: start_stake.get(p.uid, 0) / RAO_PER_ALPHA for p in plans}
    stake_total = sum(stake.values()) or 1.0
    earned_total = sum(max(0.0, r.earned) for r in last.values())
    out = []
    for p in plans:
        r = last[p.uid]
        stake_share = stake[p.uid] / stake_total
        div_share = max(0.0, r.earned) / earned_total if earned_total > 0 else 0.0
        vt = [e.vtrust for rows in epochs for e in rows if e.uid == p.uid]
        out.append(
            {
                "uid": p.uid,
                "name": p.name,
                "role": p.role,
                "stake": round(stake[p.uid], 6),
                "stake_share": round(stake_share, 6),
                "vtrust": round(r.vtrust, 6),
                "mean_vtrust": round(sum(vt) / len(vt), 6),
                "dividends_total": round(r.earned, 6),
                "dividend_share": round(div_share, 6),
                "dividend_yield": round(div_share / stake_share, 6) if stake_share > 0 else None,
                "cosine_to_consensus": None if r.cosine is None else round(r.cosine, 6),
                "steps": r.steps,
                "weights_set": r.weight_sets,
            }
        )
    return {"validators": out, "agreement": agreement(plans, epochs[-1])}


def agreement(plans: Sequence[ValidatorPlan], rows: Sequence[ValidatorRow]) -> dict[str, Any]:
    """Whether the honest validators agree: each one's vtrust >= 0.9 and cosine to consensus
    >= 0.95 at the last epoch; with the least pairwise cosine between their weights."""
    honest = {p.uid for p in plans if p.role == HONEST}
    mine = [r for r in rows if r.uid in honest]
    if not mine:
        return {}
    cosines = [r.cosine for r in mine]
    pairs = [cosine(a.weights, b.weights) for i, a in enumerate(mine) for b in mine[i + 1 :]]
    pair_values = [c for c in pairs if c is not None]
    least_cos = None if None in cosines else min(c for c in cosines if c is not None)
    least_vt = min(r.vtrust for r in mine)
    return {
        "honest_agree": least_cos is not None
        and least_vt >= AGREE_VTRUST
        and least_cos >= AGREE_COSINE,
        "min_vtrust": round(least_vt, 6),
        "min_cosine_to_consensus": None if least_cos is None else round(least_cos, 6),
        "min_pairwise_cosine": round(min(pair_values), 6) if pair_values else None,
        "thresholds": {"vtrust": AGREE_VTRUST, "cosine_to_consensus": AGREE_COSINE},
    }


def commit_reveal_note(devnet_file: Path, netuid: int) -> dict[str, Any]:
    """Whether the subnet runs commit-reveal, and what that means on the devnet."""
    from subnet.chain.devnet import Devnet

    net = Devnet.open(devnet_file)
    try:
        enabled = bool(net.hyperparameters(netuid)["commit_reveal_weights_enabled"])
        commits = net.timelocked_commits(netuid)
    finally:
        net.close()
    note = (
        "commit-reveal is on: validators commit timelocked weights, which the devnet records "
        f"({commits} held) but cannot reveal (a reveal needs the drand round's signature), so "
        "no committed weights reach its epochs"
        if enabled
        else "commit-reveal is off (the devnet's default): weights are set in plaintext"
    )
    return {"enabled": enabled, "commits_held": commits, "note": note}


# --- rendering ------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def validators_table(rows: Sequence[ValidatorRow], title: str = "validators") -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in ("uid", "role", "stake (α)", "vtrust", "dividends", "earned", "cosine", "steps"):
        table.add_column(name, justify="left" if name == "role" else "right", no_wrap=True)
    table.add_column("weight sets", justify="right")
    for r in rows:
        table.add_row(
            str(r.uid),
            r.role,
            f"{r.stake:.1f}",
            _f(r.vtrust),
            _f(r.dividends),
            f"{r.earned_epoch:.2f}",
            _f(r.cosine),
            str(r.steps),
            str(r.weight_sets),
        )
    return table


def validators_summary_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="validators", title_justify="left")
    for name in (
        "uid",
        "role",
        "stake share",
        "vtrust",
        "dividend share",
        "yield",
        "cosine to consensus",
        "steps",
        "weights set",
    ):
        table.add_column(name, justify="left" if name == "role" else "right", no_wrap=True)
    for v in summary["validators"]:
        table.add_row(
            str(v["uid"]),
            v["role"],
            f"{v['stake_share']:.1%}",
            _f(v["vtrust"]),
            f"{v['dividend_share']:.1%}",
            _f(v["dividend_yield"], 2),
            _f(v["cosine_to_consensus"]),
            str(v["steps"]),
            str(v["weights_set"]),
        )
    return table
