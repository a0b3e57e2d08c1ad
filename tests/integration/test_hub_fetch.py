"""Committed models with an ``hf:<repo>@<commit>`` source, through the real ``huggingface_hub``
client against a local server that answers the way the hub does (``_hub_server.py``).

The suite runs with ``HF_HUB_OFFLINE=1`` (tests/conftest.py); the library reads it once at
import, so these tests switch its offline flag off for themselves only (``monkeypatch``,
restored afterwards), and one test checks that with the flag on the fetch fails with a clear
reason instead of reaching anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from distill.identity import ModelSource, model_digest
from distill.manifest import tokenizer_digest
from neurons.validator.diskcache import DiskCache
from neurons.validator.fetch import FetchState, ModelFetcher
from neurons.validator.sources import FetchTarget, HfSource
from tests.integration._hub_server import HubRepo, serve_hub

pytestmark = pytest.mark.slow
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def _repo(tiny, tmp_path: Path) -> HubRepo:
    folder = tmp_path / "repo"
    shutil.copytree(tiny.undistilled, folder)
    (folder / "README.md").write_text("a model card: not a covered file, never fetched\n")
    return HubRepo("tiny-org/student", COMMIT, folder)


async def _fetch(fetcher: ModelFetcher, target: FetchTarget):
    fetcher.want(target)
    assert await fetcher.wait([target.digest], 60)
    return fetcher.status(target.digest)


async def test_a_pinned_hub_repo_is_fetched_with_huggingface_hub_and_verified(
    tiny, tmp_path, online
):
    repo = _repo(tiny, tmp_path)
    digest = model_digest(repo.folder)
    async with serve_hub(repo) as endpoint:
        fetcher = ModelFetcher(DiskCache(tmp_path / "cache", 1 << 30), {"hf": HfSource(endpoint)})
        status = await _fetch(fetcher, FetchTarget(digest, ModelSource("hf", repo.repo_id, COMMIT)))
    assert status.state is FetchState.READY, status
    assert status.source == "hf" and status.path is not None
    assert model_digest(status.path) == digest
    assert status.tokenizer_digest == tokenizer_digest(tiny.teacher)
    assert not (status.path / "README.md").exists() and not (status.path / ".cache").exists()
    # What the real client asked: the tree at the pinned commit, then HEAD and GET per covered
    # file at that commit (never a branch name, never the model card).
    asked = {(m, p) for m, p in repo.requests}
    assert ("GET", f"/api/models/{repo.repo_id}/tree/{COMMIT}") in asked
    covered = sorted(p.name for p in repo.folder.iterdir() if p.name != "README.md")
    for name in covered:
        assert ("GET", f"/{repo.repo_id}/resolve/{COMMIT}/{name}") in asked, name
    assert not any("README" in p for _, p in asked)


async def test_a_hub_file_that_changed_after_the_commitment_fails_the_digest(
    tiny, tmp_path, online
):
    repo = _repo(tiny, tmp_path)
    digest = model_digest(repo.folder)
    (repo.folder / "config.json").write_text('{"changed": "after the commitment"}\n')
    async with serve_hub(repo) as endpoint:
        fetcher = ModelFetcher(DiskCache(tmp_path / "cache", 1 << 30), {"hf": HfSource(endpoint)})
        status = await _fetch(fetcher, FetchTarget(digest, ModelSource("hf", repo.repo_id, COMMIT)))
    assert status.state is FetchState.FAILED and status.reason == "digest_mismatch", status
    assert fetcher.cache.path(digest) is None
    assert not fetcher.cache.partial_dir(digest).exists()  # nothing unverified is kept


async def test_an_unknown_revision_is_not_found(tiny, tmp_path, online):
    repo = _repo(tiny, tmp_path)
    async with serve_hub(repo) as endpoint:
        fetcher = ModelFetcher(DiskCache(tmp_path / "cache", 1 << 30), {"hf": HfSource(endpoint)})
        other = "f" * 40
        status = await _fetch(
            fetcher, FetchTarget(model_digest(repo.folder), ModelSource("hf", repo.repo_id, other))
        )
    assert status.state is FetchState.FAILED and status.reason == "not_found", status


async def test_with_the_hub_switched_off_the_fetch_fails_offline_and_reaches_nothing(
    tiny, tmp_path
):
    repo = _repo(tiny, tmp_path)
    async with serve_hub(repo) as endpoint:
        fetcher = ModelFetcher(DiskCache(tmp_path / "cache", 1 << 30), {"hf": HfSource(endpoint)})
        status = await _fetch(
            fetcher, FetchTarget(model_digest(repo.folder), ModelSource("hf", repo.repo_id, COMMIT))
        )
    assert status.state is FetchState.FAILED and status.reason == "offline", status
    assert repo.requests == []
