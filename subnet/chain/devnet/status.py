"""A snapshot of the devnet for humans and the CLI (``Devnet.status()``)."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from dataclasses import dataclass

from subnet.chain.devnet import pallet


@dataclass(frozen=True)
class NeuronStatus:
    uid: int
    hotkey: str
    coldkey: str
    stake: int  # alpha rao
    incentive: float  # 0..1
    dividends: float  # 0..1
    emission: int  # alpha rao paid at the last epoch
    axon: str | None  # "ip:port"
    permit: bool
    last_update: int
    consensus: float = 0.0  # 0..1: the clipping level of this uid's column at the last epoch
    vtrust: float = 0.0  # 0..1: the share of this validator's weight that survived clipping


@dataclass(frozen=True)
class SubnetStatus:
    netuid: int
    owner_coldkey: str
    owner_hotkey: str
    tempo: int
    last_epoch_block: int
    epoch_index: int
    neurons: tuple[NeuronStatus, ...]


@dataclass(frozen=True)
class DevnetStatus:
    path: str
    head: int
    clock: str
    block_time: float
    subnets: tuple[SubnetStatus, ...]


def _axon(text: str | None) -> str | None:
    if not text:
        return None
    axon = json.loads(text)
    if axon["ip_type"] == 6:
        return f"[{ipaddress.IPv6Address(axon['ip'])}]:{axon['port']}"
    return f"{ipaddress.IPv4Address(axon['ip'])}:{axon['port']}"


def build_status(
    db: sqlite3.Connection, path: str, head: int, clock: str, block_time: float
) -> DevnetStatus:
    subnets = []
    for net in db.execute("SELECT * FROM subnets ORDER BY netuid").fetchall():
        neurons = tuple(
            NeuronStatus(
                uid=int(r["uid"]),
                hotkey=r["hotkey"],
                coldkey=r["coldkey"],
                stake=int(r["stake"]),
                incentive=int(r["incentive"]) / pallet.U16_MAX,
                dividends=int(r["dividends"]) / pallet.U16_MAX,
                emission=int(r["emission"]),
                axon=_axon(r["axon"]),
                permit=bool(r["permit"]),
                last_update=int(r["last_update"]),
                consensus=int(r["consensus"]) / pallet.U16_MAX,
                vtrust=int(r["vtrust"]) / pallet.U16_MAX,
            )
            for r in pallet.neurons(db, int(net["netuid"]))
        )
        subnets.append(
            SubnetStatus(
                netuid=int(net["netuid"]),
                owner_coldkey=net["owner_coldkey"],
                owner_hotkey=net["owner_hotkey"],
                tempo=int(json.loads(net["hp"])["tempo"]),
                last_epoch_block=int(net["last_epoch_block"]),
                epoch_index=int(net["epoch_index"]),
                neurons=neurons,
            )
        )
    return DevnetStatus(path, head, clock, block_time, tuple(subnets))
