"""Prometheus collectors, one class per neuron, each with its own ``CollectorRegistry``.

No global registry: two miners in one process (tests, the localnet) never share counters, and
``render()`` exposes exactly one node's series. Label values are bounded (routes, statuses,
cause codes, uids), never hotkeys or free text.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_TPS_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class NodeMetrics:
    """One node's own registry and its text exposition (shared by miner and validator)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@contextlib.asynccontextmanager
async def serve_metrics(
    metrics: NodeMetrics, host: str, port: int, *, keys: str
) -> AsyncIterator[int | None]:
    """Serve ``GET /metrics`` on ``host:port`` (port 0: off) for the body of the ``with``.

    Yields the bound port (None when off). A port that cannot be bound is a ConfigError naming
    ``keys`` (the config keys of the address).
    """
    from subnet.listen import bound_port, start_site

    if port <= 0:
        yield None
        return

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await start_site(runner, host, port, keys=keys)
        yield bound_port(runner)
    finally:
        await runner.cleanup()


class MinerMetrics(NodeMetrics):
    """What a miner operator (and the lead's dashboards) watch."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.requests = Counter(
            "miner_requests",
            "Requests by route, HTTP status and cause code",
            ("route", "status", "cause"),
            registry=r,
        )
        self.auth_failures = Counter(
            "miner_auth_failures",
            "Rejected authentication by cause",
            ("cause",),
            registry=r,
        )
        self.caller_requests = Counter(
            "miner_caller_requests",
            "Completions requests by authenticated caller uid",
            ("uid",),
            registry=r,
        )
        self.latency = Histogram(
            "miner_request_seconds",
            "Request latency by route",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "miner_time_to_first_token_seconds",
            "Time from admission to the first token sent",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "miner_tokens_per_second",
            "Completion tokens per second, per request",
            buckets=_TPS_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "miner_completion_tokens",
            "Completion tokens generated",
            registry=r,
        )
        self.queue_depth = Gauge(
            "miner_queue_depth",
            "Requests waiting for an engine slot",
            registry=r,
        )
        self.in_flight = Gauge(
            "miner_in_flight",
            "Requests holding an engine slot",
            registry=r,
        )
        self.metagraph_age = Gauge(
            "miner_metagraph_refresh_timestamp",
            "Unix time of the last caller-policy refresh",
            registry=r,
        )
        self.metagraph_errors = Counter(
            "miner_metagraph_refresh_errors",
            "Failed caller-policy refreshes",
            registry=r,
        )
        self.connections = Gauge(
            "miner_open_connections",
            "Open HTTP connections on the serving port",
            registry=r,
        )
        self.connections_refused = Counter(
            "miner_connections_refused",
            "Connections refused at accept (max_connections, max_per_source)",
            ("reason",),
            registry=r,
        )
        self.header_timeouts = Counter(
            "miner_header_timeouts",
            "Connections closed because their request headers came too slowly",
            registry=r,
        )
        self.endpoint_announcements = Counter(
            "miner_endpoint_announcements",
            "Endpoint announcements on chain by reason (startup, changed)",
            ("reason",),
            registry=r,
        )
