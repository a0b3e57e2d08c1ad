"""One error type that both sides can catch.

The SDK's ``Substrate`` contract says reads raise ``bittensor.ChainError``; the project's
boundary catches ``subnet.errors.ChainError``. ``DevnetChainError`` is both, so a refused read
surfaces correctly through ``bittensor.Client`` and through project code alike.
"""

from __future__ import annotations

import bittensor as bt

from subnet.errors import ChainError


class DevnetChainError(bt.ChainError, ChainError):  # type: ignore[misc]
    """The devnet refused a read, a call or an item it does not model (``name`` says which)."""

    def __init__(self, message: str, name: str = "") -> None:
        bt.ChainError.__init__(self, message, name or None)
        self.name = name
