"""Shared helpers for the devnet tests: disk-free dev wallets and a ready subnet."""

from __future__ import annotations

from dataclasses import dataclass

from bittensor.sp_core import Keypair


@dataclass
class DevWallet:
    """A ``bittensor.KeyedWallet`` made from dev URIs (no files, no passwords)."""

    coldkey: Keypair
    coldkeypub: Keypair
    hotkey: Keypair

    @classmethod
    def of(cls, name: str) -> DevWallet:
        cold = Keypair.create_from_uri(f"//{name}")
        return cls(cold, cold, Keypair.create_from_uri(f"//{name}//hot"))

    @property
    def cold(self) -> str:
        return str(self.coldkey.ss58_address)

    @property
    def hot(self) -> str:
        return str(self.hotkey.ss58_address)


class WrongSigner:
    """Claims one address but signs with another key: the chain must reject it."""

    def __init__(self, claimed: Keypair, actual: Keypair) -> None:
        self.ss58_address = claimed.ss58_address
        self.public_key = claimed.public_key
        self.crypto_type = claimed.crypto_type
        self._actual = actual

    def sign(self, payload: bytes) -> bytes:
        return bytes(self._actual.sign(payload))
