"""Keeping the endpoint the chain announces for this miner equal to where it really listens.

Validators only know a miner by its on-chain axon. It can go stale: another process with the
same hotkey announced its own port and then stopped, or the chain dropped the announcement.
:class:`EndpointKeeper` compares the metagraph's axon for this hotkey with ``(ip, port)`` every
time the miner reads the metagraph anyway (its caller-policy refresh) and announces again when
they differ, at most once per ``min_interval`` seconds (the chain rate-limits serving).
:func:`bind_mismatch` says, at startup, when the bind address cannot be what is announced.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from subnet.chain.protocol import Chain
from subnet.chain.types import MetagraphView
from subnet.errors import ChainError

log = logging.getLogger("subnet.miner.endpoint")
WILDCARDS = ("", "0.0.0.0", "::")


def bind_mismatch(host: str, announced_ip: str, port: int) -> str | None:
    """A warning when validators, connecting to the announced address, cannot reach ``host``."""
    if host in WILDCARDS or host == announced_ip:
        return None
    try:
        both_loopback = (
            ipaddress.ip_address(host).is_loopback
            and ipaddress.ip_address(announced_ip).is_loopback
        )
    except ValueError:
        both_loopback = False
    hint = " (on Linux 127.0.0.1 and 127.0.0.2 are different addresses)" if both_loopback else ""
    return (
        f"validators connect to {announced_ip}:{port} (announced on chain) but this miner "
        f"listens only on {host}:{port}{hint}: unless a proxy or port forward maps one to the "
        f"other every query will fail; bind 0.0.0.0 (--host) or announce {host} (--external-ip)"
    )


class EndpointKeeper:
    """Announce ``ip:port`` for ``hotkey`` whenever the chain shows something else."""

    def __init__(
        self,
        chain: Chain,
        netuid: int,
        wallet: Any,
        hotkey: str,
        ip: str,
        port: int,
        *,
        min_interval: float,
        on_announce: Callable[[str], None] = lambda reason: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chain, self.netuid, self.wallet, self.hotkey = chain, netuid, wallet, hotkey
        self.ip, self.port = ip, port
        self.min_interval = min_interval
        self.on_announce = on_announce
        self.clock = clock
        self.last_try: float | None = None

    def announced(self, mg: MetagraphView) -> tuple[str, int] | None:
        me = mg.by_hotkey(self.hotkey)
        if me is None or me.axon is None:
            return None
        return (me.axon.ip, int(me.axon.port))

    async def ensure(self, mg: MetagraphView, *, startup: bool = False) -> bool:
        """Announce if the chain's axon differs; True when an announcement was made.

        At startup a chain error propagates (the miner cannot serve unseen); later it is a
        WARNING and the next check tries again.
        """
        current = self.announced(mg)
        if current == (self.ip, self.port):
            return False
        now = self.clock()
        if not startup and self.last_try is not None and now - self.last_try < self.min_interval:
            return False
        self.last_try = now
        if not startup:
            shown = "nothing" if current is None else f"{current[0]}:{current[1]}"
            log.warning(
                "the chain announces %s for this miner, not %s:%d: announcing again",
                shown,
                self.ip,
                self.port,
            )
        try:
            await self.chain.serve(self.netuid, self.wallet, self.ip, self.port)
        except ChainError as e:
            if startup:
                raise
            log.warning("re-announcing %s:%d failed (tried again later): %s", self.ip, self.port, e)
            return False
        self.on_announce("startup" if startup else "changed")
        return True
