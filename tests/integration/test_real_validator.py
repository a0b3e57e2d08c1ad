"""Validator steps on the real world: 129,280-id distributions, chat prompts, EOS lists.

Real miners (the miner app on loopback, hf engine, the devnet) serve the real world's teacher,
its undistilled student, and two cheats; the validator asks the world's held-out chat prompts
(``prompts.jsonl`` through ``validator.prompt_sources``, rendered with the teacher's chat
template) and must score the honest miners, order them by how close they are to the teacher,
and catch the cheats, exactly as on the tiny world.
"""

from __future__ import annotations

import aiohttp
import pytest

from distill import real_chat
from distill.tiny_spec import TinyWorld
from neurons.validator.main import block_seed
from neurons.validator.spotcheck import ModelCache
from neurons.validator.step import run_step
from neurons.validator.store import Store, StoreReader
from scoring.causes import Cause
from subnet.chain.network import open_chain
from subnet.config import load_config
from subnet.engine import load_engine
from tests.integration._validator_kit import make_subnet, running_miners, step_context

pytestmark = pytest.mark.slow

NAMES = ("teacher", "student", "wrong", "fabricated")


async def test_steps_on_the_real_world_score_honest_miners_and_catch_cheats(
    tmp_path, real: TinyWorld
) -> None:
    sub = make_subnet(real, tmp_path)
    cfg = load_config(
        None,
        overrides={
            "validator.tasks_per_step": 3,
            "validator.max_tokens": 12,
            "validator.query_timeout": 60.0,
            "validator.engine": "hf",
            "validator.prompt_sources": str(real.root / "prompts.jsonl"),
            "verify.spot_check_fraction": 1.0,
            "validator.state_dir": str(tmp_path / "vs"),
            "weights.ema_alpha": 0.5,
        },
        env={},
    )
    async with (
        running_miners(sub, tmp_path, names=NAMES),
        open_chain(sub.network) as chain,
        aiohttp.ClientSession() as session,
    ):
        teacher = load_engine("hf", sub.zoo["teacher"])
        assert teacher.info.vocab_size == real_chat.VOCAB_SIZE
        assert teacher.info.eos_token_ids == (real_chat.EOS_ID, real_chat.EOT_ID)
        store = Store(tmp_path / "vs" / "validator.sqlite")
        models = ModelCache([tmp_path / "models"], 3, _load)
        ctx = step_context(sub, cfg, chain, session, teacher, sub.zoo["teacher"], store, models)
        results = []
        for step in (1, 2):
            sub.net.advance(1)
            block = await chain.block()
            results.append(await run_step(ctx, step, block, await block_seed(chain, block)))
        u, last = sub.uids, results[-1]
        assert ctx.prompts is not None  # loaded at the first step from the config
        (source,) = ctx.prompts.sources
        assert source.file is not None and source.file.chat
        assert len(source.ids) == real.info()["heldout_questions"]
        assert {ids[0] for ids in source.ids} == {real_chat.BOS_ID}
        for r in results:
            assert set(r.causes[u["teacher"]]) == {"ok"}, r.causes
            assert set(r.causes[u["student"]]) == {"ok"}, r.causes
        assert last.ema[u["teacher"]] > last.ema[u["student"]] > 0
        caught = {Cause.DIST_MISMATCH, Cause.FABRICATED, Cause.PREMATURE_STOP, Cause.REFUSE_STOP}
        for name in ("wrong", "fabricated"):
            assert set(results[0].causes[u[name]]) <= caught and results[0].causes[u[name]]
            assert last.ema[u[name]] == 0.0
        await teacher.close()
        await models.close()
        store.close()
    with StoreReader(tmp_path / "vs" / "validator.sqlite") as db:
        assert db.prompt_sources() == {str(real.root / "prompts.jsonl"): 6}


async def _load(path):
    return load_engine("hf", path)
