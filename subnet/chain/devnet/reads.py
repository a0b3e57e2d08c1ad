"""Storage items and storage maps in the decoded shapes ``bittensor_core`` produces.

Shapes: bittensor-sdk.md §2.2 (AccountId -> ss58 text, uN -> int, unit enum -> str, absent
OptionQuery -> None, ValueQuery -> its default). Only what is listed here exists; anything
else is refused by the substrate layer, naming the item, so an SDK upgrade fails loudly.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from subnet.chain.devnet import hparams, pallet
from subnet.chain.devnet.clock import timestamp_ms
from subnet.chain.devnet.store import get_meta

ZERO_ACCOUNT = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"
MECH_STRIDE = 4096  # LastUpdate/Weights/Bonds are keyed by mechid * 4096 + netuid
NEXT_KEY_BYTES = 1184  # ML-KEM-768 encapsulation key


@dataclass(frozen=True)
class Ctx:
    db: sqlite3.Connection
    head: int


def _netuid_of(index: Any) -> int:
    number = int(index)
    if number >= MECH_STRIDE:
        raise pallet.DispatchError("MechanismDoesNotExist", f"mechanism index {number}")
    return number


def _rows(ctx: Ctx, netuid: Any) -> list[sqlite3.Row]:
    return pallet.neurons(ctx.db, int(netuid)) if _exists(ctx, netuid) else []


def _exists(ctx: Ctx, netuid: Any) -> bool:
    return pallet.subnet_or_none(ctx.db, int(netuid)) is not None


def _hp(name: str) -> Callable[[Ctx, list[Any]], Any]:
    def read(ctx: Ctx, p: list[Any]) -> Any:
        if not _exists(ctx, p[0]):
            return hparams.DEFAULTS[name]
        return pallet.hp(ctx.db, int(p[0]))[name]

    return read


def _column(column: str, kind: type = int) -> Callable[[Ctx, list[Any]], Any]:
    def read(ctx: Ctx, p: list[Any]) -> Any:
        netuid = _netuid_of(p[0])
        return [kind(r[column]) for r in _rows(ctx, netuid)]

    return read


def _subnet_field(column: str, default: Any = 0) -> Callable[[Ctx, list[Any]], Any]:
    def read(ctx: Ctx, p: list[Any]) -> Any:
        row = pallet.subnet_or_none(ctx.db, int(p[0]))
        return default if row is None else row[column]

    return read


def account_info(ctx: Ctx, p: list[Any]) -> dict[str, Any]:
    row = pallet.account(ctx.db, str(p[0]))
    nonce, free = (0, 0) if row is None else (int(row["nonce"]), int(row["free"]))
    return {
        "nonce": nonce,
        "consumers": 0,
        "providers": 1,
        "sufficients": 0,
        "data": {"free": free, "reserved": 0, "frozen": 0, "flags": 0},
    }


def next_key(ctx: Ctx, p: list[Any]) -> bytes | None:
    if not get_meta(ctx.db, "mev_shield"):
        return None
    seed = bytes.fromhex(str(get_meta(ctx.db, "chain_id")))
    return (seed * (NEXT_KEY_BYTES // len(seed) + 1))[:NEXT_KEY_BYTES]


def uid_of(ctx: Ctx, p: list[Any]) -> int | None:
    row = pallet.neuron(ctx.db, int(p[0]), str(p[1]))
    return None if row is None else int(row["uid"])


def key_of(ctx: Ctx, p: list[Any]) -> str:
    row = ctx.db.execute(
        "SELECT hotkey FROM neurons WHERE netuid=? AND uid=?", (int(p[0]), int(p[1]))
    ).fetchone()
    return ZERO_ACCOUNT if row is None else str(row[0])


def axon_of(ctx: Ctx, p: list[Any]) -> dict[str, Any] | None:
    row = pallet.neuron(ctx.db, int(p[0]), str(p[1]))
    return None if row is None or not row["axon"] else dict(json.loads(row["axon"]))


def commitment_record(row: sqlite3.Row) -> dict[str, Any]:
    return {"deposit": 0, "block": int(row["block"]), "info": {"fields": json.loads(row["fields"])}}


def commitment_of(ctx: Ctx, p: list[Any]) -> dict[str, Any] | None:
    row = ctx.db.execute(
        "SELECT * FROM commitments WHERE netuid=? AND hotkey=?", (int(p[0]), str(p[1]))
    ).fetchone()
    return None if row is None else commitment_record(row)


def _weights_row(column: str) -> Callable[[Ctx, list[Any]], Any]:
    def read(ctx: Ctx, p: list[Any]) -> Any:
        row = ctx.db.execute(
            f"SELECT {column} FROM neurons WHERE netuid=? AND uid=?",
            (_netuid_of(p[0]), int(p[1])),
        ).fetchone()
        return [] if row is None else [tuple(e) for e in json.loads(row[0])]

    return read


def _blocks_since(ctx: Ctx, p: list[Any]) -> int:
    row = pallet.subnet_or_none(ctx.db, int(p[0]))
    return 0 if row is None else max(0, ctx.head - int(row["last_epoch_block"]))


STORAGE: dict[tuple[str, str], Callable[[Ctx, list[Any]], Any]] = {
    ("System", "Account"): account_info,
    ("Timestamp", "Now"): lambda ctx, p: timestamp_ms(ctx.db, ctx.head),
    ("MevShield", "NextKey"): next_key,
    ("SubtensorModule", "NetworksAdded"): lambda ctx, p: _exists(ctx, p[0]),
    ("SubtensorModule", "SubnetworkN"): lambda ctx, p: len(_rows(ctx, p[0])),
    ("SubtensorModule", "Uids"): uid_of,
    ("SubtensorModule", "Keys"): key_of,
    ("SubtensorModule", "Owner"): lambda ctx, p: (
        pallet.hotkey_owner(ctx.db, str(p[0])) or ZERO_ACCOUNT
    ),
    ("SubtensorModule", "Axons"): axon_of,
    ("SubtensorModule", "AlphaValues"): lambda ctx, p: (
        _hp("alpha_low")(ctx, p),
        _hp("alpha_high")(ctx, p),
    ),
    ("SubtensorModule", "ActivityCutoff"): lambda ctx, p: hparams.activity_cutoff(
        pallet.hp(ctx.db, int(p[0])) if _exists(ctx, p[0]) else hparams.DEFAULTS
    ),
    ("SubtensorModule", "LastEpochBlock"): _subnet_field("last_epoch_block"),
    ("SubtensorModule", "LastMechansimStepBlock"): _subnet_field("last_epoch_block"),
    ("SubtensorModule", "SubnetEpochIndex"): _subnet_field("epoch_index"),
    ("SubtensorModule", "NetworkRegisteredAt"): _subnet_field("registered_at"),
    ("SubtensorModule", "SubnetOwner"): _subnet_field("owner_coldkey", ZERO_ACCOUNT),
    ("SubtensorModule", "SubnetOwnerHotkey"): _subnet_field("owner_hotkey", ZERO_ACCOUNT),
    ("SubtensorModule", "PendingEpochAt"): lambda ctx, p: 0,
    ("SubtensorModule", "BlocksSinceLastStep"): _blocks_since,
    ("SubtensorModule", "CollateralLockShare"): lambda ctx, p: 0,
    ("SubtensorModule", "StakeThreshold"): lambda ctx, p: int(get_meta(ctx.db, "stake_threshold")),
    ("SubtensorModule", "LastUpdate"): _column("last_update"),
    ("SubtensorModule", "ValidatorPermit"): _column("permit", bool),
    ("SubtensorModule", "Active"): _column("active", bool),
    ("SubtensorModule", "Incentive"): _column("incentive"),
    ("SubtensorModule", "Dividends"): _column("dividends"),
    ("SubtensorModule", "Consensus"): _column("consensus"),
    ("SubtensorModule", "ValidatorTrust"): _column("vtrust"),
    ("SubtensorModule", "Emission"): _column("emission"),
    ("SubtensorModule", "Weights"): _weights_row("weights"),
    ("SubtensorModule", "Bonds"): _weights_row("bonds"),
    ("SubtensorModule", "TotalHotkeyAlpha"): lambda ctx, p: int(
        (pallet.neuron(ctx.db, int(p[1]), str(p[0])) or {"stake": 0})["stake"]
    ),
    ("Commitments", "CommitmentOf"): commitment_of,
    ("Commitments", "RevealedCommitments"): lambda ctx, p: None,
}
for _item, _name in hparams.STORAGE.items():
    STORAGE[("SubtensorModule", _item)] = _hp(_name)


def _weights_map(column: str) -> Callable[[Ctx, list[Any]], list[Any]]:
    def read(ctx: Ctx, p: list[Any]) -> list[Any]:
        return [
            (int(r["uid"]), [tuple(e) for e in json.loads(r[column])])
            for r in _rows(ctx, _netuid_of(p[0]))
        ]

    return read


def _commits_map(ctx: Ctx, p: list[Any]) -> list[Any]:
    by_epoch: dict[int, list[Any]] = {}
    for r in ctx.db.execute(
        "SELECT * FROM tl_commits WHERE netuid=? ORDER BY rowid", (_netuid_of(p[0]),)
    ):
        by_epoch.setdefault(int(r["epoch"]), []).append(
            (r["hotkey"], int(r["commit_block"]), r["ciphertext"], int(r["reveal_round"]))
        )
    return sorted(by_epoch.items())


MAPS: dict[tuple[str, str], Callable[[Ctx, list[Any]], list[Any]]] = {
    ("SubtensorModule", "NetworksAdded"): lambda ctx, p: [
        (int(r[0]), True) for r in ctx.db.execute("SELECT netuid FROM subnets")
    ],
    ("SubtensorModule", "TokenSymbol"): lambda ctx, p: [
        (int(r[0]), "α") for r in ctx.db.execute("SELECT netuid FROM subnets")
    ],
    ("SubtensorModule", "Uids"): lambda ctx, p: [
        (r["hotkey"], int(r["uid"])) for r in _rows(ctx, p[0])
    ],
    ("SubtensorModule", "Keys"): lambda ctx, p: [
        (int(r["uid"]), r["hotkey"]) for r in _rows(ctx, p[0])
    ],
    ("SubtensorModule", "Axons"): lambda ctx, p: [
        (r["hotkey"], json.loads(r["axon"])) for r in _rows(ctx, p[0]) if r["axon"]
    ],
    ("SubtensorModule", "IsNetworkMember"): lambda ctx, p: [
        (int(r[0]), True)
        for r in ctx.db.execute("SELECT netuid FROM neurons WHERE hotkey=?", (str(p[0]),))
    ],
    ("SubtensorModule", "Weights"): _weights_map("weights"),
    ("SubtensorModule", "Bonds"): _weights_map("bonds"),
    ("SubtensorModule", "TimelockedWeightCommits"): _commits_map,
    ("Commitments", "CommitmentOf"): lambda ctx, p: [
        (r["hotkey"], commitment_record(r))
        for r in ctx.db.execute("SELECT * FROM commitments WHERE netuid=?", (int(p[0]),))
    ],
    ("Commitments", "RevealedCommitments"): lambda ctx, p: [],
}
