"""The SubtensorModule model: subnets, neurons, registration, axons, weights, commitments.

Every function works inside the caller's write transaction and raises ``DispatchError`` with
the pallet's error name when the real pallet would refuse; the caller rolls back. Checks
follow the pallet's order (yuma.md §1.7, §1.8; bittensor-sdk.md §1.5) so tests see the same
error a real chain would give.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from typing import Any

from subnet.chain.devnet.store import get_meta

U16_MAX = 65535
MIN_NON_IMMUNE_UIDS = 10
MAX_UNREVEALED_COMMITS = 10
MAX_COMMITMENT_FIELDS = 3
MAX_RAW_BYTES = 128


class DispatchError(Exception):
    """The pallet refused a call; ``name`` is the pallet error (e.g. ``BadOrigin``)."""

    def __init__(self, name: str, docs: str = "") -> None:
        super().__init__(f"{name}: {docs}" if docs else name)
        self.name = name
        self.docs = docs or name


# --- accounts ----------------------------------------------------------------------------


def account(db: sqlite3.Connection, ss58: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = db.execute("SELECT * FROM accounts WHERE ss58=?", (ss58,)).fetchone()
    return row


def ensure_account(db: sqlite3.Connection, ss58: str) -> None:
    db.execute("INSERT OR IGNORE INTO accounts (ss58) VALUES (?)", (ss58,))


def hotkey_owner(db: sqlite3.Connection, hotkey: str) -> str | None:
    row = db.execute("SELECT coldkey FROM neurons WHERE hotkey=? LIMIT 1", (hotkey,)).fetchone()
    return None if row is None else str(row[0])


# --- subnets -----------------------------------------------------------------------------


def subnet(db: sqlite3.Connection, netuid: int) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM subnets WHERE netuid=?", (int(netuid),)
    ).fetchone()
    if row is None:
        raise DispatchError("SubnetNotExists", f"subnet {netuid} does not exist")
    return row


def hp(db: sqlite3.Connection, netuid: int) -> dict[str, Any]:
    return dict(json.loads(subnet(db, netuid)["hp"]))


def save_hp(db: sqlite3.Connection, netuid: int, values: dict[str, Any]) -> None:
    db.execute("UPDATE subnets SET hp=? WHERE netuid=?", (json.dumps(values), int(netuid)))


def add_subnet(
    db: sqlite3.Connection,
    owner_coldkey: str,
    owner_hotkey: str,
    block: int,
    values: dict[str, Any],
) -> int:
    """Create a subnet; like ``register_network`` the owner hotkey becomes uid 0."""
    row = db.execute("SELECT COALESCE(MAX(netuid), 0) + 1 FROM subnets").fetchone()
    netuid = int(row[0])
    db.execute(
        "INSERT INTO subnets (netuid, owner_coldkey, owner_hotkey, registered_at, hp,"
        " last_epoch_block, accrued_to) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (netuid, owner_coldkey, owner_hotkey, block, json.dumps(values), block, block),
    )
    ensure_account(db, owner_coldkey)
    register(db, netuid, owner_hotkey, owner_coldkey, block, burn=False)
    return netuid


# --- neurons -----------------------------------------------------------------------------


def neuron(db: sqlite3.Connection, netuid: int, hotkey: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM neurons WHERE netuid=? AND hotkey=?", (int(netuid), hotkey)
    ).fetchone()
    return row


def neurons(db: sqlite3.Connection, netuid: int) -> list[sqlite3.Row]:
    return list(db.execute("SELECT * FROM neurons WHERE netuid=? ORDER BY uid", (int(netuid),)))


def registered(db: sqlite3.Connection, netuid: int, hotkey: str) -> sqlite3.Row:
    row = neuron(db, netuid, hotkey)
    if row is None:
        raise DispatchError("HotKeyNotRegisteredInSubNet", "the hotkey is not registered")
    return row


def register(
    db: sqlite3.Connection, netuid: int, hotkey: str, coldkey: str, block: int, burn: bool = True
) -> int:
    """``burned_register``: append a uid, or replace the pruning candidate when full."""
    net = subnet(db, netuid)
    values = json.loads(net["hp"])
    if not values["registration_allowed"]:
        raise DispatchError("SubNetRegistrationDisabled", "registration is disabled")
    if neuron(db, netuid, hotkey) is not None:
        raise DispatchError("HotKeyAlreadyRegisteredInSubNet", "the hotkey is already registered")
    owner = hotkey_owner(db, hotkey)
    if owner is not None and owner != coldkey:
        raise DispatchError("NonAssociatedColdKey", "the hotkey belongs to another coldkey")
    ensure_account(db, coldkey)
    if burn:
        cost = int(values["burn"])
        free = int(db.execute("SELECT free FROM accounts WHERE ss58=?", (coldkey,)).fetchone()[0])
        if free < cost:
            raise DispatchError("NotEnoughBalanceToStake", f"need {cost} rao, have {free}")
        db.execute("UPDATE accounts SET free=free-? WHERE ss58=?", (cost, coldkey))
    rows = neurons(db, netuid)
    if len(rows) < int(values["max_allowed_uids"]):
        uid = len(rows)
    else:
        uid = _prune_candidate(rows, net["owner_hotkey"], block, int(values["immunity_period"]))
        _clear_uid(db, netuid, uid)
    db.execute(
        "INSERT INTO neurons (netuid, uid, hotkey, coldkey, registered_at, last_update)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (int(netuid), uid, hotkey, coldkey, block, block),
    )
    return uid


def _prune_candidate(rows: list[sqlite3.Row], owner_hotkey: str, block: int, immunity: int) -> int:
    """Lowest emission (older registration, then lower uid on ties); the owner is immortal."""
    candidates = [r for r in rows if r["hotkey"] != owner_hotkey]
    if not candidates:
        raise DispatchError("NoNeuronIdAvailable", "every uid is immortal")
    immune = [r for r in candidates if block - r["registered_at"] < immunity]
    mortal = [r for r in candidates if block - r["registered_at"] >= immunity]
    pool = mortal if len(mortal) > MIN_NON_IMMUNE_UIDS or not immune else immune
    best = min(pool, key=lambda r: (r["emission"], r["registered_at"], r["uid"]))
    return int(best["uid"])


def _clear_uid(db: sqlite3.Connection, netuid: int, uid: int) -> None:
    """A replaced uid loses its row, and every weight and bond pointing at it."""
    db.execute("DELETE FROM neurons WHERE netuid=? AND uid=?", (int(netuid), uid))
    for row in neurons(db, netuid):
        weights = [e for e in json.loads(row["weights"]) if e[0] != uid]
        bonds = [e for e in json.loads(row["bonds"]) if e[0] != uid]
        db.execute(
            "UPDATE neurons SET weights=?, bonds=? WHERE netuid=? AND uid=?",
            (json.dumps(weights), json.dumps(bonds), int(netuid), row["uid"]),
        )


def set_stake(db: sqlite3.Connection, netuid: int, hotkey: str, rao: int) -> None:
    """Seed stake directly (no staking extrinsics are modelled) and refresh the permits."""
    if rao < 0:
        raise DispatchError("AmountTooLow", "stake must be >= 0")
    registered(db, netuid, hotkey)
    db.execute(
        "UPDATE neurons SET stake=? WHERE netuid=? AND hotkey=?", (int(rao), int(netuid), hotkey)
    )
    refresh_permits(db, netuid)


def refresh_permits(db: sqlite3.Connection, netuid: int) -> None:
    """Top ``max_validators`` by stake (stake > 0 and >= the stake threshold) hold a permit."""
    k = int(hp(db, netuid)["max_validators"])
    threshold = int(get_meta(db, "stake_threshold"))
    rows = neurons(db, netuid)
    ranked = sorted(rows, key=lambda r: (-r["stake"], r["uid"]))
    holders = {r["uid"] for r in ranked[:k] if r["stake"] > 0 and r["stake"] >= threshold}
    for r in rows:
        db.execute(
            "UPDATE neurons SET permit=? WHERE netuid=? AND uid=?",
            (int(r["uid"] in holders), int(netuid), r["uid"]),
        )


# --- serving -----------------------------------------------------------------------------


def serve_axon(db: sqlite3.Connection, hotkey: str, p: dict[str, Any], block: int) -> None:
    netuid = int(p["netuid"])
    subnet(db, netuid)
    row = neuron(db, netuid, hotkey)
    if row is None:
        raise DispatchError("HotKeyNotRegisteredInNetwork", "the hotkey is not registered")
    ip, ip_type, port = int(p["ip"]), int(p["ip_type"]), int(p["port"])
    if ip_type not in (4, 6):
        raise DispatchError("InvalidIpType", "ip_type must be 4 or 6")
    if not _valid_ip(ip, ip_type):
        raise DispatchError("InvalidIpAddress", "the ip is not a routable address")
    if port == 0:
        raise DispatchError("InvalidPort", "port 0 is not allowed")
    prev = json.loads(row["axon"]) if row["axon"] else None
    limit = int(hp(db, netuid)["serving_rate_limit"])
    if prev and limit and prev["block"] and block - prev["block"] < limit:
        raise DispatchError("ServingRateLimitExceeded", f"wait {limit} blocks between serves")
    axon = {
        "block": block,
        "version": int(p["version"]),
        "ip": ip,
        "port": port,
        "ip_type": ip_type,
        "protocol": int(p["protocol"]),
        "placeholder1": int(p.get("placeholder1", 0)),
        "placeholder2": int(p.get("placeholder2", 0)),
    }
    db.execute(
        "UPDATE neurons SET axon=? WHERE netuid=? AND hotkey=?", (json.dumps(axon), netuid, hotkey)
    )


def _valid_ip(ip: int, ip_type: int) -> bool:
    """The pallet's rule: in range, not all-ones, not the loopback 127.0.0.1 / ::1."""
    if ip_type == 4:
        if ip >= 2**32 - 1:
            return False
        return ip != int(ipaddress.IPv4Address("127.0.0.1"))
    if ip >= 2**128 - 1:
        return False
    return ip != 1


