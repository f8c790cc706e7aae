"""relay/metrics.py: the per-request counters and histograms are plain numbers turned into
Prometheus families at scrape time; what a scraper reads must be what Prometheus expects."""

from __future__ import annotations

import threading

from prometheus_client.parser import text_string_to_metric_families

from relaykit.relay.metrics import LATENCY_BUCKETS, Metrics


def scrape(m: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_counters_and_histograms_read_as_prometheus_families() -> None:
    m = Metrics()
    row = {"model": "gpt-4o", "channel": "c1", "status": 200, "prompt_tokens": 12, "completion_tokens": 30,
           "cache_read_tokens": 0, "quota": 75, "latency_ms": 100, "first_byte_ms": 40, "stream": True}
    m.settled(row)
    m.settled({**row, "status": 502, "quota": 0, "latency_ms": 400})
    m.upstream_error("c1", 500)
    for seconds in (0.05, 0.07, 3.0, 1000.0):  # on a bound, inside one, beyond the last
        m.answered("/v1/chat/completions", "POST", 200, seconds)
    got = scrape(m)
    assert got["relaykit_requests_total"] == {
        (("channel", "c1"), ("model", "gpt-4o"), ("status", "200")): 1.0,
        (("channel", "c1"), ("model", "gpt-4o"), ("status", "502")): 1.0}
    assert got["relaykit_tokens_total"][(("model", "gpt-4o"), ("type", "completion"))] == 60
    assert (("model", "gpt-4o"), ("type", "cache_read")) not in got["relaykit_tokens_total"]
    assert got["relaykit_quota_total"] == {(("model", "gpt-4o"),): 75.0}
    assert got["relaykit_upstream_errors_total"] == {(("channel", "c1"), ("status", "500")): 1.0}

    route = ("route", "/v1/chat/completions")
    buckets = {dict(k)["le"]: v for k, v in got["relaykit_http_request_duration_seconds_bucket"].items()}
    assert buckets["0.05"] == 1  # le is inclusive: 0.05 counts in its own bucket
    assert buckets["0.1"] == 2 and buckets["2.5"] == 2 and buckets["5.0"] == 3 and buckets["300.0"] == 3
    assert buckets["+Inf"] == 4 == got["relaykit_http_request_duration_seconds_count"][(route,)]
    assert abs(got["relaykit_http_request_duration_seconds_sum"][(route,)] - 1003.12) < 1e-9
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    latency = got["relaykit_request_duration_seconds_count"]
    assert latency[(("model", "gpt-4o"), ("stream", "true"))] == 2


def test_a_scrape_while_the_loop_counts_sees_whole_series() -> None:
    """The scrape runs on another thread than the counting: each series it reads is one
    consistent copy (the +Inf bucket equals the count), and nothing raises."""
    m = Metrics()
    stop = threading.Event()

    def count() -> None:
        i = 0
        while not stop.is_set():
            m.answered(f"/r{i % 300}", "POST", 200, (i % 7) / 10)
            i += 1

    worker = threading.Thread(target=count)
    worker.start()
    try:
        for _ in range(8):
            got = scrape(m)
            counts = got.get("relaykit_http_request_duration_seconds_count", {})
            for key, n in got.get("relaykit_http_request_duration_seconds_bucket", {}).items():
                labels = dict(key)
                if labels["le"] == "+Inf":
                    assert n == counts[(("route", labels["route"]),)]
    finally:
        stop.set()
        worker.join()
