"""Validator steps against real miners on the devnet (hf engine, tiny world, loopback HTTP).

Honest miners (the teacher itself, the undistilled student) and four adversaries answer the
same seeded tasks; the validator's EMA must order the honest ones by their KL to the teacher,
zero every adversary with its cause code, and the weights it sets must read back equal.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from distill.prompts import dataset_digest
from distill.tasks import generate_tasks
from neurons.validator.main import block_seed
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.miner_client import miner_session
from neurons.validator.spotcheck import ModelCache
from neurons.validator.step import run_step
from neurons.validator.store import Store
from neurons.validator.weights import WeightSetter, compute_weights
from scoring.causes import Cause
from subnet.chain.network import open_chain
from subnet.config import SubnetConfig, load_config
from subnet.engine import load_engine
from subnet.wallets import hotkey_address
from tests.harness.chat_model import chat_model
from tests.integration._validator_kit import (
    FABRICATION_CAUSES,
    NETUID,
    make_subnet,
    running_miners,
    step_context,
)

pytestmark = pytest.mark.slow


def _config(tmp_path, **overrides) -> SubnetConfig:
    values = {
        "validator.tasks_per_step": 3,
        "validator.max_tokens": 8,
        "validator.query_timeout": 3.0,
        "validator.engine": "hf",
        "verify.spot_check_fraction": 1.0,
        "validator.state_dir": str(tmp_path / "vs"),
        "weights.ema_alpha": 0.5,
        **overrides,
    }
    return load_config(None, overrides=values, env={})


async def test_steps_rank_honest_miners_zero_adversaries_and_weights_read_back(tmp_path, tiny):
    sub = make_subnet(tiny, tmp_path)
    cfg = _config(tmp_path)
    async with (
        running_miners(sub, tmp_path, slow_delay=20.0),
        open_chain(sub.network) as chain,
        miner_session() as session,
    ):
        teacher = load_engine("hf", sub.zoo["teacher"])
        store = Store(tmp_path / "vs" / "validator.sqlite")
        models = ModelCache([tmp_path / "models"], 3, _load)
        wallet = sub.wallets["vali"]
        ctx = step_context(sub, cfg, chain, session, teacher, sub.zoo["teacher"], store, models)
        results = []
        for step in (1, 2, 3):
            sub.net.advance(1)
            block = await chain.block()
            results.append(await run_step(ctx, step, block, await block_seed(chain, block)))
        u = sub.uids
        last = results[-1]
        causes = last.causes
        # Honest miners pass every gate; the teacher itself is closest to the teacher.
        assert set(causes[u["teacher"]]) == {"ok"} and set(causes[u["student"]]) == {"ok"}
        assert last.ema[u["teacher"]] > last.ema[u["student"]] > 0
        # Every adversary scores 0, each with its own cause.
        assert set(causes[u["wrong"]]) <= {Cause.DIST_MISMATCH, Cause.FABRICATED}
        assert Cause.DIST_MISMATCH in causes[u["fabricated"]]
        # Where the fabricated claim happens to equal the committed model's (short, confident
        # answers), the answer passes the distribution check and the EOS rules catch it.
        assert set(causes[u["fabricated"]]) <= FABRICATION_CAUSES
        assert all(c.startswith("format_") for c in causes[u["garbage"]])
        assert set(causes[u["slow"]]) == {Cause.TIMEOUT}
        # A model-swapping or fabricating miner is caught on the answers where its claim differs
        # from the committed model's; where both models are certain (sort, reverse) they agree.
        # One proven lie voids its round, resets its EMA and suspends it, so it earns nothing.
        for name in ("garbage", "slow", "wrong", "fabricated"):
            assert last.ema[u[name]] == 0.0
            assert last.means.get(u[name], 0.0) == 0.0
        held = {e.uid: e.suspended for e in store.ema()}
        assert held[u["wrong"]] > 0 and held[u["fabricated"]] > 0
        assert held[u["garbage"]] == held[u["slow"]] == held[u["teacher"]] == 0
        assert ctx.metrics.lies.labels(str(u["fabricated"]))._value.get() >= 1
        # The step is recorded with its seed and prompt digest; evidence is signed bytes.
        db = sqlite3.connect(tmp_path / "vs" / "validator.sqlite")
        assert db.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == 3
        assert db.execute("SELECT COUNT(DISTINCT seed) FROM answers").fetchone()[0] == 3
        ev = db.execute("SELECT uid, cause FROM evidence").fetchall()
        assert {(u["fabricated"], "dist_mismatch")} <= set(ev)
        # Weights: computed from the EMA, set through the adapter, read back equal.
        mg = await chain.metagraph(NETUID, max_age_blocks=0)
        weights, winner = compute_weights(last.ema, mg, hotkey_address(wallet), cfg.weights)
        assert winner == u["teacher"]
        setter = WeightSetter(
            chain, NETUID, wallet, store, ValidatorMetrics(), interval=1, retries=2, backoff=0.0
        )
        outcome = await setter.set(await chain.block(), 3, weights)
        assert outcome.success and outcome.matches is True
        # After an epoch, incentive follows the same order.
        sub.net.advance(25)
        mg = await chain.metagraph(NETUID, max_age_blocks=0)
        inc = {n.uid: n.incentive for n in mg.neurons}
        assert inc[u["teacher"]] > inc[u["student"]] > 0
        assert all(inc[u[n]] == 0 for n in ("garbage", "slow", "wrong", "fabricated"))
        await teacher.close()
        await models.close()
        store.close()


async def _load(path):
    return load_engine("hf", path)


async def test_a_step_asks_a_chat_dataset_rendered_with_the_teachers_template(tmp_path, tiny):
    """A teacher with a chat template and a chat-formatted prompt file: honest miners (which get
    token ids, so need no template) are scored, and the step records where its prompts came
    from."""
    sub = make_subnet(tiny, tmp_path)
    chat_teacher = chat_model(sub.zoo["teacher"], tmp_path / "chat-teacher")
    rows = tmp_path / "chat.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": t.prompt}], "answer": t.answer})
            + "\n"
            for t in generate_tasks("chat-rows", 12, ("sort", "reverse"))
        )
    )
    cfg = _config(
        tmp_path, **{"validator.prompt_sources": (str(rows),), "verify.spot_check_fraction": 0.5}
    )
    async with (
        running_miners(sub, tmp_path, names=("teacher", "student")),
        open_chain(sub.network) as chain,
        miner_session() as session,
    ):
        teacher = load_engine("hf", chat_teacher)
        store = Store(tmp_path / "vs" / "validator.sqlite")
        models = ModelCache([tmp_path / "models"], 3, _load)
        ctx = step_context(sub, cfg, chain, session, teacher, chat_teacher, store, models)
        results = []
        for step in (1, 2):
            sub.net.advance(1)
            block = await chain.block()
            results.append(await run_step(ctx, step, block, await block_seed(chain, block)))
        u = sub.uids
        for r in results:
            for name in ("teacher", "student"):
                assert len(r.causes[u[name]]) == 3
            assert "validator_error" not in {c for cs in r.causes.values() for c in cs}
        assert set(results[-1].causes[u["teacher"]]) == {"ok"}
        # every prompt came from the file, rendered with the template; none repeated
        asked = [p for step in (1, 2) for p in store.step_prompts(step)]
        assert {p.source for p in asked} == {str(rows)}
        assert {p.dataset_digest for p in asked} == {dataset_digest(rows)}
        assert len({p.prompt_digest for p in asked}) == 6
        assert ctx.prompts is not None
        rendered = ctx.prompts.select("0x00", 1).token_ids[0]
        assert ctx.tokenizer.decode(rendered, skip_special_tokens=False).startswith("<bos>user: ")
        await teacher.close()
        await models.close()
        store.close()
