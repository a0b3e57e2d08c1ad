"""The grace rule for committed models (``availability.py``) over the real fetcher and disk
cache, with fake sources (a folder that serves a model, one that refuses): unverified within
the window, ``model_unavailable`` after it, ``wrong_tokenizer`` at once, and no fresh window
for a hotkey that re-commits without ever being verified."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from distill.identity import MINER_SOURCE, ModelIdentity
from distill.manifest import model_manifest
from neurons.validator.availability import Availability, apply_verdicts
from neurons.validator.diskcache import DiskCache
from neurons.validator.fetch import ModelFetcher
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.sources import FetchError, FetchTarget, PlannedFile
from neurons.validator.spotcheck import ModelCache
from scoring.causes import Cause
from subnet.chain.types import Axon, Commitment
from tests.harness.fake_chain import metagraph, neuron


def make_model(root: Path, weights: bytes, tokenizer: str = '{"model": {}}') -> Path:
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(weights)
    (root / "config.json").write_text('{"vocab_size": 10}')
    (root / "tokenizer.json").write_text(tokenizer)
    return root


class FolderSource:
    """Serves the models of ``folders`` (digest -> folder); refuses any other digest."""

    kind = "miner"

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders
        self.asked: list[str] = []

    async def plan(self, target: FetchTarget) -> list[PlannedFile]:
        self.asked.append(target.digest)
        folder = self.folders.get(target.digest)
        if folder is None:
            raise FetchError("refused", "the miner refused (HTTP 403)", retry=False)
        return [PlannedFile(f.path, f.size, f.sha256) for f in model_manifest(folder).files]

    async def download(self, target: FetchTarget, files: Sequence[PlannedFile], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(self.folders[target.digest] / f.path, dest / f.path)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


async def _load(path: Path):
    raise AssertionError("nothing is loaded here")


def _world(tmp_path: Path, folders: dict[str, Path]):
    clock = Clock()
    source = FolderSource(folders)
    fetcher = ModelFetcher(DiskCache(tmp_path / "cache", 1 << 20), {"miner": source}, clock=clock)
    teacher = model_manifest(make_model(tmp_path / "teacher", b"T" * 50)).tokenizer_digest
    avail = Availability(ModelCache([], 1, _load, fetcher), fetcher, teacher, 3, ValidatorMetrics())
    mg = metagraph("owner", "miner")
    mg = type(mg)(
        mg.netuid,
        mg.block,
        mg.tempo,
        mg.owner_hotkey,
        mg.owner_coldkey,
        (mg.neurons[0], neuron(1, "miner", axon=Axon("127.0.0.2", 9000))),
    )
    return avail, fetcher, source, clock, mg, teacher


def _commit(digest: str, tokenizer: str) -> dict[str, Commitment]:
    ident = ModelIdentity(digest, "m", "local", tokenizer, MINER_SOURCE)
    return {"miner": Commitment(ident.format(), 1)}


async def _step(avail, fetcher, mg, ids, step):
    verdicts = await avail.assess(step, mg, ids, "owner")
    await fetcher.wait([v.digest for v in verdicts.values()], 10)
    return verdicts["miner"]


async def test_unverified_within_the_grace_then_unavailable_and_no_new_window_on_recommit(
    tmp_path: Path,
) -> None:
    avail, fetcher, source, clock, mg, tok = _world(tmp_path, {})
    first, second = "a" * 64, "b" * 64
    seen = [await _step(avail, fetcher, mg, _commit(first, tok), 1)]
    clock.t += 1000  # past any retry backoff
    seen.append(await _step(avail, fetcher, mg, _commit(first, tok), 2))
    # A new digest from a hotkey that was never verified: the window keeps its start (step 1).
    clock.t += 1000
    seen.append(await _step(avail, fetcher, mg, _commit(second, tok), 3))
    clock.t += 1000
    seen.append(await _step(avail, fetcher, mg, _commit(second, tok), 4))
    assert [v.cause for v in seen] == [None, None, None, Cause.MODEL_UNAVAILABLE]
    assert all(v.unverified for v in seen[:3]) and "refused" in seen[-1].detail
    assert source.asked.count(first) == 2 and second in source.asked  # retried after backoff


async def test_a_verified_hotkey_gets_a_fresh_window_for_its_next_model(tmp_path: Path) -> None:
    good = make_model(tmp_path / "good", b"W" * 40)
    digest = model_manifest(good).digest
    avail, fetcher, _, clock, mg, tok = _world(tmp_path, {digest: good})
    v = await _step(avail, fetcher, mg, _commit(digest, tok), 1)
    assert v.unverified  # fetched in the background during step 1
    v = await _step(avail, fetcher, mg, _commit(digest, tok), 2)
    assert v.ready and v.cause is None
    upgrade = "c" * 64  # the miner moves to a model it does not serve (yet)
    for step in (10, 11, 12):
        clock.t += 1000
        v = await _step(avail, fetcher, mg, _commit(upgrade, tok), step)
        assert v.cause is None and v.unverified, v  # a fresh window from step 10
    clock.t += 1000
    v = await _step(avail, fetcher, mg, _commit(upgrade, tok), 13)
    assert v.cause is Cause.MODEL_UNAVAILABLE


async def test_a_foreign_tokenizer_is_refused_at_once_without_fetching(tmp_path: Path) -> None:
    avail, fetcher, source, _, mg, _ = _world(tmp_path, {})
    v = await _step(avail, fetcher, mg, _commit("d" * 64, "e" * 64), 1)
    assert v.cause is Cause.WRONG_TOKENIZER and source.asked == []


async def test_files_whose_tokenizer_is_not_the_teachers_are_refused_once_fetched(
    tmp_path: Path,
) -> None:
    other = make_model(tmp_path / "other", b"O" * 30, tokenizer='{"model": {"v": 1}}')
    digest = model_manifest(other).digest
    avail, fetcher, _, _, mg, _ = _world(tmp_path, {digest: other})
    # A v1 commitment names no tokenizer: only the verified files can tell.
    ids = {"miner": Commitment(f"v1:{digest}:other:local", 1)}
    await _step(avail, fetcher, mg, ids, 1)
    v = await _step(avail, fetcher, mg, ids, 2)
    assert v.cause is Cause.WRONG_TOKENIZER and "files" in v.detail


def test_apply_verdicts_zeroes_only_the_miner_past_its_window() -> None:
    from neurons.validator.availability import ModelVerdict
    from neurons.validator.judge import Judged
    from neurons.validator.miner_client import MinerAnswer
    from neurons.validator.participant import Miner

    a = Judged(MinerAnswer(Miner(1, "hk1"), "t", Cause.OK), 0, digest="a" * 64)
    b = Judged(MinerAnswer(Miner(2, "hk2"), "t", Cause.OK), 0, digest="b" * 64)
    verdicts = {
        "hk1": ModelVerdict(
            "hk1", 1, "a" * 64, "miner", "unavailable", Cause.MODEL_UNAVAILABLE, "x"
        ),
        "hk2": ModelVerdict("hk2", 2, "b" * 64, "miner", "pending", None, "unverified, grace 1/3"),
    }
    apply_verdicts([a, b], verdicts)
    assert a.cause is Cause.MODEL_UNAVAILABLE and b.ok
    assert b.provenance["model"] == "unverified, grace 1/3"
