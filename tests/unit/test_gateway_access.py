"""The gateway's keys (real SQLite): stored hashed, revoked across connections, quotas reserved
and charged, rate limits with an injected clock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from neurons.gateway.access import Access, bearer
from neurons.gateway.errors import GatewayError
from neurons.gateway.keys import Attempt, KeyStore, key_hash
from subnet.errors import ConfigError, StateError


def _store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "gw" / "gateway.sqlite")


def test_keys_are_stored_hashed_and_shown_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    secret, key = store.create("alice", rps=2.0, burst=5, token_quota=100)
    assert secret.startswith("sk-") and len(secret) > 40
    assert key.prefix == secret[:10] and key.active and key.tokens_used == 0
    store.close()
    raw = (tmp_path / "gw" / "gateway.sqlite").read_bytes()
    assert secret.encode() not in raw  # never the key itself
    rows = sqlite3.connect(tmp_path / "gw" / "gateway.sqlite").execute("SELECT sha256 FROM keys")
    assert [r[0] for r in rows] == [key_hash(secret)]
    again = _store(tmp_path)
    assert again.lookup(secret) == key and again.lookup(secret + "x") is None


def test_revoke_by_id_prefix_or_key_and_the_errors(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _, ka = store.create("a", rps=1.0, burst=1, token_quota=0)
    _, kb = store.create("b", rps=1.0, burst=1, token_quota=0)
    c, _ = store.create("c", rps=1.0, burst=1, token_quota=0)
    assert not store.revoke(str(ka.id)).active
    assert not store.revoke(kb.prefix).active
    assert not store.revoke(c).active  # the whole key works too
    with pytest.raises(ConfigError, match="no key '99'"):
        store.revoke("99")
    with pytest.raises(ConfigError, match="names 3 keys"):
        store.revoke("sk-")
    with pytest.raises(ConfigError, match="needs a name"):
        store.create(" ", rps=1.0, burst=1, token_quota=0)
    with pytest.raises(ConfigError, match="--rps > 0"):
        store.create("x", rps=0.0, burst=1, token_quota=0)


def test_a_revocation_in_another_process_is_seen_at_the_next_request(tmp_path: Path) -> None:
    serving = _store(tmp_path)
    access = Access(serving)
    secret, key = serving.create("k", rps=10.0, burst=10, token_quota=0)
    headers = {"Authorization": f"Bearer {secret}"}
    assert access.authenticate(headers).id == key.id
    cli = _store(tmp_path)  # the `keys revoke` command's own connection
    cli.revoke(str(key.id))
    with pytest.raises(GatewayError) as e:
        access.authenticate(headers)
    assert (e.value.failure.status, e.value.failure.code) == (401, "revoked_api_key")


@pytest.mark.parametrize(
    ("header", "code"),
    [("", "missing_api_key"), ("Basic abc", "missing_api_key"), ("Bearer ", "missing_api_key")],
)
def test_a_missing_or_malformed_authorization_is_401(header: str, code: str) -> None:
    with pytest.raises(GatewayError) as e:
        bearer({"Authorization": header} if header else {})
    assert (e.value.failure.status, e.value.failure.code) == (401, code)


def test_quota_reservations_never_overrun_and_charge_what_was_used(tmp_path: Path) -> None:
    store = _store(tmp_path)
    access = Access(store)
    secret, _ = store.create("q", rps=10.0, burst=10, token_quota=100)
    key = store.lookup(secret)
    assert key is not None
    first = access.reserve(key, 60)
    with pytest.raises(GatewayError) as e:  # 40 left while the first is in flight
        access.reserve(key, 50)
    assert (e.value.failure.status, e.value.failure.code) == (429, "quota_exceeded")
    assert "40 of 100 tokens left" in e.value.failure.message
    second = access.reserve(key, 40)
    access.settle(first, 25)  # used less than it reserved: the rest is free again
    access.settle(second, 40)
    key = store.lookup(secret)
    assert key is not None and key.tokens_used == 65 and key.requests == 2
    access.reserve(key, 35)
    with pytest.raises(GatewayError):
        access.reserve(key, 1)
    unlimited, _ = store.create("u", rps=10.0, burst=10, token_quota=0)
    k = store.lookup(unlimited)
    assert k is not None and access.reserve(k, 10**9).reserved == 10**9


def test_rate_limit_buckets_refill_with_the_clock(tmp_path: Path) -> None:
    now = [0.0]
    store = _store(tmp_path)
    access = Access(store, clock=lambda: now[0])
    secret, _ = store.create("r", rps=2.0, burst=2, token_quota=0)
    key = store.lookup(secret)
    assert key is not None
    access.rate(key)
    access.rate(key)
    with pytest.raises(GatewayError) as e:
        access.rate(key)
    f = e.value.failure
    assert (f.status, f.code) == (429, "rate_limited") and f.retry_after == pytest.approx(0.5)
    now[0] = 0.5
    access.rate(key)  # one request's worth came back


def test_usage_per_miner_is_recorded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.record(
        [
            Attempt("r1", 1, 3, "hk3", "http_error", 5, 2, 0.1, 0.5),
            Attempt("r1", 1, 4, "hk4", "ok", 5, 6, 0.2, 1.0, organic=True),
            Attempt("r2", 1, 4, "hk4", "ok", 5, 4, None, 0.5),
        ]
    )
    assert [a.outcome for a in store.attempts("r1")] == ["http_error", "ok"]
    usage = {u.uid: u for u in store.usage()}
    assert usage[3].requests == 1 and usage[3].ok == 0
    assert usage[4].requests == 2 and usage[4].ok == 2 and usage[4].completion_tokens == 10
    assert usage[4].mean_latency_s == pytest.approx(0.75) and usage[4].organic == 1


def test_a_database_that_is_not_one_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.sqlite"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StateError, match="cannot open the gateway database"):
        KeyStore(bad)
