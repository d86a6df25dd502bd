"""Soak: a well-behaved client beside a hostile crowd, against a real `duisgw serve`.

    python -m bench.soak [--seconds 600] [--rate 100] [--connections 8]
                         [--idle 1100] [--slow-heads 64] [--slow-bodies 64] [--huge-heads 4]
                         [--non-readers 16] [--fuzz-per-second 10] [--admin-per-second 2]
                         [--limit KEY=VALUE ...] [--json]

One gateway, two phases of `--seconds` each: the reference (the well-behaved client
alone), then the same client beside the crowd (bench/crowd.py, its own process,
from other loopback addresses). The client is open loop at `--rate` over
`--connections` keep-alive connections (latency from each request's due time, less
the client's own lateness in sending it: bench/client.py); it retries a request once
only when its connection was closed before any answer (an idle connection reclaimed
under it). Reported: whether every well-behaved request
was answered with its expected code, its p99 in each phase and their ratio (target
<= 2), the gateway's RSS over time, what the crowd saw, and the gateway's own
counters. Exit 1 if a well-behaved request went unanswered or the gateway did not
exit 0; the p99 ratio and RSS are reported, not judged by the exit status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import multiprocessing
import os
import queue
import shutil
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from pathlib import Path

import msgspec
import trio

from bench import corpus as corpus_mod
from bench.crowd import CrowdOptions, KindReport, run_crowd
from bench.gateway_process import GatewayFailed, GatewayProcess
from bench.well_behaved import Phase, well_behaved
from gateway.devkit.default import ensure_default_state

P99_RATIO_TARGET = 2.0
RSS_INTERVAL_SECONDS = 5.0
CROWD_STOP_TIMEOUT_SECONDS = 30.0
FUZZ_BASES = 200
METRICS_SHOWN = (
    "duisgw_internal_errors_total",
    "duisgw_client_timeouts_total",
    "duisgw_connections_reclaimed_total",
    "duisgw_connections_refused_total",
    "duisgw_http_errors_total",
    "duisgw_open_connections",
)
# Snapshotted at each phase's start and end: what else the gateway did meanwhile (the
# estate completes CV 1 jobs, and their responses are delivered, with a lag that can
# carry one phase's deliveries into the next) and what its garbage collector cost.
PHASE_METRICS = (
    "duisgw_gc_pause_seconds",
    'duisgw_deliveries_total{outcome="delivered"}',
    "duisgw_request_seconds",
)
GC_LONG_PAUSE_SECONDS = ("0.01", "0.05", "0.1")  # bucket bounds of duisgw_gc_pause_seconds
# Bucket bounds of duisgw_request_seconds: the pipeline's own time (request read to answer
# ready, every endpoint, the crowd's fuzz included), beside the client's latency.
PIPELINE_SLOW_SECONDS = ("0.01", "0.025", "0.05")


class SoakOptions(msgspec.Struct, kw_only=True):
    seconds: float = 600.0
    rate: float = 100.0
    connections: int = 8
    ramp_seconds: float = 10.0  # crowd running before its phase is measured
    cooldown_seconds: float = 15.0  # RSS watched after the crowd stops
    variants: tuple[int, ...] = tuple(sorted(corpus_mod.DEFAULT_VARIANTS))
    crowd: CrowdOptions = CrowdOptions(duis_port=0, admin_port=0)
    limits: dict[str, float] = {}  # gateway [limits] overrides; defaults otherwise
    sign_processes: int = 2
    shared: str | None = None
    keep_state: bool = False


class RssSample(msgspec.Struct, array_like=True):
    seconds: float
    phase: str
    rss_mb: float


class SoakReport(msgspec.Struct):
    seconds_per_phase: float
    rate_per_second: float
    connections: int
    reference: Phase
    crowd: Phase
    p99_ratio: float
    p99_target: float
    every_request_answered: bool
    rss: list[RssSample]
    rss_max_mb: dict[str, float]
    # Highest RSS in the crowd phase's second half minus its first half: near 0 if bounded.
    rss_crowd_growth_mb: float
    crowd_saw: dict[str, KindReport]
    cpu_seconds: dict[str, float]  # the gateway per phase, the crowd process in all
    in_phase: dict[str, dict[str, float]]  # per phase: phase_figures
    gateway_metrics: dict[str, float]
    limits: dict[str, float]
    server_exit_code: int | None = None


class _Run:
    """The two phases against one gateway, with RSS sampled throughout."""

    def __init__(self, options: SoakOptions, gateway: GatewayProcess) -> None:
        self.options = options
        self.gateway = gateway
        self.phase = "start"
        self.rss: list[RssSample] = []
        self.crowd_saw: dict[str, KindReport] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.in_phase: dict[str, dict[str, float]] = {}

    async def _counters(self) -> dict[str, float]:
        return await trio.to_thread.run_sync(self.gateway.counters, PHASE_METRICS)

    async def sample_rss(self) -> None:
        started = trio.current_time()
        while True:
            rss = self.gateway.rss_mb()
            self.rss.append(RssSample(round(trio.current_time() - started, 1), self.phase, rss))
            await trio.sleep(RSS_INTERVAL_SECONDS)

    async def main(self, slots: list[list[list[corpus_mod.Prepared]]]) -> tuple[Phase, Phase]:
        address = ("127.0.0.1", self.gateway.duis_port)
        rate = self.options.rate
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.sample_rss)
            self.phase = "reference"
            cpu, before = self.gateway.cpu_seconds(), await self._counters()
            reference = await well_behaved(address, slots[0], rate, "reference")
            self.cpu_seconds["gateway, reference"] = self.gateway.cpu_seconds() - cpu
            self.in_phase["reference"] = phase_figures(before, await self._counters())
            self.phase = "ramp"
            children = _children_cpu_seconds()
            context = multiprocessing.get_context("spawn")
            stop, results = context.Event(), context.Queue()
            crowd = context.Process(target=run_crowd, args=(self._crowd(), stop, results))
            crowd.start()
            try:
                await trio.sleep(self.options.ramp_seconds)
                self.phase = "crowd"
                cpu, before = self.gateway.cpu_seconds(), await self._counters()
                beside = await well_behaved(address, slots[1], rate, "crowd")
                self.cpu_seconds["gateway, crowd"] = self.gateway.cpu_seconds() - cpu
                self.in_phase["crowd"] = phase_figures(before, await self._counters())
            finally:
                stop.set()
                self.crowd_saw = await trio.to_thread.run_sync(_crowd_report, results)
                await trio.to_thread.run_sync(crowd.join, CROWD_STOP_TIMEOUT_SECONDS)
            # Ramp and crowd phase together: the crowd process has been waited for.
            self.cpu_seconds["crowd process"] = _children_cpu_seconds() - children
            self.phase = "cooldown"
            await trio.sleep(self.options.cooldown_seconds)
            nursery.cancel_scope.cancel()
        return reference, beside

    def _crowd(self) -> CrowdOptions:
        return msgspec.structs.replace(
            self.options.crowd,
            duis_port=self.gateway.duis_port,
            admin_port=self.gateway.admin_ports[0],
        )


def phase_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Deliveries; requests through the pipeline, and how many took longer than each of
    PIPELINE_SLOW_SECONDS; per collector generation, pauses: how many, their total
    seconds, and how many lasted longer than each of GC_LONG_PAUSE_SECONDS."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    def summed(prefix: str, suffix: str) -> float:
        names = set(before) | set(after)
        return sum(delta(n) for n in names if n.startswith(prefix) and n.endswith(suffix))

    figures = {"deliveries": delta(PHASE_METRICS[1])}
    pipeline = summed("duisgw_request_seconds_count", "")
    figures["pipeline requests"] = pipeline
    for bound in PIPELINE_SLOW_SECONDS:
        within = summed("duisgw_request_seconds_bucket", f'le="{bound}"}}')
        figures[f"pipeline over {float(bound) * 1000:g} ms"] = pipeline - within
    for generation in range(3):
        label = f'generation="{generation}"'
        count = delta(f"duisgw_gc_pause_seconds_count{{{label}}}")
        figures[f"gc{generation} pauses"] = count
        figures[f"gc{generation} seconds"] = round(
            delta(f"duisgw_gc_pause_seconds_sum{{{label}}}"), 3
        )
        for bound in GC_LONG_PAUSE_SECONDS:
            within = delta(f'duisgw_gc_pause_seconds_bucket{{{label},le="{bound}"}}')
            figures[f"gc{generation} over {float(bound) * 1000:g} ms"] = count - within
    return figures


def _children_cpu_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _crowd_report(results: Queue[bytes]) -> dict[str, KindReport]:
    try:
        report = results.get(True, CROWD_STOP_TIMEOUT_SECONDS)
    except queue.Empty:  # the crowd process died: say so rather than report a quiet phase
        return {"crowd": KindReport(outcomes={"crowd process gave no report": 1})}
    return msgspec.json.decode(report, type=dict[str, KindReport])


def run(options: SoakOptions) -> SoakReport:
    shared = corpus_mod.find_shared(Path(options.shared) if options.shared else None)
    templates = corpus_mod.load_templates(shared, frozenset(options.variants), False)
    state = Path(tempfile.mkdtemp(prefix="duisgw-soak-"))
    keep = options.keep_state
    try:
        config, pki = _prepare_state(state, shared, templates, options)
        slots = _corpora(templates, pki, options)
        fuzz = tuple(wire for wire, _ in slots[2][0][:FUZZ_BASES])
        options = msgspec.structs.replace(
            options, crowd=msgspec.structs.replace(options.crowd, fuzz_bases=fuzz)
        )
        # The corpus stays for the whole run: keep the client's own collector from pausing
        # over it (hundreds of ms) and charging that to the gateway.
        gc.collect()
        gc.freeze()
        gateway = GatewayProcess.start(config, workers=1, cores=None, profile=None)
        try:
            gateway.wait_ready()
            soak = _Run(options, gateway)
            reference, beside = trio.run(soak.main, slots[:2])
            metrics = gateway.counters(METRICS_SHOWN)
        finally:
            exit_code = gateway.stop()
            keep = keep or exit_code != 0
        return _report(options, reference, beside, soak, metrics, exit_code)
    finally:
        if keep:
            print(f"state and gateway log kept in {state}", file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)


def _prepare_state(
    state: Path, shared: Path, templates: list[corpus_mod.Template], options: SoakOptions
) -> tuple[Path, Path]:
    """Default state; slots for the client's connections, plus one the fuzzer mutates."""
    now = dt.datetime.now(dt.UTC)
    default_config = ensure_default_state(state, now)
    originals = sorted({t.originator for t in templates})
    users, inventory = corpus_mod.add_slot_users(state, originals, options.connections + 1, now)
    config = corpus_mod.write_bench_config(
        default_config,
        users,
        inventory,
        xsd_dir=shared / "duis" / "xsd",
        tls_slots=None,
        limits=options.limits or None,
    )
    return config, state / "pki"


