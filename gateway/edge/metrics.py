"""Every Prometheus metric the gateway exposes, declared once.

Labels are bounded: DUIS version (served set), SRV variant (129), outcome code
(the catalogue's codes), refusal reason (stable codes). Never a RequestID or a
User ID. The registry is injectable so tests get a fresh one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
# Commands wait for a Communications Hub for seconds to many minutes under overload.
GC_PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "duisgw_requests_total",
            "DUIS requests answered, by DUIS version, SRV and outcome code",
            ("version", "srv", "outcome"),
            registry=r,
        )
        self.refusals = Counter(
            "duisgw_refusals_total",
            "Requests refused before access control, by stage and reason",
            ("stage", "reason"),
            registry=r,
        )
        self.http_errors = Counter(
            "duisgw_http_errors_total",
            "HTTP-level refusals, by status",
            ("status",),
            registry=r,
        )
        self.admin_refusals = Counter(
            "duisgw_admin_refusals_total",
            "Admin listener requests refused before routing (Host, token, body type), by reason",
            ("reason",),
            registry=r,
        )
        self.latency = Histogram(
            "duisgw_request_seconds",
            "Time from complete request to response bytes, by endpoint",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # The checks' own CPU in the serving thread, beside what the request costs in all
        # (process CPU): bench.compare sets it against the same checks timed in isolation.
        self.checks_cpu = Summary(
            "duisgw_checks_cpu_seconds",
            "CPU time of the serving thread in each request's checks (ingest to body)",
            registry=r,
        )
        self.gc_pause = Histogram(
            "duisgw_gc_pause_seconds",
            "Garbage collector pauses (the whole process waits), by generation",
            ("generation",),
            buckets=GC_PAUSE_BUCKETS,
            registry=r,
        )
        self.connections = Gauge(
            "duisgw_open_connections", "Open connections, by listener", ("listener",), registry=r
        )
        self.connections_refused = Counter(
            "duisgw_connections_refused_total",
            "Connections answered 503 and closed, by listener and the limit reached",
            ("listener", "reason"),
            registry=r,
        )
        self.connections_reclaimed = Counter(
            "duisgw_connections_reclaimed_total",
            "Idle keep-alive connections closed to make room for a new one, by listener",
            ("listener",),
            registry=r,
        )
        self.timeouts = Counter(
            "duisgw_client_timeouts_total",
            "Connections closed for idleness, slow requests, slow TLS handshakes or "
            "clients that do not read, by kind",
            ("kind",),
            registry=r,
        )
        self.internal_errors = Counter(
            "duisgw_internal_errors_total",
            "Unexpected exceptions caught at a connection's crash boundary, by listener",
            ("listener",),
            registry=r,
        )
        self.tls_handshake_failures = Counter(
            "duisgw_tls_handshake_failures_total",
            "TLS handshakes refused or abandoned on the DUIS listener, by reason",
            ("reason",),
            registry=r,
        )
        self.reloads = Counter(
            "duisgw_reloads_total",
            "Reloads of trust and registry, by outcome",
            ("outcome",),
            registry=r,
        )
        self.quarantined = Counter(
            "duisgw_quarantined_total",
            "Requests held by anomaly detection, by breach",
            ("breach",),
            registry=r,
        )
        self.threshold_warnings = Counter(
            "duisgw_threshold_warnings_total", "User Warning Threshold crossings", registry=r
        )
        self.outbox_depth = Gauge(
            "duisgw_outbox_pending", "Responses stored and not yet delivered", registry=r
        )
        self.replay_waiting = Gauge(
            "duisgw_replay_waiting",
            "Requests waiting for their replay decision to commit (queued or committing)",
            registry=r,
        )
        self.jobs_pending = Gauge(
            "duisgw_jobs_pending",
            "Acknowledged asynchronous requests not yet answered (journaled)",
            registry=r,
        )
        self.quarantine_queue = Gauge(
            "duisgw_quarantine_writer_queue",
            "Quarantine operations waiting for a commit",
            registry=r,
        )
        self.outbox_dead_letters = Gauge(
            "duisgw_outbox_dead_letters",
            "Responses that could not be delivered, kept for retry",
            registry=r,
        )
        self.redeliveries = Counter(
            "duisgw_redeliveries_total",
            "Jobs and outbox messages handed out again after their node stopped (or this "
            "one restarted): run or sent again, with the same RequestID or message ID",
            ("queue",),
            registry=r,
        )
        self.device_alerts = Counter(
            "duisgw_device_alerts_total",
            "Device alerts from the estate, by outcome: stored (for the User's Receive "
            "Response URL), duplicate (already stored), or why nobody gets one",
            ("outcome",),
            registry=r,
        )
        self.deliveries = Counter(
            "duisgw_deliveries_total",
            "Asynchronous delivery attempts, by outcome",
            ("outcome",),
            registry=r,
        )
        self.queue_depth = Gauge(
            "duisgw_command_queue_depth",
            "Commands waiting for a device, by priority class",
            ("priority",),
            registry=r,
        )
        self.queue_wait = Histogram(
            "duisgw_command_queue_wait_seconds",
            "Time a command waited before dispatch",
            ("priority",),
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
