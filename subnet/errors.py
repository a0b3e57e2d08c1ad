"""One error root for the project, split by who must act.

::

    SubnetError
    ├── ConfigError          the operator: a bad key, value or file (one line, no traceback)
    ├── ChainError           the chain or the devnet refused or failed (names the item or call)
    │   └── ChainConnectionError  the chain was not reached or did not answer in time
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
    """A chain call failed or was refused; ``name`` is the pallet error or missing item.

    ``transient`` says whether the same call may succeed later (a rate limit lifts, a lost
    connection comes back); callers retry only those, with backoff. Anything else is the
    chain's answer and will be the same next time.
    """

    transient: bool = False

    def __init__(self, message: str, name: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        self.name = name
        self.transient = transient


class ChainConnectionError(ChainError):
    """The chain was not reached or did not answer in time: nothing was decided on chain.

    Transient unless the endpoint refused this client for good (an HTTP 403 policy)."""

    transient = True

    def __init__(self, message: str, name: str = "CONNECTION", *, transient: bool = True) -> None:
        super().__init__(message, name, transient=transient)


class EngineError(SubnetError):
    """The inference engine failed to load or run."""


class ProtocolError(SubnetError):
    """A peer sent something that does not follow the wire protocol."""


class StateError(SubnetError):
    """Local persistent state is missing, corrupt or from another version."""
