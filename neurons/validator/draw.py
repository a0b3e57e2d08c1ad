"""Which answers are spot-checked: drawn from a secret of this validator, audited afterwards.

An answer is checked when ``HMAC-SHA256(secret, "<step seed>|<participant>|<task id>")``, read as
a number in [0, 1), is below ``verify.spot_check_fraction``. The step seed is the block hash
every miner knows, but the secret is not: no miner can tell which of its answers will be
recomputed, so fabricating on "the unchecked ones" is a blind bet at the check rate
(``scoring/economics.py`` prices that bet).

Secrets rotate every ``epoch_blocks`` blocks (the subnet tempo by default). Each is published as
its commitment, ``sha256("distill-subnet spot secret v1\\n" + secret)``, in the validator's state
(``StoreReader.spot_secrets``, the source of its public export) an epoch before it is used: the
validator keeps the current and the next epoch's secret, so the next one's commitment is out
while the current one draws. Once an epoch is over its secret is revealed: anyone holding the
commitment, the step seeds and the answers can recompute every draw (:func:`picked`) and see
that the checks were drawn, not aimed. A restart reuses the stored secret, so a step redone
after a crash draws the same answers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from neurons.validator.store import Store

SECRET_DOMAIN = b"distill-subnet spot secret v1\n"
SECRET_BYTES = 32
_SCALE = float(1 << 64)


def secret_commitment(secret: bytes) -> str:
    """The published hash of a draw secret."""
    return hashlib.sha256(SECRET_DOMAIN + secret).hexdigest()


def draw_value(secret: bytes, seed: str, key: str, task_id: str) -> float:
    """The answer's draw in [0, 1): HMAC of (step seed, participant key, task id)."""
    mac = hmac.new(secret, f"{seed}|{key}|{task_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") / _SCALE


def picked(secret: bytes, seed: str, key: str, task_id: str, fraction: float) -> bool:
    """Whether the answer of participant ``key`` (a miner's uid, or ``baseline``) to
    ``task_id`` in the step seeded ``seed`` is spot-checked at ``fraction``."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    return draw_value(secret, seed, key, task_id) < fraction


def epoch_of(block: int, epoch_blocks: int) -> int:
    if epoch_blocks < 1:
        raise ValueError(f"epoch_blocks must be >= 1, got {epoch_blocks}")
    return max(block, 0) // epoch_blocks


@dataclass(frozen=True)
class EpochSecret:
    epoch: int
    secret: bytes
    commitment: str

    def picked(self, seed: str, key: str, task_id: str, fraction: float) -> bool:
        return picked(self.secret, seed, key, task_id, fraction)


class SpotDraws:
    """The validator's draw secrets, kept in its store (see the module docstring).

    Without a store (tests, benchmarks) the secrets live in memory: still secret, just not
    published.
    """

    def __init__(
        self,
        store: Store | None,
        epoch_blocks: int,
        *,
        token: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if epoch_blocks < 1:
            raise ValueError(f"epoch_blocks must be >= 1, got {epoch_blocks}")
        self.store = store
        self.epoch_blocks = epoch_blocks
        self._token = token
        self._memory: dict[int, bytes] = {}
        self._prepared: int | None = None  # the epoch prepare() last ran for

    def prepare(self, block: int) -> None:
        """Make sure the secrets of ``block``'s epoch and the next exist (published now if new)
        and reveal those of finished epochs. Called at startup and before every step."""
        epoch = epoch_of(block, self.epoch_blocks)
        if epoch == self._prepared:
            return  # nothing new within an epoch: no write per step
        self._prepared = epoch
        fresh = [(e, self._token(SECRET_BYTES)) for e in (epoch, epoch + 1)]
        if self.store is None:
            for e, s in fresh:
                self._memory.setdefault(e, s)
            return
        self.store.publish_spot_secrets(
            [(e, s.hex(), secret_commitment(s)) for e, s in fresh], block
        )
        self.store.reveal_spot_secrets(epoch, block)

    def for_block(self, block: int) -> EpochSecret:
        """The secret that draws the checks of a step at ``block``."""
        self.prepare(block)
        epoch = epoch_of(block, self.epoch_blocks)
        if self.store is None:
            secret = self._memory[epoch]
            return EpochSecret(epoch, secret, secret_commitment(secret))
        row = self.store.spot_secret(epoch)
        if row is None:  # prepare() just stored it; only a broken database gets here
            raise RuntimeError(f"no spot-check secret stored for epoch {epoch}")
        secret = bytes.fromhex(row[0])
        return EpochSecret(epoch, secret, row[1])
