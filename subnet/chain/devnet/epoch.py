"""Epochs and emission: chain state in, ``scoring.yuma.epoch`` in the middle, state out.

Emission follows yuma.md §3 with a fixed alpha issuance per block (``alpha_per_block`` rao,
default 1 α): it accrues per subnet and is paid at the subnet's epoch. The owner cut (18%)
is staked to the owner hotkey; the rest (82%: miners 41%, validators 41% by Yuma's split) is
the epoch's ``emission`` and lands on each hotkey's stake. The owner uid's miner share is
burned, as the chain does. Root/TAO flows, halvings and the AMM are not modelled.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from scoring.yuma import EpochInputs, YumaParams, epoch
from subnet.chain.devnet import pallet
from subnet.chain.devnet.store import get_meta, set_meta

OWNER_CUT_U16 = 11796  # SubnetOwnerCut: 18%
U16_MAX = 65535


def run_due(db: sqlite3.Connection, head: int) -> list[tuple[int, int]]:
    """Run every epoch due at or before ``head`` exactly once; returns (netuid, block) pairs.

    Called inside the write transaction that moves ``processed_block``, so two processes
    catching up at the same time cannot both run an epoch: the second sees the first's work.
    """
    processed = int(get_meta(db, "processed_block"))
    ran: list[tuple[int, int]] = []
    if head <= processed:
        return ran
    for net in list(db.execute("SELECT netuid FROM subnets ORDER BY netuid")):
        netuid = int(net[0])
        while True:
            row = pallet.subnet(db, netuid)
            tempo = int(json.loads(row["hp"])["tempo"])
            due = int(row["last_epoch_block"]) + tempo
            if tempo <= 0 or due > head:
                break
            run_epoch(db, netuid, due)
            ran.append((netuid, due))
    set_meta(db, "processed_block", head)
    return ran


def _params(values: dict[str, Any], stake_threshold: int) -> YumaParams:
    return YumaParams(
        kappa=int(values["kappa"]),
        bonds_penalty=int(values["bonds_penalty"]),
        bonds_moving_avg=int(values["bonds_moving_avg"]),
        yuma3_enabled=bool(values["yuma3_enabled"]),
        liquid_alpha_enabled=bool(values["liquid_alpha_enabled"]),
        alpha_low=int(values["alpha_low"]),
        alpha_high=int(values["alpha_high"]),
        alpha_sigmoid_steepness=int(values["alpha_sigmoid_steepness"]),
        activity_cutoff_factor=int(values["activity_cutoff_factor"]),
        tempo=int(values["tempo"]),
        max_validators=int(values["max_validators"]),
        stake_threshold=stake_threshold,
        commit_reveal_enabled=bool(values["commit_reveal_weights_enabled"]),
    )


def run_epoch(db: sqlite3.Connection, netuid: int, block: int) -> None:
    net = pallet.subnet(db, netuid)
    values = json.loads(net["hp"])
    per_block = int(get_meta(db, "alpha_per_block"))
    pending = int(net["pending"]) + max(0, block - int(net["accrued_to"])) * per_block
    owner_cut = pending * OWNER_CUT_U16 // U16_MAX
    emission = pending - owner_cut
    index = int(net["epoch_index"]) + 1
    db.execute(
        "DELETE FROM tl_commits WHERE netuid=? AND epoch + ? < ?",
        (netuid, int(values["commit_reveal_period"]), index),
    )
    rows = pallet.neurons(db, netuid)
    owner_uid = next((r["uid"] for r in rows if r["hotkey"] == net["owner_hotkey"]), None)
    if rows:
        commits = {
            r[0]: int(r[1])
            for r in db.execute(
                "SELECT hotkey, MIN(commit_block) FROM tl_commits WHERE netuid=? GROUP BY hotkey",
                (netuid,),
            )
        }
        inputs = EpochInputs(
            block=block,
            stake=[int(r["stake"]) for r in rows],
            weights=[[tuple(e) for e in json.loads(r["weights"])] for r in rows],
            bonds=[[tuple(e) for e in json.loads(r["bonds"])] for r in rows],
            last_update=[int(r["last_update"]) for r in rows],
            block_at_registration=[int(r["registered_at"]) for r in rows],
            validator_permit=[bool(r["permit"]) for r in rows],
            owner_uid=owner_uid,
            commit_blocks=[commits.get(r["hotkey"]) for r in rows],
            last_mechanism_step_block=int(net["last_epoch_block"]),
            emission=emission,
        )
        result = epoch(inputs, _params(values, int(get_meta(db, "stake_threshold"))))
        for i, r in enumerate(rows):
            server = 0 if r["uid"] == owner_uid else int(result.server_emission[i])
            paid = server + int(result.validator_emission[i])
            cut = owner_cut if r["uid"] == owner_uid else 0
            db.execute(
                "UPDATE neurons SET stake=stake+?, emission=?, incentive=?, dividends=?,"
                " consensus=?, vtrust=?, permit=?, active=?, bonds=? WHERE netuid=? AND uid=?",
                (
                    paid + cut,
                    paid + cut,
                    int(result.incentive_u16[i]),
                    int(result.dividends_u16[i]),
                    int(result.consensus_u16[i]),
                    int(result.validator_trust_u16[i]),
                    int(result.validator_permit[i]),
                    int(result.active[i]),
                    json.dumps([list(e) for e in result.bonds[i]]),
                    netuid,
                    r["uid"],
                ),
            )
    db.execute(
        "UPDATE subnets SET last_epoch_block=?, epoch_index=?, pending=0, accrued_to=?"
        " WHERE netuid=?",
        (block, index, block, netuid),
    )
