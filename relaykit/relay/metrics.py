"""Prometheus metrics for one relay (GET /metrics, server/ops_routes.py).

The pipeline reports through a few hooks (``overhead``, ``upstream_error``,
``stream_opened``/``stream_closed``, ``settled``); ``NO_METRICS`` is the do-nothing
stand-in it holds until the app gives it a ``Metrics``.  Each ``Metrics`` has its own
``CollectorRegistry`` (no process-wide state), so two relays in one test process do not
mix their numbers.  The per-request counters and histograms are plain numbers turned into
metric families when scraped (``_Counted``, ``_Timed``): prometheus_client's own objects
locked and validated on every increment, ~25 us of a relayed request at concurrency 1.

Labels are chosen to stay few and secret-free: model names (only models the relay serves
reach settlement), channel names (the operator's), status codes and dialects.  No user,
token, key or URL is ever a label or a value.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

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


class _Counted:
    """A counter family kept as plain numbers by label values, exposed when scraped.

    prometheus_client's own Counter takes a lock and walks its children on each increment;
    these are only ever incremented on the event loop, so a dict entry does, and the
    scrape (on another thread) reads a copy (``dict.copy`` runs whole under the GIL)."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name, self.help, self.labels = name, help_text, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1) -> None:
        self.values[key] = self.values.get(key, 0) + amount

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for key, value in sorted(self.values.copy().items()):
            fam.add_metric(key, value)
        return fam


class _Timed:
    """A histogram family kept as plain lists by label values: per-bucket counts (not yet
    cumulative), then the sum, then the count; made cumulative when scraped."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.labels, self.bounds = name, help_text, labels, buckets
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0] * (len(self.bounds) + 3)
        row[bisect_left(self.bounds, value)] += 1  # le is inclusive: a value on a bound counts there
        row[-2] += value
        row[-1] += 1

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.help, labels=self.labels)
        for key, row in sorted(self.series.copy().items()):
            row = row[:]  # one consistent copy of this series (a list slice runs whole under the GIL)
            running, buckets = 0.0, []
            for bound, n in zip((*self.bounds, float("inf")), row):
                running += n
                buckets.append((floatToGoString(bound), running))
            fam.add_metric(key, buckets, row[-2])
        return fam


class _Families:
    """The collector that hands the registry our families at each scrape."""

    def __init__(self, families: list[_Counted | _Timed]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return [f.family() for f in self._families]

    def describe(self) -> list[Any]:
        return []  # names are known from collect(); nothing to check at registration


class Metrics(NoMetrics):
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = _Counted("relaykit_requests", "Relayed requests that were held and settled, by outcome.",
                                 ("model", "channel", "status"))
        self.tokens = _Counted("relaykit_tokens", "Tokens metered on settled requests.", ("model", "type"))
        self.quota = _Counted("relaykit_quota", "Quota units charged to customers.", ("model",))
        self.latency = _Timed("relaykit_request_duration_seconds",
                              "Time from the hold to settlement of a relayed request.", ("model", "stream"),
                              LATENCY_BUCKETS)
        self.first_byte = _Timed("relaykit_first_byte_seconds", "Time from the hold to the upstream's first byte.",
                                 ("model",), LATENCY_BUCKETS)
        self.overhead_seconds = _Timed(
            "relaykit_overhead_seconds",
            "Time relaykit spends before forwarding (decode, route, price, hold, convert).", (), OVERHEAD_BUCKETS)
        self.upstream_errors = _Counted("relaykit_upstream_errors",
                                        "Upstream attempts that failed, by channel and status (0 = no answer).",
                                        ("channel", "status"))
        self.http = _Counted("relaykit_http_requests", "HTTP requests answered, by route and status.",
                             ("route", "method", "status"))
        self.http_latency = _Timed("relaykit_http_request_duration_seconds",
                                   "Time to answer an HTTP request (a stream until its end).", ("route",),
                                   LATENCY_BUCKETS)
        r.register(_Families([self.requests, self.tokens, self.quota, self.latency, self.first_byte,
                              self.overhead_seconds, self.upstream_errors, self.http, self.http_latency]))
        self.open_streams = Gauge("relaykit_open_streams", "Streams being relayed now.", registry=r)

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        """A value read when scraped (Redis up, leader, writer queue...)."""
        Gauge(name, help_text, registry=self.registry).set_function(fn)

    # ------------------------------------------------------------------ pipeline hooks

    def overhead(self, seconds: float) -> None:
        self.overhead_seconds.observe((), max(0.0, seconds))

    def upstream_error(self, channel: str, status: int | str) -> None:
        self.upstream_errors.inc((channel, str(status)))

    def stream_opened(self) -> None:
        self.open_streams.inc()

    def stream_closed(self) -> None:
        self.open_streams.dec()

    def settled(self, row: dict[str, Any]) -> None:
        model = str(row.get("model", ""))
        self.requests.inc((model, str(row.get("channel", "")), str(row.get("status", ""))))
        for kind, field in TOKEN_FIELDS:
            n = int(row.get(field) or 0)
            if n:
                self.tokens.inc((model, kind), n)
        quota = int(row.get("quota") or 0)
        if quota:
            self.quota.inc((model,), quota)
        self.latency.observe((model, "true" if row.get("stream") else "false"), int(row.get("latency_ms") or 0) / 1000)
        if row.get("first_byte_ms") is not None:
            self.first_byte.observe((model,), int(row["first_byte_ms"]) / 1000)

    # ------------------------------------------------------------------ HTTP

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http.inc((route, method, str(status)))
        self.http_latency.observe((route,), seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
