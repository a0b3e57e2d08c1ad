"""One error root for the project, split by who must act.

::

    SubnetError
    ├── ConfigError          the operator: a bad key, value or file (one line, no traceback)
    ├── ChainError           the chain or the devnet refused or failed (names the item or call)
    ├── EngineError          the inference engine failed (bad input is EngineInputError)
    ├── ProtocolError        a peer sent something malformed (miner answers, requests)
    └── StateError           local state (SQLite, caches) is missing or corrupt

Boundaries translate foreign exceptions into these with ``raise ... from``; the CLI prints a
``SubnetError`` as one line and exits non-zero.
"""

from __future__ import annotations


class SubnetError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(SubnetError):
    """Bad configuration: unknown key, out-of-range value, unreadable file."""


class ChainError(SubnetError):
    """A chain call failed or was refused; ``name`` is the pallet error or missing item."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class EngineError(SubnetError):
    """The inference engine failed to load or run."""


class ProtocolError(SubnetError):
    """A peer sent something that does not follow the wire protocol."""


class StateError(SubnetError):
    """Local persistent state is missing, corrupt or from another version."""
