"""Runtime API calls: the metagraph, neuron infos and hyperparameters (decoded shapes)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from subnet.chain.devnet import hparams, pallet
from subnet.chain.devnet.reads import Ctx

_NO_AXON = {
    "block": 0,
    "version": 0,
    "ip": 0,
    "port": 0,
    "ip_type": 0,
    "protocol": 0,
    "placeholder1": 0,
    "placeholder2": 0,
}
_NO_PROMETHEUS = {"block": 0, "version": 0, "ip": 0, "port": 0, "ip_type": 0}
I96F32_ONE = 1 << 32


def _axon(row: sqlite3.Row) -> dict[str, Any]:
    return dict(json.loads(row["axon"])) if row["axon"] else dict(_NO_AXON)


def metagraph(ctx: Ctx, p: list[Any]) -> dict[str, Any] | None:
    netuid = int(p[0])
    net = pallet.subnet_or_none(ctx.db, netuid)
    if net is None:
        return None
    values = json.loads(net["hp"])
    rows = pallet.neurons(ctx.db, netuid)
    name = f"devnet-{netuid}".encode()
    return {
        "netuid": netuid,
        "name": list(name),
        "symbol": list("α".encode()),
        "identity": None,
        "network_registered_at": int(net["registered_at"]),
        "owner_hotkey": net["owner_hotkey"],
        "owner_coldkey": net["owner_coldkey"],
        "block": ctx.head,
        "tempo": int(values["tempo"]),
        "last_step": int(net["last_epoch_block"]),
        "blocks_since_last_step": max(0, ctx.head - int(net["last_epoch_block"])),
        "subnet_emission": 0,
        "alpha_in": 0,
        "alpha_out": 0,
        "tao_in": 0,
        "moving_price": {"bits": I96F32_ONE},
        "num_uids": len(rows),
        "max_uids": int(values["max_allowed_uids"]),
        "burn": int(values["burn"]),
        "hotkeys": [r["hotkey"] for r in rows],
        "coldkeys": [r["coldkey"] for r in rows],
        "identities": [None for _ in rows],
        "axons": [_axon(r) for r in rows],
        "active": [bool(r["active"]) for r in rows],
        "validator_permit": [bool(r["permit"]) for r in rows],
        "pruning_score": [0 for _ in rows],
        "last_update": [int(r["last_update"]) for r in rows],
        "emission": [int(r["emission"]) for r in rows],
        "dividends": [int(r["dividends"]) for r in rows],
        "incentives": [int(r["incentive"]) for r in rows],
        "consensus": [int(r["consensus"]) for r in rows],
        "trust": [0 for _ in rows],
        "rank": [0 for _ in rows],
        "validator_trust": [int(r["vtrust"]) for r in rows],
        "block_at_registration": [int(r["registered_at"]) for r in rows],
        "alpha_stake": [int(r["stake"]) for r in rows],
        "tao_stake": [0 for _ in rows],
        "total_stake": [int(r["stake"]) for r in rows],
        **{f"hp_{k}": v for k, v in values.items()},
    }


def _neuron(row: sqlite3.Row, lite: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "hotkey": row["hotkey"],
        "coldkey": row["coldkey"],
        "uid": int(row["uid"]),
        "netuid": int(row["netuid"]),
        "active": bool(row["active"]),
        "axon_info": _axon(row),
        "prometheus_info": dict(_NO_PROMETHEUS),
        "stake": [(row["coldkey"], int(row["stake"]))],
        "rank": 0,
        "emission": int(row["emission"]),
        "incentive": int(row["incentive"]),
        "consensus": int(row["consensus"]),
        "trust": 0,
        "validator_trust": int(row["vtrust"]),
        "dividends": int(row["dividends"]),
        "last_update": int(row["last_update"]),
        "validator_permit": bool(row["permit"]),
        "pruning_score": 0,
    }
    if not lite:
        info["weights"] = [tuple(e) for e in json.loads(row["weights"])]
        info["bonds"] = [tuple(e) for e in json.loads(row["bonds"])]
    return info


def neurons(lite: bool) -> Callable[[Ctx, list[Any]], list[Any]]:
    def read(ctx: Ctx, p: list[Any]) -> list[Any]:
        if pallet.subnet_or_none(ctx.db, int(p[0])) is None:
            return []
        return [_neuron(r, lite) for r in pallet.neurons(ctx.db, int(p[0]))]

    return read


def neuron(lite: bool) -> Callable[[Ctx, list[Any]], Any]:
    def read(ctx: Ctx, p: list[Any]) -> Any:
        row = ctx.db.execute(
            "SELECT * FROM neurons WHERE netuid=? AND uid=?", (int(p[0]), int(p[1]))
        ).fetchone()
        return None if row is None else _neuron(row, lite)

    return read


def hyperparams_v3(ctx: Ctx, p: list[Any]) -> list[Any] | None:
    if pallet.subnet_or_none(ctx.db, int(p[0])) is None:
        return None
    return hparams.v3_entries(pallet.hp(ctx.db, int(p[0])))


def next_epoch_start(ctx: Ctx, p: list[Any]) -> int | None:
    net = pallet.subnet_or_none(ctx.db, int(p[0]))
    if net is None:
        return None
    return int(net["last_epoch_block"]) + int(json.loads(net["hp"])["tempo"])


RUNTIME: dict[tuple[str, str], Callable[[Ctx, list[Any]], Any]] = {
    ("SubnetInfoRuntimeApi", "get_metagraph"): metagraph,
    ("SubnetInfoRuntimeApi", "get_subnet_hyperparams_v3"): hyperparams_v3,
    ("SubnetInfoRuntimeApi", "get_next_epoch_start_block"): next_epoch_start,
    ("NeuronInfoRuntimeApi", "get_neurons_lite"): neurons(lite=True),
    ("NeuronInfoRuntimeApi", "get_neurons"): neurons(lite=False),
    ("NeuronInfoRuntimeApi", "get_neuron_lite"): neuron(lite=True),
    ("NeuronInfoRuntimeApi", "get_neuron"): neuron(lite=False),
}
