"""Validator steps on a real network's footing: no local model roots (every committed model is
fetched from the miner that committed it), spot checks drawn from a secret at the default-like
fraction, and an audit afterwards: the revealed secret reproduces exactly the checks drawn."""

from __future__ import annotations

import aiohttp
import pytest

from distill.identity import identity_for
from neurons.validator.draw import picked, secret_commitment
from neurons.validator.main import block_seed
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.spotcheck import ModelCache
from neurons.validator.step import run_step
from neurons.validator.store import Store, StoreReader
from neurons.validator.verifier import build_fetcher, build_verifier
from subnet.chain.network import open_chain
from subnet.config import load_config
from subnet.engine import load_engine
from subnet.wallets import hotkey_address
from tests.integration._validator_kit import NETUID, make_subnet, running_miners, step_context

pytestmark = pytest.mark.slow
FRACTION = 0.5
EPOCH_BLOCKS = 3


async def _load(path):
    return load_engine("hf", path)


async def test_models_come_from_the_miners_and_a_revealed_secret_reproduces_the_checks(
    tiny, tmp_path
):
    sub = make_subnet(tiny, tmp_path)
    cfg = load_config(
        None,
        overrides={
            "validator.teacher": str(sub.zoo["teacher"]),
            "validator.tasks_per_step": 4,
            "validator.max_tokens": 8,
            "validator.query_timeout": 5.0,
            "validator.engine": "hf",
            "validator.state_dir": str(tmp_path / "vs"),
            "validator.secret_epoch_blocks": EPOCH_BLOCKS,
            "validator.model_grace_steps": 2,
            "verify.spot_check_fraction": FRACTION,
            "weights.ema_alpha": 0.5,
        },
        env={},
    )
    async with (
        running_miners(sub, tmp_path, names=("teacher", "student", "fabricated")),
        open_chain(sub.network) as chain,
        aiohttp.ClientSession() as session,
    ):
        wallet = sub.wallets["vali"]
        teacher = load_engine("hf", sub.zoo["teacher"])
        store = Store(tmp_path / "vs" / "validator.sqlite")
        metrics = ValidatorMetrics()
        fetcher = build_fetcher(cfg.validator, wallet, session)
        models = ModelCache([], 3, _load, fetcher)  # no model roots: everything is fetched
        fetcher.protect = models.loaded
        models.pin(identity_for(sub.zoo["teacher"]).digest, teacher)
        verifier = await build_verifier(cfg, chain, store, models, fetcher, metrics)
        ctx = step_context(
            sub,
            cfg,
            chain,
            session,
            teacher,
            sub.zoo["teacher"],
            store,
            models,
            metrics=metrics,
            verifier=verifier,
        )
        await verifier.prefetch(chain, NETUID, ctx.hotkey, 60.0)
        blocks = []
        for step in range(1, 6):
            sub.net.advance(1)
            block = await chain.block()
            blocks.append(block)
            await run_step(ctx, step, block, await block_seed(chain, block))
        await fetcher.close()
        await models.close()
        await teacher.close()
        store.close()
    u = sub.uids
    with StoreReader(tmp_path / "vs" / "validator.sqlite") as r:
        secrets = {s.epoch: s for s in r.spot_secrets()}
        steps = {s.step: s for s in r.steps()}
        checks = r.spot_checks()
        answers = r.answers()
        counts = r.spot_check_counts()
        status = {w.hotkey: w for w in r.model_status()}
    # Every secret was published before any step of its epoch ran; only the epochs that are
    # over are revealed, and a revealed secret matches the commitment published for it.
    current = blocks[-1] // EPOCH_BLOCKS
    assert secrets[current].secret is None and secrets[current + 1].secret is None
    revealed = [e for e, s in secrets.items() if s.secret is not None]
    assert revealed and all(e < current for e in revealed)
    audited = 0
    for step, row in steps.items():
        epoch = row.block // EPOCH_BLOCKS
        assert secrets[epoch].published_block <= row.block
        shown = secrets[epoch].secret
        if shown is None:
            continue
        secret = bytes.fromhex(shown)
        assert secret_commitment(secret) == secrets[epoch].commitment
        expected = {
            (a.who.uid, a.task_id)
            for a in answers
            if a.step == step and picked(secret, row.seed, a.who.key, a.task_id, FRACTION)
        }
        drawn = {(uid, task) for s, uid, _, task, _, e in checks if s == step}
        assert {e for s, *_, e in checks if s == step} <= {epoch}
        assert drawn == expected, step
        audited += 1
    assert audited >= 2
    # All the models came from the miners and were verified before the first step: honest
    # checks all pass, none is unavailable; the fabricating miner fails every check it gets.
    for name in ("student", "fabricated"):
        hotkey = hotkey_address(sub.wallets[name])
        assert status[hotkey].source == "miner" and status[hotkey].state == "ready"
    assert set(counts[u["student"]]) == {"passed"} and set(counts[u["teacher"]]) == {"passed"}
    assert set(counts.get(u["fabricated"], {})) <= {"failed", "skipped"}
    n_checks = sum(sum(c.values()) for c in counts.values())
    assert 0 < n_checks < len(answers)  # a fraction, not everything