# --- weights -----------------------------------------------------------------------------


def _weights_common(db: sqlite3.Connection, netuid: int, hotkey: str, block: int) -> sqlite3.Row:
    row = registered(db, netuid, hotkey)
    threshold = int(get_meta(db, "stake_threshold"))
    if row["stake"] < threshold and hotkey != subnet(db, netuid)["owner_hotkey"]:
        raise DispatchError("NotEnoughStakeToSetWeights", f"stake below {threshold} rao")
    return row


def _check_rate(row: sqlite3.Row, limit: int, block: int, name: str) -> None:
    last = int(row["last_update"])
    if last != 0 and block - last < limit:
        raise DispatchError(name, f"wait {limit - (block - last)} more blocks")


def set_weights(db: sqlite3.Connection, hotkey: str, p: dict[str, Any], block: int) -> None:
    netuid, mecid = int(p["netuid"]), int(p.get("mecid", 0))
    if subnet_or_none(db, netuid) is None or mecid != 0:
        raise DispatchError("MechanismDoesNotExist", f"no mechanism {mecid} on subnet {netuid}")
    values = hp(db, netuid)
    if values["commit_reveal_weights_enabled"]:
        raise DispatchError("CommitRevealEnabled", "use commit_timelocked_weights")
    dests, weights = [int(u) for u in p["dests"]], [int(w) for w in p["weights"]]
    if len(dests) != len(weights):
        raise DispatchError("WeightVecNotEqualSize", "dests and weights differ in length")
    row = _weights_common(db, netuid, hotkey, block)
    version = int(p["version_key"])
    if version < int(values["weights_version"]):
        raise DispatchError("IncorrectWeightVersionKey", "version_key below WeightsVersionKey")
    _check_rate(row, int(values["weights_rate_limit"]), block, "SettingWeightsTooFast")
    uid = int(row["uid"])
    self_weight = dests == [uid]
    owner = hotkey == subnet(db, netuid)["owner_hotkey"]
    if not row["permit"] and not self_weight and not owner:
        raise DispatchError("NeuronNoValidatorPermit", "the hotkey has no validator permit")
    n = len(neurons(db, netuid))
    if len(set(dests)) != len(dests):
        raise DispatchError("DuplicateUids", "a uid appears twice")
    if any(u < 0 or u >= n for u in dests) or any(w < 0 or w > U16_MAX for w in weights):
        raise DispatchError("UidVecContainInvalidOne", "a uid is not on the subnet")
    if not self_weight and len(dests) < min(int(values["min_allowed_weights"]), n):
        raise DispatchError("WeightVecLengthIsLow", "fewer weights than min_allowed_weights")
    scaled = list(zip(dests, _max_upscale(weights), strict=True))
    db.execute(
        "UPDATE neurons SET weights=?, last_update=? WHERE netuid=? AND uid=?",
        (json.dumps(scaled), block, netuid, uid),
    )


