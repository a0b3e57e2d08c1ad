"""Error types that both sides can catch.

The SDK's ``Substrate`` contract says reads raise ``bittensor.ChainError`` and a failed transport
``bittensor.RpcConnectionError``; the project's boundary catches ``subnet.errors.ChainError``.
Each devnet error is both, so it surfaces correctly through ``bittensor.Client`` and through
project code alike.
"""

from __future__ import annotations

import bittensor as bt

from subnet.errors import ChainConnectionError, ChainError


class DevnetChainError(bt.ChainError, ChainError):  # type: ignore[misc]
    """The devnet refused a read, a call or an item it does not model (``name`` says which)."""

    def __init__(self, message: str, name: str = "") -> None:
        bt.ChainError.__init__(self, message, name or None)
        self.name = name


class DevnetUnavailable(bt.RpcConnectionError, ChainConnectionError):
    """The devnet's state file could not be read or written (locked, gone, corrupt): the
    devnet's equivalent of an unreachable node, so callers retry it the same way."""

    def __init__(self, message: str) -> None:
        ChainConnectionError.__init__(self, message, "DevnetState")
