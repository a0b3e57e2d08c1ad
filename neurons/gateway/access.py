"""Who may use the gateway and how much: key lookup, per-key rate limits and token quotas.

Rate: a token bucket per key (the key's ``rps`` and ``burst``), in memory. Quota: a request
reserves what it may use at most (prompt + ``max_tokens``) before any miner is asked, so
concurrent requests can never overrun a key's quota; when it ends, the reservation is released
and what it really used is charged to the key in the database (:meth:`KeyStore.charge`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from neurons.gateway.errors import GatewayError
from neurons.gateway.keys import ApiKey, KeyStore

Clock = Callable[[], float]


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> float:
        """0.0 when a request may go now (and takes it), else seconds until one may."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class Grant:
    """An admitted request: its key and the tokens reserved for it."""

    key: ApiKey
    reserved: int


def bearer(headers: Mapping[str, str]) -> str:
    """The API key from ``Authorization: Bearer ...`` (401 when absent or malformed)."""
    value = headers.get("Authorization", "")
    scheme, _, secret = value.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise GatewayError(
            401,
            "missing_api_key",
            "no API key: send Authorization: Bearer <key> (ask the operator for one)",
        )
    return secret.strip()


class Access:
    """Admission for one serving process (see the module docstring)."""

    def __init__(self, store: KeyStore, clock: Clock = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._buckets: dict[int, tuple[tuple[float, int], TokenBucket]] = {}
        self._reserved: dict[int, int] = {}

    def authenticate(self, headers: Mapping[str, str]) -> ApiKey:
        key = self.store.lookup(bearer(headers))
        if key is None:
            raise GatewayError(401, "invalid_api_key", "this API key is not valid")
        if not key.active:
            raise GatewayError(401, "revoked_api_key", "this API key has been revoked")
        return key

    def rate(self, key: ApiKey) -> None:
        """429 ``rate_limited`` with Retry-After when the key's bucket is empty."""
        now = self.clock()
        limits = (key.rps, key.burst)
        held = self._buckets.get(key.id)
        if held is None or held[0] != limits:  # new, or its limits changed
            held = (limits, TokenBucket(key.rps, key.burst, now))
            self._buckets[key.id] = held
        wait = held[1].take(now)
        if wait > 0:
            raise GatewayError(
                429,
                "rate_limited",
                f"rate limit of {key.rps:g} requests/s (burst {key.burst}) reached for this key",
                retry_after=wait,
            )

    def reserve(self, key: ApiKey, tokens: int) -> Grant:
        """Reserve ``tokens`` of the key's quota; 429 ``quota_exceeded`` if they are not left."""
        if key.token_quota > 0:
            left = key.token_quota - key.tokens_used - self._reserved.get(key.id, 0)
            if tokens > left:
                raise GatewayError(
                    429,
                    "quota_exceeded",
                    f"token quota exhausted: {max(left, 0)} of {key.token_quota} tokens left for "
                    f"this key and this request may use {tokens} (prompt + max_tokens)",
                )
        self._reserved[key.id] = self._reserved.get(key.id, 0) + tokens
        return Grant(key, tokens)

    def settle(self, grant: Grant, used: int) -> None:
        """Release the reservation and charge what was used (``used`` <= reserved)."""
        left = self._reserved.get(grant.key.id, 0) - grant.reserved
        if left > 0:
            self._reserved[grant.key.id] = left
        else:
            self._reserved.pop(grant.key.id, None)
        self.store.charge(grant.key.id, min(used, grant.reserved))


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
