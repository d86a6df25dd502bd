"""The console's traffic summary adds up exactly what /metrics exposes."""

from __future__ import annotations

from gateway.edge.metrics import LATENCY_BUCKETS, Metrics
from gateway.edge.traffic_summary import summarise


def test_counts_are_summed_over_srvs_and_endpoints() -> None:
    metrics = Metrics()
    metrics.requests.labels("5.4", "4.1.1", "I99").inc(3)
    metrics.requests.labels("5.4", "8.2", "I99").inc(2)  # another SRV, same version and code
    metrics.requests.labels("5.0", "8.2", "I0").inc()
    metrics.refusals.labels("signature", "bad_digest_value").inc(4)
    metrics.quarantined.labels("ADUserThresholdBreach").inc()
    metrics.http_errors.labels("415").inc()
    for endpoint, seconds in (("serviceS", 0.0004), ("serviceD", 0.003), ("serviceD", 9.0)):
        metrics.latency.labels(endpoint).observe(seconds)

    summary = summarise(metrics.registry, 12.5)

    assert summary.monotonic_seconds == 12.5
    assert {(tuple(c.labels.values()), c.count) for c in summary.requests} == {
        (("5.4", "I99"), 5.0),
        (("5.0", "I0"), 1.0),
    }
    assert [(c.labels, c.count) for c in summary.refusals] == [
        ({"stage": "signature", "reason": "bad_digest_value"}, 4.0)
    ]
    assert [c.labels for c in summary.quarantined] == [{"breach": "ADUserThresholdBreach"}]
    assert [c.labels for c in summary.http_errors] == [{"status": "415"}]
    bounds = [b.le for b in summary.latency_buckets]
    assert bounds == [*LATENCY_BUCKETS, None]  # +Inf last, as None
    cumulative = {b.le: b.count for b in summary.latency_buckets}
    assert cumulative[0.0005] == 1.0 and cumulative[0.005] == 2.0 and cumulative[None] == 3.0
    assert summary.latency_count == 3.0
    assert abs(summary.latency_sum_seconds - 9.0034) < 1e-9


def test_an_idle_gateway_has_an_empty_summary() -> None:
    summary = summarise(Metrics().registry, 0.0)
    assert summary.requests == summary.refusals == summary.quarantined == []
    assert summary.latency_buckets == [] and summary.latency_count == 0.0