def _corpora(
    templates: list[corpus_mod.Template], pki: Path, options: SoakOptions
) -> list[list[list[corpus_mod.Prepared]]]:
    """[reference slots, crowd-phase slots, [the fuzzer's slot]], one list per connection.

    Each phase gets its own corpus with half the asynchronous allowance, so the two
    phases send the same mix (the estate's one hub drains CV 1 at about one a second);
    counters increase from phase to phase.
    """
    width = options.connections + 1  # the last slot's User IDs are the fuzzer's
    total = (int(options.rate * options.seconds) + options.connections) * width
    total //= options.connections
    base = time.time_ns() // 1000
    corpora = [
        corpus_mod.build_corpus(
            templates,
            pki,
            slots=width,
            total=total,
            counter_base=base + phase * total,
            processes=options.sign_processes,
            max_async=corpus_mod.MAX_ASYNC_PER_RUN // 2,
        )
        for phase in range(2)
    ]
    return [c.slots[: options.connections] for c in corpora] + [[corpora[0].slots[-1]]]


def _report(
    options: SoakOptions,
    reference: Phase,
    beside: Phase,
    soak: _Run,
    metrics: dict[str, float],
    exit_code: int | None,
) -> SoakReport:
    rss_max: dict[str, float] = {}
    for sample in soak.rss:
        rss_max[sample.phase] = max(rss_max.get(sample.phase, 0.0), sample.rss_mb)
    crowd_rss = [s.rss_mb for s in soak.rss if s.phase == "crowd"]
    half = len(crowd_rss) // 2
    growth = max(crowd_rss[half:]) - max(crowd_rss[:half]) if half else 0.0
    ref_p99 = reference.latency.p99_ms
    return SoakReport(
        seconds_per_phase=options.seconds,
        rate_per_second=options.rate,
        connections=options.connections,
        reference=reference,
        crowd=beside,
        p99_ratio=beside.latency.p99_ms / ref_p99 if ref_p99 else 0.0,
        p99_target=P99_RATIO_TARGET,
        every_request_answered=all(
            p.answered == p.sent and not p.unanswered for p in (reference, beside)
        ),
        rss=soak.rss,
        rss_max_mb=rss_max,
        rss_crowd_growth_mb=growth,
        crowd_saw=soak.crowd_saw,
        cpu_seconds=soak.cpu_seconds,
        in_phase=soak.in_phase,
        gateway_metrics=metrics,
        limits=options.limits,
        server_exit_code=exit_code,
    )


