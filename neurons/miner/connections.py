"""Connection-level limits aiohttp's server does not have: a header deadline and connection caps.

aiohttp reads request headers for as long as a peer cares to trickle them (its keep-alive timer
only closes a connection whose *handler* is idle, and starts at an hour), and accepts every
connection the kernel hands it. Before any authentication is possible, that lets anyone hold
sockets and memory for free. :class:`ConnectionGuard` sits between the listening socket and
aiohttp's per-connection protocol:

* at most ``max_connections`` open connections in all, and ``max_per_source`` from one source
  address; a connection over either cap gets ``503`` and is closed before aiohttp sees it;
* a connection's request headers must be complete ``header_timeout`` seconds after it opened
  (or, on a kept-alive connection, after the first byte of its next request), else ``408`` and
  close. The app's middleware tells the guard when a request's handler starts and ends
  (:meth:`ConnectionGuard.request_started` / :meth:`~ConnectionGuard.request_finished`).

Bodies are bounded separately (``miner.body_timeout``, in the route, before auth).
:class:`GuardedRunner` is an ``AppRunner`` whose sites accept through the guard.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Length: 0\r\n\r\n"
)
HEADERS_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    max_connections: int = 1024
    max_per_source: int = 128


class _Guarded(asyncio.Protocol):
    """One connection: admitted or refused, its header clock, then aiohttp's own protocol."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = inner
        self.transport: asyncio.Transport | None = None
        self.source = ""
        self.busy = False  # a request's handler is running
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        reason = self.guard.admit(self.source)
        if reason is not None:
            self.inner = None  # aiohttp never sees it
            self.guard.on_refused(reason)
            transport.write(REFUSED)
            transport.close()
            return
        self.guard.opened(self)
        self.arm()
        assert self.inner is not None
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if not self.busy and self.timer is None:
            self.arm()  # the first byte of the next request on a kept-alive connection
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is None:
            return
        self.disarm()
        self.guard.closed(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def arm(self) -> None:
        self.disarm()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.guard.limits.header_timeout, self._headers_late)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _headers_late(self) -> None:
        self.timer = None
        if self.busy or self.transport is None or self.transport.is_closing():
            return
        self.guard.on_timeout()
        self.transport.write(HEADERS_TIMED_OUT)
        self.transport.close()


class ConnectionGuard:
    """Counts connections per source, refuses over the caps, closes slow-header connections.

    ``on_refused(reason)`` and ``on_timeout()`` are metric hooks; ``reason`` is
    ``max_connections`` or ``max_per_source``.
    """

    def __init__(
        self,
        limits: ConnectionLimits,
        *,
        on_refused: Callable[[str], None] = lambda reason: None,
        on_timeout: Callable[[], None] = lambda: None,
    ) -> None:
        self.limits = limits
        self.on_refused = on_refused
        self.on_timeout = on_timeout
        self.per_source: Counter[str] = Counter()
        self._by_transport: dict[int, _Guarded] = {}

    @property
    def open(self) -> int:
        return len(self._by_transport)

    def admit(self, source: str) -> str | None:
        """None to admit a new connection from ``source``, else why it is refused."""
        if self.open >= self.limits.max_connections:
            return "max_connections"
        if self.per_source[source] >= self.limits.max_per_source:
            return "max_per_source"
        return None

    def opened(self, conn: _Guarded) -> None:
        self._by_transport[id(conn.transport)] = conn
        self.per_source[conn.source] += 1

    def closed(self, conn: _Guarded) -> None:
        if self._by_transport.pop(id(conn.transport), None) is None:
            return
        self.per_source[conn.source] -= 1
        if self.per_source[conn.source] <= 0:
            del self.per_source[conn.source]

    def request_started(self, transport: Any) -> None:
        """A request's headers are complete and its handler runs: stop its header clock."""
        conn = self._by_transport.get(id(transport))
        if conn is not None:
            conn.busy = True
            conn.disarm()

    def request_finished(self, transport: Any) -> None:
        """Idle again: the next request's first byte starts a new header clock."""
        conn = self._by_transport.get(id(transport))
        if conn is not None:
            conn.busy = False

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner())


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose sites hand every new connection to ``guard`` first."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    @property
    def server(self) -> Any:  # what sites pass to loop.create_server
        inner = super().server
        return None if inner is None else self.guard.factory(inner)
