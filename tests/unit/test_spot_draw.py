"""Spot-check draws from the validator's secret: unpredictable without it, reproducible with it,
published before use and revealed only once their epoch is over."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from neurons.validator.draw import SpotDraws, draw_value, epoch_of, picked, secret_commitment
from neurons.validator.store import Store, StoreReader

SECRET = bytes(range(32))


def _tokens():
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def test_the_draw_is_a_function_of_secret_seed_participant_and_task() -> None:
    assert picked(SECRET, "0xab", "3", "t1", 0.5) == picked(SECRET, "0xab", "3", "t1", 0.5)
    values = {draw_value(SECRET, "0xab", str(uid), "t1") for uid in range(50)}
    assert len(values) == 50 and all(0.0 <= v < 1.0 for v in values)
    other = bytes(32)
    differs = sum(
        picked(SECRET, "0xab", str(u), "t", 0.5) != picked(other, "0xab", str(u), "t", 0.5)
        for u in range(200)
    )
    assert 60 < differs < 140  # another secret draws other answers (about half differ)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_the_draw_checks_the_configured_fraction(fraction: float) -> None:
    n = 20_000
    hits = sum(picked(SECRET, "seed", str(i % 97), f"task{i}", fraction) for i in range(n))
    assert abs(hits / n - fraction) < 0.015


def test_fraction_zero_and_one() -> None:
    assert not any(picked(SECRET, "s", str(u), "t", 0.0) for u in range(100))
    assert all(picked(SECRET, "s", str(u), "t", 1.0) for u in range(100))


def test_epochs() -> None:
    assert [epoch_of(b, 10) for b in (0, 9, 10, 25)] == [0, 0, 1, 2]
    with pytest.raises(ValueError):
        epoch_of(5, 0)


def test_secrets_are_published_ahead_reused_and_revealed_after_their_epoch(tmp_path: Path) -> None:
    db = tmp_path / "v.sqlite"
    store = Store(db)
    draws = SpotDraws(store, 10, token=_tokens())
    first = draws.for_block(12)  # epoch 1: its secret and epoch 2's are published now
    assert first.epoch == 1 and first.commitment == secret_commitment(first.secret)
    with StoreReader(db) as r:
        published = {s.epoch: s for s in r.spot_secrets()}
    assert set(published) == {1, 2}
    assert all(s.secret is None and s.published_block == 12 for s in published.values())
    assert draws.for_block(19).secret == first.secret  # same epoch, same secret
    store.close()
    # A restart reuses the stored secret: a step redone after a crash draws the same answers.
    store = Store(db)
    again = SpotDraws(store, 10, token=_tokens())
    assert again.for_block(15).secret == first.secret
    nxt = again.for_block(21)  # epoch 2 starts: epoch 1 is over and revealed
    assert nxt.commitment == published[2].commitment and nxt.secret != first.secret
    with StoreReader(db) as r:
        shown = {s.epoch: s for s in r.spot_secrets()}
    assert shown[1].secret == first.secret.hex() and shown[1].revealed_block == 21
    assert shown[2].secret is None and shown[3].secret is None  # current and next stay secret
    store.close()


def test_without_a_store_the_secret_lives_in_memory() -> None:
    draws = SpotDraws(None, 5)
    a, b = draws.for_block(1), draws.for_block(4)
    assert a.secret == b.secret and len(a.secret) == 32
    assert draws.for_block(6).secret != a.secret


def test_a_database_from_before_the_verification_tables_reads_as_empty(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE steps (step INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    with StoreReader(db) as r:
        assert r.spot_secrets() == [] and r.spot_checks() == [] and r.model_status() == []
        assert r.spot_check_counts() == {} and r.evidence_bytes() == 0
