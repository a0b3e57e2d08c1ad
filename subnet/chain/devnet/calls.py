"""Extrinsic dispatch: which calls exist, who may send them, and what they emit.

``dispatch`` runs inside the block's write transaction. A refused call raises
``DispatchError`` (the transaction is rolled back to before the call, the nonce still
moves, as on chain). Origins are the pallet's: hotkey- or coldkey-signed calls, subnet owner
or Root for ``AdminUtils`` setters, and Root only through ``Sudo.sudo`` signed by the sudo key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from subnet.chain.devnet import hparams, pallet
from subnet.chain.devnet.pallet import DispatchError
from subnet.chain.devnet.store import get_meta, set_meta

ROOT = "<root>"

Event = tuple[str, str, dict[str, Any]]
Params = dict[str, Any]


def _burned_register(db: sqlite3.Connection, who: str, p: Params, block: int) -> list[Event]:
    uid = pallet.register(db, int(p["netuid"]), str(p["hotkey"]), who, block)
    return [
        (
            "SubtensorModule",
            "NeuronRegistered",
            {"netuid": int(p["netuid"]), "uid": uid, "hotkey": str(p["hotkey"])},
        )
    ]


def _serve(db: sqlite3.Connection, who: str, p: Params, block: int) -> list[Event]:
    pallet.serve_axon(db, who, p, block)
    return [("SubtensorModule", "AxonServed", {"netuid": int(p["netuid"]), "hotkey": who})]


def _weights(db: sqlite3.Connection, who: str, p: Params, block: int) -> list[Event]:
    pallet.set_weights(db, who, p, block)
    return [("SubtensorModule", "WeightsSet", {"netuid": int(p["netuid"]), "hotkey": who})]


def _commit(db: sqlite3.Connection, who: str, p: Params, block: int) -> list[Event]:
    pallet.commit_timelocked(db, who, p, block)
    return [
        (
            "SubtensorModule",
            "TimelockedWeightsCommitted",
            {"netuid": int(p["netuid"]), "hotkey": who, "reveal_round": int(p["reveal_round"])},
        )
    ]


def _set_commitment(db: sqlite3.Connection, who: str, p: Params, block: int) -> list[Event]:
    pallet.set_commitment(db, who, p, block)
    return [("Commitments", "Commitment", {"netuid": int(p["netuid"]), "who": who})]


# (module, function) -> handler for calls signed by an account.
SIGNED: dict[tuple[str, str], Callable[[sqlite3.Connection, str, Params, int], list[Event]]] = {
    ("SubtensorModule", "burned_register"): _burned_register,
    ("SubtensorModule", "serve_axon"): _serve,
    ("SubtensorModule", "serve_axon_tls"): _serve,
    ("SubtensorModule", "set_mechanism_weights"): _weights,
    ("SubtensorModule", "set_weights"): _weights,
    ("SubtensorModule", "commit_timelocked_mechanism_weights"): _commit,
    ("SubtensorModule", "commit_timelocked_weights"): _commit,
    ("Commitments", "set_commitment"): _set_commitment,
}

ADMIN_EXTRA = ("sudo_set_alpha_values", "sudo_set_stake_threshold")


def known(module: str, function: str) -> bool:
    """Whether the devnet models this call (compose refuses the rest, naming them)."""
    if (module, function) in SIGNED or (module, function) == ("Sudo", "sudo"):
        return True
    if module == "AdminUtils":
        return function in hparams.SETTERS or function in ADMIN_EXTRA
    return False


def dispatch(
    db: sqlite3.Connection,
    origin: str,
    module: str,
    function: str,
    params: dict[str, Any],
    block: int,
) -> list[Event]:
    """Run one call as ``origin`` (an ss58 address, or ``ROOT``)."""
    if module == "Sudo" and function == "sudo":
        if origin == ROOT or origin != get_meta(db, "sudo"):
            raise DispatchError("RequireSudo", "sender must be the sudo key")
        inner = params["call"]
        dispatch(db, ROOT, inner.module, inner.function, dict(inner.params), block)
        return [("Sudo", "Sudid", {"sudo_result": {"Ok": None}})]
    if module == "AdminUtils":
        return _admin(db, origin, function, params)
    handler = SIGNED.get((module, function))
    if handler is None:
        raise DispatchError("CallNotModelled", f"{module}.{function} is not modelled")
    if origin == ROOT:
        raise DispatchError("BadOrigin", f"{module}.{function} needs a signed origin")
    return handler(db, origin, params, block)


def _admin(db: sqlite3.Connection, origin: str, function: str, p: dict[str, Any]) -> list[Event]:
    if function == "sudo_set_stake_threshold":
        if origin != ROOT:
            raise DispatchError("BadOrigin", "sudo_set_stake_threshold needs Root")
        set_meta(db, "stake_threshold", int(p["min_stake"]))
        return [("AdminUtils", "StakeThresholdSet", {"value": int(p["min_stake"])})]
    netuid = int(p["netuid"])
    net = pallet.subnet(db, netuid)
    if function == "sudo_set_alpha_values":
        _owner_or_root(origin, net)
        low, high = int(p["alpha_low"]), int(p["alpha_high"])
        if not 0 < low <= high <= pallet.U16_MAX:
            raise DispatchError("AlphaLowOutOfRange", "need 0 < alpha_low <= alpha_high")
        values = pallet.hp(db, netuid)
        values.update(alpha_low=low, alpha_high=high)
        pallet.save_hp(db, netuid, values)
        return [("AdminUtils", "AlphaValuesSet", {"netuid": netuid})]
    name, param, owner_ok = hparams.SETTERS[function]
    if owner_ok:
        _owner_or_root(origin, net)
    elif origin != ROOT:
        raise DispatchError("BadOrigin", f"{function} needs Root (Sudo.sudo)")
    value = p[param]
    values = pallet.hp(db, netuid)
    values[name] = _coerce(name, value, values)
    pallet.save_hp(db, netuid, values)
    if name == "max_validators":
        pallet.refresh_permits(db, netuid)
    return [("AdminUtils", "HyperparameterSet", {"netuid": netuid, "name": name})]


def _owner_or_root(origin: str, net: sqlite3.Row) -> None:
    if origin != ROOT and origin != net["owner_coldkey"]:
        raise DispatchError("BadOrigin", "only the subnet owner or Root may set this")


def _coerce(name: str, value: Any, values: dict[str, Any]) -> Any:
    default = hparams.DEFAULTS[name]
    if isinstance(default, bool):
        return bool(value)
    if name == "epoch_consensus":
        mode = value if isinstance(value, str) else next(iter(value))
        if mode not in ("Yuma", "Null"):
            raise DispatchError("InvalidValue", f"epoch_consensus {mode!r}")
        return mode
    if isinstance(value, dict) and "bits" in value:
        value = value["bits"]
    value = int(value)
    if value < 0:
        raise DispatchError("InvalidValue", f"{name} must be >= 0")
    if name == "max_validators" and value > int(values["max_allowed_uids"]):
        raise DispatchError("MaxValidatorsLargerThanMaxUIds", "max_validators > max_allowed_uids")
    if name == "tempo" and value == 0:
        raise DispatchError("InvalidValue", "tempo must be > 0")
    return value
