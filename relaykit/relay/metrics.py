"""Prometheus metrics for one relay (GET /metrics, server/ops_routes.py).

The pipeline reports through a few hooks (``overhead``, ``upstream_error``,
``stream_opened``/``stream_closed``, ``settled``); ``NO_METRICS`` is the do-nothing
stand-in it holds until the app gives it a ``Metrics``.  Each ``Metrics`` has its own
``CollectorRegistry`` (no process-wide state), so two relays in one test process do not
mix their numbers.

Labels are chosen to stay few and secret-free: model names (only models the relay serves
reach settlement), channel names (the operator's), status codes and dialects.  No user,
token, key or URL is ever a label or a value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST
TOKEN_FIELDS = (("prompt", "prompt_tokens"), ("completion", "completion_tokens"),
                ("cache_read", "cache_read_tokens"), ("cache_write", "cache_write_tokens"))


class NoMetrics:
    """What the pipeline reports to when nobody collects."""

    def overhead(self, seconds: float) -> None:
        pass

    def upstream_error(self, channel: str, status: int | str) -> None:
        pass

    def stream_opened(self) -> None:
        pass

    def stream_closed(self) -> None:
        pass

    def settled(self, row: dict[str, Any]) -> None:
        pass


NO_METRICS = NoMetrics()


class Metrics(NoMetrics):
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("relaykit_requests", "Relayed requests that were held and settled, by outcome.",
                                ["model", "channel", "status"], registry=r)
        self.tokens = Counter("relaykit_tokens", "Tokens metered on settled requests.", ["model", "type"], registry=r)
        self.quota = Counter("relaykit_quota", "Quota units charged to customers.", ["model"], registry=r)
        self.latency = Histogram("relaykit_request_duration_seconds",
                                 "Time from the hold to settlement of a relayed request.", ["model", "stream"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.first_byte = Histogram("relaykit_first_byte_seconds",
                                    "Time from the hold to the upstream's first byte.", ["model"],
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.overhead_seconds = Histogram(
            "relaykit_overhead_seconds",
            "Time relaykit spends before forwarding (decode, route, price, hold, convert).",
            buckets=OVERHEAD_BUCKETS, registry=r)
        self.upstream_errors = Counter("relaykit_upstream_errors",
                                       "Upstream attempts that failed, by channel and status (0 = no answer).",
                                       ["channel", "status"], registry=r)
        self.open_streams = Gauge("relaykit_open_streams", "Streams being relayed now.", registry=r)
        self.http = Counter("relaykit_http_requests", "HTTP requests answered, by route and status.",
                            ["route", "method", "status"], registry=r)
        self.http_latency = Histogram("relaykit_http_request_duration_seconds",
                                      "Time to answer an HTTP request (a stream until its end).", ["route"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        # labelled children, found once: ``labels()`` validates and locks on every call,
        # which cost more than the counting itself on the hot path (the label sets are
        # bounded by the config: models, channels, routes, statuses)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        """A value read when scraped (Redis up, leader, writer queue...)."""
        Gauge(name, help_text, registry=self.registry).set_function(fn)

    # ------------------------------------------------------------------ pipeline hooks

    def overhead(self, seconds: float) -> None:
        self.overhead_seconds.observe(max(0.0, seconds))

    def upstream_error(self, channel: str, status: int | str) -> None:
        self._child(self.upstream_errors, channel, str(status)).inc()

    def stream_opened(self) -> None:
        self.open_streams.inc()

    def stream_closed(self) -> None:
        self.open_streams.dec()

    def settled(self, row: dict[str, Any]) -> None:
        model = str(row.get("model", ""))
        child = self._child
        child(self.requests, model, str(row.get("channel", "")), str(row.get("status", ""))).inc()
        for kind, field in TOKEN_FIELDS:
            n = int(row.get(field) or 0)
            if n:
                child(self.tokens, model, kind).inc(n)
        quota = int(row.get("quota") or 0)
        if quota:
            child(self.quota, model).inc(quota)
        child(self.latency, model, "true" if row.get("stream") else "false").observe(
            int(row.get("latency_ms") or 0) / 1000)
        if row.get("first_byte_ms") is not None:
            child(self.first_byte, model).observe(int(row["first_byte_ms"]) / 1000)

    # ------------------------------------------------------------------ HTTP

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self.http, route, method, str(status)).inc()
        self._child(self.http_latency, route).observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
