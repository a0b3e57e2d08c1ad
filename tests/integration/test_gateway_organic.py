"""Organic answers count: a fabricating miner serving users is caught by the validator's spot
check on the answers the gateway handed over, and penalised as on synthetic prompts.

The fabricating miner samples its own model but reports the teacher's distributions. The
validator's step runs with synthetic spot checks off (``verify.spot_check_fraction = 0``), so
the only way it can be caught is on the organic answers: the signed bytes the gateway wrote to
the inbox, re-verified and recomputed with the miner's committed model.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import aiohttp
import openai
import pytest

from neurons.gateway.view import VALIDATOR_DB
from neurons.validator.export import scores
from neurons.validator.main import block_seed
from neurons.validator.organic import CURSOR_KEY
from neurons.validator.participant import OrganicMiner
from neurons.validator.spotcheck import ModelCache
from neurons.validator.step import run_step
from neurons.validator.store import Store, StoreReader
from scoring.causes import Cause
from subnet.chain.network import open_chain
from subnet.engine import load_engine
from tests.integration._gateway_kit import (
    MODEL,
    gateway_config,
    running_gateway,
    seed_scores,
    subnet_ext,
)
from tests.integration._validator_kit import NETUID, make_subnet, running_miners, step_context

pytestmark = pytest.mark.slow
PROMPTS = (
    "add 12 34 =",
    "sort 3 1 2 =",
    "reverse a b c d =",
    "count a in a b a c =",
    "copy x y z =",
)
LIES = {Cause.DIST_MISMATCH.value, Cause.FABRICATED.value}


async def _load(path: Any) -> Any:
    return load_engine("hf", path)


async def test_a_fabricating_miner_is_caught_on_organic_traffic(tmp_path, tiny):
    sub = make_subnet(tiny, tmp_path)
    cfg = gateway_config(
        tmp_path,
        sub.zoo["teacher"],
        **{
            "gateway.top_n": 1,
            "verify.spot_check_fraction": 0.0,  # synthetic answers are never spot-checked
            "validator.tasks_per_step": 2,
            "validator.max_tokens": 8,
            "validator.query_timeout": 5.0,
        },
    )
    seed_scores(cfg, sub, {"fabricated": 0.9, "teacher": 0.5})  # users go to the cheat
    fab, honest = sub.uids["fabricated"], sub.uids["teacher"]
    async with (
        running_miners(sub, tmp_path, names=("teacher", "fabricated")),
        running_gateway(cfg, sub) as gw,
        open_chain(sub.network) as chain,
        aiohttp.ClientSession() as session,
    ):
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.key(), max_retries=0)
        for prompt in PROMPTS:
            answer = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=8
            )
            assert subnet_ext(answer)["miners"] == [fab]  # served, and it looks fine to a user
        assert gw.inbox.count() == len(PROMPTS)

        teacher = load_engine("hf", sub.zoo["teacher"])
        store = Store(tmp_path / "vs" / VALIDATOR_DB)
        models = ModelCache([tmp_path / "models"], 3, _load)
        ctx = step_context(
            sub,
            cfg,
            chain,
            session,
            teacher,
            sub.zoo["teacher"],
            store,
            models,
            organic_inbox=gw.inbox.path,
        )
        try:
            sub.net.advance(2)
            block = await chain.block()
            result = await run_step(ctx, 2, block, await block_seed(chain, block))
            # Its synthetic answers pass (nothing checks them); its organic ones do not.
            assert not LIES & set(result.causes[fab])
            organic = [c for uid, c in result.organic_causes if uid == fab]
            assert len(organic) == len(PROMPTS)
            assert LIES & set(organic), organic
            # Penalised exactly as a lie on a synthetic prompt: EMA reset, hotkey suspended.
            assert result.ema[fab] == 0.0 and result.means.get(fab, 0.0) == 0.0
            held = {e.uid: e.suspended for e in store.ema()}
            assert held[fab] == cfg.weights.lie_penalty_steps and held[honest] == 0
            assert result.ema[honest] > 0
            assert ctx.metrics.lies.labels(str(fab))._value.get() == 1
            # The evidence is the miner's own signed bytes; the inbox cursor moved with the step.
            with StoreReader(store.path) as reader:
                rows = [a for a in reader.answers() if isinstance(a.who, OrganicMiner)]
                assert {a.who.uid for a in rows} == {fab}
                # Each reached the spot check unless an earlier gate (its own claims' EOS
                # odds, as on synthetic prompts) had already failed it.
                assert all(a.verified or not a.cause.ok for a in rows)
                assert any(a.verified and a.cause.value in LIES for a in rows)
                assert store.get_meta(CURSOR_KEY) is not None
                doc = scores(reader, hotkey=ctx.hotkey, netuid=NETUID)
            [row] = [m for m in doc["miners"] if m["uid"] == fab]
            assert row["suspended"] > 0 and row["organic"]["answers"] == len(PROMPTS)
            assert row["organic"]["failed"] >= 1
            db_evidence = (
                sqlite3.connect(store.path)
                .execute("SELECT task_id, cause, signature FROM evidence WHERE uid = ?", (fab,))
                .fetchall()
            )
            assert any(t.startswith("organic:") and c in LIES and s for t, c, s in db_evidence)
            # A second step finds nothing new to judge.
            sub.net.advance(2)
            block = await chain.block()
            again = await run_step(ctx, 3, block, await block_seed(chain, block))
            assert again.organic_causes == ()
            # The gateway reads the suspension and sends users to the honest miner instead.
            await gw.service.refresh(chain)
            after = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=8
            )
            assert subnet_ext(after)["miners"] == [honest]
            assert gw.inbox.count() == 1  # what the validator read was pruned
        finally:
            await teacher.close()
            await models.close()
            store.close()