def _max_upscale(weights: list[int]) -> list[int]:
    """The pallet's ``vec_u16_max_upscale_to_u16``: rows whose max exceeds 32768 stay as sent."""
    top = max(weights, default=0)
    if top == 0 or top > 32768:
        return list(weights)
    return [(w * U16_MAX + top // 2) // top for w in weights]


def subnet_or_none(db: sqlite3.Connection, netuid: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM subnets WHERE netuid=?", (int(netuid),)
    ).fetchone()
    return row


def commit_timelocked(db: sqlite3.Connection, hotkey: str, p: dict[str, Any], block: int) -> None:
    """Recorded only: revealing needs the drand round signature, which is offline."""
    netuid, mecid = int(p["netuid"]), int(p.get("mecid", 0))
    if subnet_or_none(db, netuid) is None or mecid != 0:
        raise DispatchError("MechanismDoesNotExist", f"no mechanism {mecid} on subnet {netuid}")
    values = hp(db, netuid)
    if not values["commit_reveal_weights_enabled"]:
        raise DispatchError("CommitRevealDisabled", "commit-reveal is off on this subnet")
    row = _weights_common(db, netuid, hotkey, block)
    _check_rate(row, int(values["weights_rate_limit"]), block, "CommittingWeightsTooFast")
    pending = db.execute(
        "SELECT COUNT(*) FROM tl_commits WHERE netuid=? AND hotkey=?", (netuid, hotkey)
    ).fetchone()[0]
    if pending >= MAX_UNREVEALED_COMMITS:
        raise DispatchError("TooManyUnrevealedCommits", "at most 10 unrevealed commits")
    commit = p["commit"]
    cipher = commit.hex() if isinstance(commit, bytes | bytearray) else str(commit)
    db.execute(
        "INSERT INTO tl_commits VALUES (?, ?, ?, ?, ?, ?)",
        (
            netuid,
            hotkey,
            subnet(db, netuid)["epoch_index"],
            block,
            "0x" + cipher.removeprefix("0x"),
            int(p["reveal_round"]),
        ),
    )
    db.execute(
        "UPDATE neurons SET last_update=? WHERE netuid=? AND hotkey=?", (block, netuid, hotkey)
    )


# --- commitments -------------------------------------------------------------------------


def set_commitment(db: sqlite3.Connection, hotkey: str, p: dict[str, Any], block: int) -> None:
    """``Commitments.set_commitment``: info = {"fields": [{"Raw<n>": 0x-hex | bytes | str}]}."""
    netuid = int(p["netuid"])
    subnet(db, netuid)
    if neuron(db, netuid, hotkey) is None:
        raise DispatchError("AccountNotAllowedCommit", "only registered hotkeys may commit")
    info = p.get("info")
    fields = info.get("fields") if isinstance(info, dict) else None
    if not isinstance(fields, list | tuple):
        raise DispatchError("InvalidCommitmentInfo", "info must be {'fields': [...]}")
    if len(fields) > MAX_COMMITMENT_FIELDS:
        raise DispatchError("TooManyFieldsInCommitmentInfo", f"at most {MAX_COMMITMENT_FIELDS}")
    decoded = [_raw_field(f) for f in fields]
    db.execute(
        "INSERT OR REPLACE INTO commitments VALUES (?, ?, ?, ?)",
        (netuid, hotkey, block, json.dumps(decoded)),
    )


def _raw_field(field: Any) -> dict[str, str]:
    if isinstance(field, list | tuple) and len(field) == 1:
        field = field[0]
    if not isinstance(field, dict) or len(field) != 1:
        raise DispatchError("InvalidCommitmentInfo", f"unsupported commitment field {field!r}")
    ((variant, value),) = field.items()
    if not str(variant).startswith("Raw"):
        raise DispatchError("InvalidCommitmentInfo", f"field variant {variant} not modelled")
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, str) and value.startswith("0x"):
        data = bytes.fromhex(value[2:])
    elif isinstance(value, str):
        data = value.encode()
    else:
        raise DispatchError("InvalidCommitmentInfo", f"field value {value!r} is not bytes")
    if len(data) > MAX_RAW_BYTES or f"Raw{len(data)}" != variant:
        raise DispatchError("InvalidCommitmentInfo", f"{variant} holds {len(data)} bytes")
    return {variant: "0x" + data.hex()}
