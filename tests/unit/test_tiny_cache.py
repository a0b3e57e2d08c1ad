"""Build-once cache directories and the tiny world's tokenizer (fast parts of distill.tiny)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from distill.cache import CACHE_ENV, cache_root, ensure_dir
from distill.tasks import generate_tasks, iter_tasks, render
from distill.tiny import DISTILLED, TinyRecipe, TinyWorld
from distill.tokenizer import (
    BOS_ID,
    EOS_ID,
    build_tokenizer,
    encode_answer,
    encode_prompt,
)


def test_cache_root_follows_the_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root().name == "distill-subnet"


def test_ensure_dir_builds_once(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(d: Path) -> None:
        calls.append(d)
        (d / "x").write_text(str(len(calls)))

    final = tmp_path / "thing"
    assert ensure_dir(final, build) is True
    assert ensure_dir(final, build) is False
    assert len(calls) == 1 and (final / "x").read_text() == "1"
    assert ensure_dir(final, build, force=True) is True
    assert (final / "x").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing", "thing.lock"]


def test_failed_build_leaves_nothing_and_keeps_the_old_copy(tmp_path: Path) -> None:
    def boom(d: Path) -> None:
        (d / "half").write_text("partial")
        raise RuntimeError("out of disk")

    final = tmp_path / "thing"
    with pytest.raises(RuntimeError, match="out of disk"):
        ensure_dir(final, boom)
    assert not final.exists()
    ensure_dir(final, lambda d: (d / "ok").write_text("1"))
    with pytest.raises(RuntimeError):
        ensure_dir(final, boom, force=True)
    assert (final / "ok").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing", "thing.lock"]


async def test_world_registers_models(tmp_path: Path) -> None:
    world = TinyWorld(root=tmp_path)
    assert world.distilled is None
    calls: list[Path] = []

    async def build(d: Path) -> None:
        calls.append(d)
        (d / "config.json").write_text("{}")

    path = await world.ensure_model(DISTILLED, build)
    assert path == world.distilled_path() == world.distilled
    assert await world.ensure_model(DISTILLED, build) == path and len(calls) == 1  # built once
    await world.ensure_model(DISTILLED, build, force=True)
    assert len(calls) == 2 and (path / "config.json").is_file()
    with pytest.raises(ValueError, match="bad model name"):
        await world.ensure_model("../escape", build)


async def test_a_cached_build_in_progress_elsewhere_is_waited_for(tmp_path: Path) -> None:
    """The async lock polls: the event loop keeps running while another holder builds."""
    from distill.cache import async_file_lock, ensure_dir_async

    final = tmp_path / "thing"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def build(d: Path) -> None:
        (d / "ok").write_text("1")

    task = asyncio.create_task(ticker())
    async with async_file_lock(final.with_name("thing.lock"), poll=0.01):
        waiter = asyncio.create_task(ensure_dir_async(final, build))
        for _ in range(20):  # the waiter cannot get the lock while we hold it
            await asyncio.sleep(0.01)
        assert not waiter.done() and not final.exists()
    assert await waiter is True and (final / "ok").read_text() == "1"
    task.cancel()
    assert ticks > 10


def test_recipe_hash_tracks_the_recipe() -> None:
    base = TinyRecipe()
    assert base.digest() == TinyRecipe().digest()
    assert base.digest() != TinyRecipe(threads=2).digest()
    assert len(base.digest()) == 16


def test_tokenizer_is_deterministic_and_splits_at_the_answer() -> None:
    texts = [render(t) for t in itertools.islice(iter_tasks("tok"), 3000)]
    a, b = build_tokenizer(texts, 512), build_tokenizer(texts, 512)
    assert a.to_str() == b.to_str()
    for t in generate_tasks("split", 50):
        assert t.answer is not None
        prompt, answer = encode_prompt(a, t.prompt), encode_answer(a, t.answer)
        assert prompt[0] == BOS_ID and answer[-1] == EOS_ID
        # Tokenizing the whole text gives the same ids: the boundary never merges.
        assert a.encode(t.prompt + t.answer).ids == prompt + answer[:-1]
        assert a.decode(answer) == t.answer
