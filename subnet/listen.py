"""Start listening on an address, with the one-line errors an operator needs when it fails.

``loop.create_server`` raises ``OSError`` with an errno; an operator needs to know which config
key holds the address and what to do. :func:`start_site` is the one place that translation
lives (the miner's serving port, both neurons' metrics ports).
"""

from __future__ import annotations

import errno

from aiohttp import web

from subnet.errors import ConfigError

_WHY = {
    errno.EADDRINUSE: "address already in use (another process listens there: stop it or pick "
    "another port)",
    errno.EADDRNOTAVAIL: "address not available on this machine (use one of its own addresses, "
    "0.0.0.0 for all, or 127.0.0.1)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


async def start_site(runner: web.BaseRunner, host: str, port: int, *, keys: str) -> web.TCPSite:
    """Start a TCP site on ``host:port``; any bind failure is a ConfigError naming ``keys``."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        why = _WHY.get(e.errno or 0, e.strerror or str(e))
        raise ConfigError(f"cannot listen on {host}:{port} ({keys}): {why}") from None
    return site


def bound_port(runner: web.BaseRunner) -> int:
    """The port a runner's first site listens on (the real one when asked for port 0)."""
    return int(runner.addresses[0][1])
