"""The committed-model disk cache: bounded in bytes, least recently used out, kept across
restarts, reconciled with what is really on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurons.validator.diskcache import CacheFull, DiskCache


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def _download(cache: DiskCache, digest: str, size: int, protect: tuple[str, ...] = ()) -> list[str]:
    evicted = cache.reserve(digest, size, protect)
    folder = cache.partial_dir(digest)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"x" * size)
    cache.commit(digest, "miner", "tok")
    return evicted


def test_eviction_is_by_bytes_least_recently_used_first(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 1000, clock=Clock())
    assert _download(cache, "a", 400) == [] and _download(cache, "b", 400) == []
    cache.touch("a")  # a is now more recent than b
    assert _download(cache, "c", 300) == ["b"]
    assert cache.path("b") is None and not (tmp_path / "models" / "b").exists()
    assert cache.path("a") is not None and cache.path("c") is not None
    assert cache.used_bytes == 700
    assert _download(cache, "d", 600, protect=("a",)) == ["c"]  # a is in use: c goes
    assert [e.digest for e in cache.entries()] == ["a", "d"]
    assert cache.used_bytes <= cache.max_bytes


def test_a_model_larger_than_the_cache_or_than_what_can_be_freed_is_refused(tmp_path) -> None:
    cache = DiskCache(tmp_path, 1000, clock=Clock())
    with pytest.raises(CacheFull, match="holds 1000"):
        cache.reserve("huge", 1001)
    _download(cache, "a", 700)
    with pytest.raises(CacheFull):
        cache.reserve("b", 500, protect=("a",))
    assert cache.path("a") is not None


def test_a_restarted_validator_reuses_its_cache_and_drops_what_the_index_does_not_know(
    tmp_path: Path,
) -> None:
    cache = DiskCache(tmp_path, 10_000, clock=Clock())
    _download(cache, "a", 100)
    _download(cache, "b", 200)
    (tmp_path / "models" / "stray").mkdir()  # a crash between the move and the index write
    (tmp_path / "models" / "stray" / "f").write_bytes(b"1")
    half = cache.partial_dir("c")
    half.mkdir(parents=True)
    (half / "model.safetensors.part").write_bytes(b"y" * 50)  # an interrupted download
    again = DiskCache(tmp_path, 10_000)
    assert {e.digest for e in again.entries()} == {"a", "b"}
    b = again.get("b")
    assert b is not None and b.bytes == 200
    assert not (tmp_path / "models" / "stray").exists()
    assert again.used_bytes == 350  # the partial download counts, and it stays to resume
    assert half.exists()


def test_a_missing_folder_or_a_corrupt_index_never_stops_the_validator(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 10_000, clock=Clock())
    _download(cache, "a", 10)
    _download(cache, "b", 10)
    import shutil

    shutil.rmtree(tmp_path / "models" / "a")
    assert {e.digest for e in DiskCache(tmp_path, 10_000).entries()} == {"b"}
    (tmp_path / "index.json").write_text("{not json")
    fresh = DiskCache(tmp_path, 10_000)
    assert fresh.entries() == [] and not (tmp_path / "models" / "b").exists()


def test_stale_partial_downloads_are_evicted_first(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 1000, clock=Clock())
    _download(cache, "a", 300)
    stale = cache.partial_dir("old")
    stale.mkdir(parents=True)
    (stale / "x.part").write_bytes(b"z" * 500)
    assert _download(cache, "b", 400) == []  # room made by dropping the stale partial
    assert not stale.exists() and cache.path("a") is not None
