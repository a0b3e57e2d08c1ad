"""The gateway's Prometheus series, in its own registry (the ``NodeMetrics`` pattern).

Labels are bounded: routes, statuses, codes (closed sets), uids (at most the subnet size) and
attempt outcomes; never API keys, hotkeys or free text.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from subnet.metrics import NodeMetrics

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GatewayMetrics(NodeMetrics):
    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Requests by route, status and code",
            ("route", "status", "code"),
            registry=r,
        )
        self.latency = Histogram(
            "gateway_request_seconds",
            "Request latency by route",
            ("route",),
            buckets=_LATENCY,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time from admission to the first token sent to the user",
            buckets=_TTFT,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens", "Tokens served, by kind (prompt, completion)", ("kind",), registry=r
        )
        self.attempts = Counter(
            "gateway_miner_attempts",
            "Miner attempts by uid and outcome (ok or the failure's cause)",
            ("uid", "outcome"),
            registry=r,
        )
        self.miner_tokens = Counter(
            "gateway_miner_completion_tokens",
            "Completion tokens delivered per miner uid",
            ("uid",),
            registry=r,
        )
        self.miner_latency = Histogram(
            "gateway_miner_seconds",
            "Whole-answer time of successful attempts per miner uid",
            ("uid",),
            buckets=_LATENCY,
            registry=r,
        )
        self.failovers = Counter(
            "gateway_failovers",
            "Requests that moved to another miner after a failure",
            registry=r,
        )
        self.organic = Counter(
            "gateway_organic_recorded",
            "Signed answers handed to the validator to verify",
            registry=r,
        )
        self.candidates = Gauge(
            "gateway_eligible_miners", "Miners requests may be routed to", registry=r
        )
        self.refresh_errors = Counter(
            "gateway_refresh_errors",
            "Failed reads of the metagraph or the validator's scores",
            registry=r,
        )
        self.refreshed = Gauge(
            "gateway_refresh_timestamp", "Unix time of the last successful refresh", registry=r
        )
        self.in_flight = Gauge("gateway_in_flight", "Requests being answered", registry=r)