def format_report(r: SoakReport) -> str:
    def phase(p: Phase) -> list[str]:
        lat = p.latency
        return [
            f"{p.name:<10} sent {p.sent:,}, answered {p.answered:,}, retried {p.retried}, "
            f"unanswered {p.unanswered or 0}",
            f"{'':<10} latency ms p50 {lat.p50_ms:.2f}  p99 {lat.p99_ms:.2f}  "
            f"p99.9 {lat.p999_ms:.2f}  max {lat.max_ms:.2f}; client wake-up lateness p99 "
            f"{p.client_wake_lateness_p99_ms:.2f} ms",
            f"{'':<10} HTTP {p.http_status}  DUIS {p.duis_codes}  unexpected {p.unexpected_codes}",
        ]

    verdict = "PASS" if r.p99_ratio <= r.p99_target else "MISS"
    lines = [
        f"soak: {r.seconds_per_phase:g} s per phase, {r.rate_per_second:g} requests/s over "
        f"{r.connections} connections; limits {r.limits or 'default'}",
        *phase(r.reference),
        *phase(r.crowd),
        f"p99 ratio  {r.p99_ratio:.2f} (target <= {r.p99_target:g}): {verdict}",
        f"answered   every well-behaved request: {r.every_request_answered}",
        "RSS MB     max by phase "
        + ", ".join(f"{k} {v:.0f}" for k, v in r.rss_max_mb.items())
        + f"; crowd-phase growth {r.rss_crowd_growth_mb:+.1f}",
        "RSS MB     over time " + " ".join(f"{s.seconds:g}s:{s.rss_mb:.0f}" for s in r.rss),
        "crowd saw",
        *(f"  {kind:<11} {k.attempts:>6}  {k.outcomes}" for kind, k in r.crowd_saw.items()),
        "CPU seconds " + ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_seconds.items()),
        *(
            f"in phase   {name}: " + ", ".join(f"{k} {v:g}" for k, v in figures.items() if v)
            for name, figures in r.in_phase.items()
        ),
        "gateway counters",
        *(f"  {name} {value:g}" for name, value in r.gateway_metrics.items()),
        f"gateway exit {r.server_exit_code}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[SoakOptions, bool]:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0, help="per phase")
    p.add_argument("--rate", type=float, default=100.0, help="well-behaved requests/s")
    p.add_argument("--connections", type=int, default=8, help="well-behaved connections")
    p.add_argument("--ramp-seconds", type=float, default=10.0)
    p.add_argument("--cooldown-seconds", type=float, default=15.0)
    p.add_argument("--variants", default="1,8", help="CommandVariants of the templates used")
    crowd = CrowdOptions(duis_port=0, admin_port=0)
    p.add_argument("--peers", type=int, default=crowd.peers, help="crowd source addresses")
    p.add_argument("--idle", type=int, default=crowd.idle)
    p.add_argument("--slow-heads", type=int, default=crowd.slow_heads)
    p.add_argument("--slow-bodies", type=int, default=crowd.slow_bodies)
    p.add_argument("--slow-interval-seconds", type=float, default=crowd.slow_interval_seconds)
    p.add_argument("--huge-heads", type=int, default=crowd.huge_heads)
    p.add_argument("--non-readers", type=int, default=crowd.non_readers)
    p.add_argument("--fuzz-per-second", type=float, default=crowd.fuzz_per_second)
    p.add_argument("--admin-per-second", type=float, default=crowd.admin_probes_per_second)
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a gateway [limits] value, e.g. request_timeout_seconds=2 (repeatable)",
    )
    p.add_argument("--sign-processes", type=int, default=2)
    p.add_argument("--shared", help="the shared test data (default: ../shared)")
    p.add_argument("--keep-state", action="store_true")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args(argv)
    limits: dict[str, float] = {}
    for item in a.limit:
        key, _, value = item.partition("=")
        limits[key] = int(value) if value.isdigit() else float(value)
    options = SoakOptions(
        seconds=a.seconds,
        rate=a.rate,
        connections=a.connections,
        ramp_seconds=a.ramp_seconds,
        cooldown_seconds=a.cooldown_seconds,
        variants=tuple(int(v) for v in a.variants.split(",")),
        crowd=CrowdOptions(
            duis_port=0,
            admin_port=0,
            peers=a.peers,
            idle=a.idle,
            slow_heads=a.slow_heads,
            slow_bodies=a.slow_bodies,
            slow_interval_seconds=a.slow_interval_seconds,
            huge_heads=a.huge_heads,
            non_readers=a.non_readers,
            fuzz_per_second=a.fuzz_per_second,
            admin_probes_per_second=a.admin_per_second,
        ),
        limits=limits,
        sign_processes=a.sign_processes,
        shared=a.shared,
        keep_state=a.keep_state,
    )
    return options, a.json


def main(argv: list[str] | None = None) -> int:
    options, as_json = parse_args(argv)
    try:
        report = run(options)
    except corpus_mod.SharedDataMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except GatewayFailed as exc:
        print(f"bench: the gateway failed: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(msgspec.json.format(msgspec.json.encode(report)).decode())
    else:
        print(format_report(report))
    return 0 if report.every_request_answered and report.server_exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
