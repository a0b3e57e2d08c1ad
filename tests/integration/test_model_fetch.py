"""Committed models fetched from the miners that committed them, on a devnet subnet of real
miner apps (``_validator_kit``): verified into the disk cache, resumed with ranges, kept across
a restart; a miner that refuses or serves changed files costs it ``model_unavailable`` once its
grace window is over, never before."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from distill.identity import MINER_SOURCE, model_digest
from distill.manifest import tokenizer_digest
from neurons.miner.policy import CallerPolicy, Directory, PolicyLimits
from neurons.validator.availability import Availability
from neurons.validator.diskcache import DiskCache
from neurons.validator.fetch import FetchState, ModelFetcher
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.sources import FetchTarget, MinerSource
from neurons.validator.spotcheck import ModelCache
from scoring.causes import Cause
from subnet.chain.network import open_chain
from subnet.engine import load_engine
from tests.integration._validator_kit import NETUID, make_subnet, running_miners

pytestmark = pytest.mark.slow
NAMES = ("teacher", "student", "fabricated")


async def _load(path: Path):
    return load_engine("hf", path)


async def _target(chain, sub, name: str) -> FetchTarget:
    mg = await chain.metagraph(NETUID, max_age_blocks=0)
    n = mg.by_uid(sub.uids[name])
    assert n is not None and n.axon is not None
    return FetchTarget(model_digest(sub.zoo[name]), MINER_SOURCE, n.hotkey, n.axon.url, n.uid)


def _fetcher(session, sub, root: Path) -> ModelFetcher:
    source = MinerSource(session, sub.wallets["vali"], stall_timeout=30.0)
    return ModelFetcher(DiskCache(root, 1 << 30), {"miner": source})


async def test_a_model_is_fetched_from_its_miner_resumed_and_reused_after_restart(
    tiny, tmp_path, caplog
):
    sub = make_subnet(tiny, tmp_path)
    async with (
        running_miners(sub, tmp_path, names=NAMES),
        open_chain(sub.network) as chain,
        aiohttp.ClientSession() as session,
    ):
        target = await _target(chain, sub, "student")
        fetcher = _fetcher(session, sub, tmp_path / "cache")
        # A transfer that broke half way: the next one asks only for the rest (206).
        weights = sub.zoo["student"] / "model.safetensors"
        part = fetcher.cache.partial_dir(target.digest) / "model.safetensors.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        assert fetcher.want(target).state is FetchState.PENDING
        with caplog.at_level(logging.INFO, logger="subnet.miner.access"):
            assert await fetcher.wait([target.digest], 60)
        status = fetcher.status(target.digest)
        assert status.ready and status.source == "miner", status
        assert status.path is not None and model_digest(status.path) == target.digest
        assert status.tokenizer_digest == tokenizer_digest(sub.zoo["teacher"])
        served = [r.getMessage() for r in caplog.records if "/v1/model/files" in r.getMessage()]
        assert any('"status":206' in m for m in served), served
        assert any('"status":200' in m for m in served), served
        await fetcher.close()
    # A restarted validator finds it in the same cache: no source needed, nothing fetched.
    again = ModelFetcher(DiskCache(tmp_path / "cache", 1 << 30), {})
    assert again.want(target).ready and again.in_flight == 0


@pytest.mark.parametrize("fault", ["refuses", "changed_file"])
async def test_an_unfetchable_model_is_unverified_then_model_unavailable_after_grace(
    tiny, tmp_path, fault
):
    sub = make_subnet(tiny, tmp_path)
    async with (
        running_miners(sub, tmp_path, names=NAMES),
        open_chain(sub.network) as chain,
        aiohttp.ClientSession() as session,
    ):
        if fault == "refuses":  # the miner admits no caller to its files (or anything)
            sub.gates["student"].policy = CallerPolicy(Directory({}), PolicyLimits())
            reason = "refused"
        else:  # a weight file rewritten after the miner committed and listed it
            weights = sub.zoo["student"] / "model.safetensors"
            weights.write_bytes(b"\0" * weights.stat().st_size)
            reason = "digest_mismatch"
        fetcher = _fetcher(session, sub, tmp_path / "cache")
        models = ModelCache([], 2, _load, fetcher)
        metrics = ValidatorMetrics()
        grace = 3
        avail = Availability(
            models, fetcher, tokenizer_digest(sub.zoo["teacher"]), grace, metrics, store=None
        )
        mg = await chain.metagraph(NETUID, max_age_blocks=0)
        ids = await chain.identities(NETUID)
        vali = sub.wallets["vali"].hotkey.ss58_address
        hotkeys = {name: mg.neurons[sub.uids[name]].hotkey for name in NAMES}
        seen = []
        for step in range(1, grace + 3):
            verdicts = await avail.assess(step, mg, ids, vali)
            await fetcher.wait(list({v.digest for v in verdicts.values()}), 60)
            student = verdicts[hotkeys["student"]]
            seen.append(student)
            teacher = verdicts[hotkeys["teacher"]]
            assert teacher.cause is None
            if step > 1:  # the honest miners' models arrived during the first step
                assert teacher.ready
        # Within the grace window: scored, unverified; after it: every answer zeroed.
        assert [v.cause for v in seen] == [None] * grace + [Cause.MODEL_UNAVAILABLE] * 2
        assert all(v.unverified for v in seen[:grace])
        assert reason in seen[-1].detail, seen[-1].detail
        status = fetcher.status(seen[-1].digest)
        assert status.state is FetchState.FAILED and status.reason == reason
        uid = str(sub.uids["student"])
        assert metrics.model_ready.labels(uid)._value.get() == 0.0
        assert metrics.model_unavailable.labels(uid, reason)._value.get() >= grace
        await fetcher.close()
        await models.close()
