"""A JSON-sized summary of the live traffic metrics, for the console's overview.

Read from the same Prometheus registry `/metrics` exposes, so the two never
disagree; aggregated to what an operator watches (requests by DUIS version and
outcome, refusals by stage and reason, acknowledgement latency buckets). Every
value is cumulative since the process started: a reader turns two summaries into
rates and an interval p99 (`monotonic_seconds` is the time base), as Prometheus
does with `rate()` and `histogram_quantile()`.

Pure: no I/O; the admin route adds the store counts (outbox, quarantine).
"""

from __future__ import annotations

import math
from collections import defaultdict

import msgspec
from prometheus_client import CollectorRegistry

REQUESTS = "duisgw_requests_total"
REFUSALS = "duisgw_refusals_total"
HTTP_ERRORS = "duisgw_http_errors_total"
QUARANTINED = "duisgw_quarantined_total"
LATENCY = "duisgw_request_seconds"


class LabelledCount(msgspec.Struct, frozen=True):
    labels: dict[str, str]
    count: float


class Bucket(msgspec.Struct, frozen=True):
    le: float | None  # upper bound in seconds; None for +Inf (JSON has no infinity)
    count: float  # cumulative, as in Prometheus


class TrafficSummary(msgspec.Struct, frozen=True, kw_only=True):
    monotonic_seconds: float
    requests: list[LabelledCount]  # by version and outcome (SRVs summed)
    refusals: list[LabelledCount]  # by stage and reason
    http_errors: list[LabelledCount]  # by status
    quarantined: list[LabelledCount]  # by breach
    latency_buckets: list[Bucket]  # acknowledgement latency, every DUIS endpoint summed
    latency_count: float
    latency_sum_seconds: float


def summarise(registry: CollectorRegistry, monotonic_seconds: float) -> TrafficSummary:
    sums: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(
        lambda: defaultdict(float)
    )
    keep = {
        REQUESTS: ("version", "outcome"),
        REFUSALS: ("stage", "reason"),
        HTTP_ERRORS: ("status",),
        QUARANTINED: ("breach",),
    }
    buckets: dict[float, float] = defaultdict(float)
    latency_count = latency_sum = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in keep:
                key = tuple((n, sample.labels[n]) for n in keep[sample.name])
                sums[sample.name][key] += sample.value
            elif sample.name == LATENCY + "_bucket":
                buckets[float(sample.labels["le"])] += sample.value
            elif sample.name == LATENCY + "_count":
                latency_count += sample.value
            elif sample.name == LATENCY + "_sum":
                latency_sum += sample.value

    def counts(name: str) -> list[LabelledCount]:
        return [LabelledCount(dict(key), value) for key, value in sorted(sums[name].items())]

    return TrafficSummary(
        monotonic_seconds=monotonic_seconds,
        requests=counts(REQUESTS),
        refusals=counts(REFUSALS),
        http_errors=counts(HTTP_ERRORS),
        quarantined=counts(QUARANTINED),
        latency_buckets=[
            Bucket(None if math.isinf(le) else le, count) for le, count in sorted(buckets.items())
        ],
        latency_count=latency_count,
        latency_sum_seconds=latency_sum,
    )
