"""The validator node end to end on a wall-clock devnet: its own loop, weights, emissions.

The node runs exactly as ``subnet validator`` runs it (``Validator.run``: blocks drive the
steps, weights at the weight interval with read-back), against real miners on loopback.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import aiohttp
import pytest

from neurons.localnet.plan import free_port
from neurons.validator.export import csv_steps
from neurons.validator.main import Validator
from scoring.causes import Cause
from subnet.chain.network import open_chain
from subnet.config import load_config
from tests.integration._validator_kit import (
    FABRICATION_CAUSES,
    NETUID,
    make_subnet,
    running_miners,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_validator_node_orders_miners_and_emissions_follow(tmp_path, tiny):
    sub = make_subnet(tiny, tmp_path, clock="wall", block_time=0.5, tempo=12)
    cfg = load_config(
        None,
        env={},
        overrides={
            "chain.network": sub.network,
            "chain.netuid": NETUID,
            "validator.teacher": str(sub.zoo["teacher"]),
            "validator.engine": "hf",
            "validator.state_dir": str(tmp_path / "vs"),
            "validator.tasks_per_step": 3,
            "validator.max_tokens": 8,
            "validator.query_timeout": 3.0,
            "validator.model_roots": str(tmp_path / "models"),
            "validator.weights_interval": 2,
            "validator.baseline": str(sub.zoo["student"]),
            "verify.spot_check_fraction": 1.0,
            "weights.ema_alpha": 0.5,
            "validator.export_port": (export_port := free_port("127.0.0.1")),
        },
    )
    async with running_miners(sub, tmp_path, slow_delay=20.0), open_chain(sub.network) as chain:
        node = Validator(cfg, chain, sub.wallets["vali"])
        running = asyncio.create_task(node.run(max_steps=4))
        deadline = time.monotonic() + 300
        while not node.results and not running.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        # The public score export is served while the node runs.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{export_port}/scores") as r:
                assert r.status == 200
                live = await r.json()
            async with http.get(f"http://127.0.0.1:{export_port}/") as r:
                assert r.status == 200 and "render-status" in await r.text()
        assert live["step"]["step"] >= 1 and live["validator"]["netuid"] == NETUID
        assert {m["uid"] for m in live["miners"]} >= {sub.uids["teacher"], sub.uids["student"]}
        assert await running == 0
        # One CSV per committed step, written after it.
        assert csv_steps(tmp_path / "vs" / "scores") == [1, 2, 3, 4]
        u = sub.uids
        last = node.results[-1]
        assert last.ema[u["teacher"]] > last.ema[u["student"]] > 0
        assert set(last.causes[u["slow"]]) == {Cause.TIMEOUT}
        assert Cause.DIST_MISMATCH in last.causes[u["fabricated"]]
        # Where the fabricated claim happens to equal the committed model's (short, confident
        # answers), the answer passes the distribution check and the EOS rule catches it.
        assert set(last.causes[u["fabricated"]]) <= FABRICATION_CAUSES
        # Model swapping and fabrication are caught where the claim differs from the committed
        # model's; one proven lie resets the EMA and suspends the hotkey, so all four earn 0.
        for name in ("garbage", "slow", "wrong", "fabricated"):
            assert last.ema[u[name]] == 0.0
        # The baseline (the validator's own student) passes its own spot checks.
        assert last.baseline_score is not None and last.baseline_score > 0
        assert set(last.baseline_causes) == {"ok"}
        # Every weight set succeeded and reads back equal to what the validator computed.
        db = sqlite3.connect(tmp_path / "vs" / "validator.sqlite")
        sets = db.execute("SELECT weights_json, success, matches FROM weight_sets").fetchall()
        assert sets and all(s == 1 and m == 1 for _, s, m in sets)
        sent = {int(k): v for k, v in json.loads(sets[-1][0]).items()}
        assert max(sent, key=lambda k: sent[k]) == u["teacher"]
        assert (
            json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])[
                "weights"
            ]["ema_alpha"]
            == 0.5
        )
        # Emissions after the next epoch follow the same order.
        await chain.wait_for_epoch(NETUID, timeout=60)
        mg = await chain.metagraph(NETUID, max_age_blocks=0)
        inc = {n.uid: n.incentive for n in mg.neurons}
        assert inc[u["teacher"]] > inc[u["student"]] > 0
        assert all(inc[u[n]] == 0 for n in ("garbage", "slow", "wrong", "fabricated"))
