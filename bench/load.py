"""Load generator: a real `duisgw serve` subprocess, pre-signed requests, keep-alive clients.

    python -m bench.load [--mode closed|open] [--requests N] [--connections K]
                         [--rate R] [--seconds S] [--workers N] [--tls] [--json]

Each run gets a fresh state directory (dev PKI, bench estate, config on free ports),
a corpus signed before the gateway starts, and a gateway pinned to one core while
this process (the client) pins itself to the other, so the two never share a core
on a 2-core machine. With `--workers N` duisgw places its own workers and the client
is not pinned; the client's CPU time is reported so its share can be judged.

This module is one run and its report. The client, and what closed and open loop
mean, is bench/client.py; the gateway subprocess is bench/gateway_process.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import msgspec
import trio

from bench import corpus as corpus_mod
from bench.client import Tally, closed_loop, open_loop, tls_contexts
from bench.gateway_process import EstateProcess, GatewayFailed, GatewayProcess, ReceiverProcess
from gateway.devkit.default import ensure_default_state

# `--instant-devices`: the simulator's hubs answer at once, 64 commands at a time (the
# default hub serves one command every few seconds), so a run's asynchronous requests
# are run and delivered while it lasts. Overrides of the config both gateway and estate read.
INSTANT_LINK = '{distribution = "fixed", latency_median_seconds = 0.0, latency_p99_seconds = 0.0}'
INSTANT_DEVICES: tuple[str, ...] = (
    "simulator.hub_capacity=64",
    f"simulator.wan_profiles={{Central = {INSTANT_LINK}}}",
    f'simulator.han_profiles={{"Single Band" = {INSTANT_LINK}}}',
)
LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
DEFAULT_WARMUP_PER_CONNECTION = 20
SIGN_PROCESSES = os.cpu_count() or 1


class LoadOptions(msgspec.Struct, kw_only=True):
    mode: Literal["closed", "open"] = "closed"
    requests: int = 20_000
    connections: int = 32
    seconds: float | None = None  # closed loop: stop after this long even if requests remain
    rate: float | None = None  # open loop: requests per second
    warmup: int = DEFAULT_WARMUP_PER_CONNECTION
    variants: tuple[int, ...] = tuple(sorted(corpus_mod.DEFAULT_VARIANTS))
    all_versions: bool = False
    xsd: bool = True
    tls: bool = False
    workers: int = 1
    server_core: int = 0
    client_core: int = 1
    sign_processes: int = SIGN_PROCESSES
    shared: str | None = None
    keep_state: bool = False
    profile: str | None = None  # write the gateway's cProfile stats here
    state_parent: str | None = None  # where the fresh state dir (and its journals) goes
    rules: str | None = None  # threshold rules file for the gateway (thresholds on)
    synchronous: Literal["full", "normal"] = "full"  # the gateway's [storage] synchronous
    # bench.toml overrides, `section.key=VALUE` (corpus.apply_override): e.g. a device
    # transport outside the gateway's process, once the config can name one.
    overrides: tuple[str, ...] = ()
    response_url: str | None = None  # every User's receiver (default: the dev inbox, in process)
    # "external": start `python -m bench.receiver` (on the client's core) and point every
    # User at it; "inbox": the dev inbox in the gateway's process, or --response-url.
    receiver: Literal["inbox", "external"] = "inbox"
    # After the load, wait up to this long (outside the measured window) for bench.receiver
    # to take a delivery per acknowledged asynchronous request. The default estate's hub
    # serves about one command a second, so a run's deliveries mostly come after it.
    settle_seconds: float = 0.0
    # Where the simulated devices run: in the gateway's process, or `duisgw estate serve`
    # beside it (on the client's core); "both" runs the load once each way.
    estate: Literal["embedded", "network", "both"] = "embedded"


class Latency(msgspec.Struct):
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    histogram_ms: dict[str, int]


class LoadReport(msgspec.Struct):
    mode: str
    connections: int
    workers: int
    tls: bool
    xsd: bool
    requests_measured: int
    seconds: float
    throughput_per_second: float
    target_rate_per_second: float | None
    latency: Latency
    send_delay_p99_ms: float
    client_wake_lateness_p99_ms: float
    http_status: dict[str, int]
    duis_codes: dict[str, int]
    unexpected_codes: int
    failures: dict[str, int]
    client_cpu_seconds: float
    server_cpu_seconds: float
    server_cpu_per_request_us: float
    server_exit_code: int | None
    corpus_size: int
    corpus_build_seconds: float
    corpus_sign_processes: int
    corpus_async_share: float
    versions: list[str]
    templates: list[str]
    pinning: str
    # The gateway's own histogram (request complete -> answer ready), bucket upper bound:
    # a client p99 far above it is time outside the handler (event loop, sockets, client).
    server_timed_p99_ms: float = 0.0
    # Open loop: the latency from each due time with the client's own lateness in
    # sending left in (bench/client.py); `latency` takes that lateness out.
    latency_from_due: Latency | None = None
    estate: str = "embedded"
    estate_cpu_seconds: float = 0.0  # `duisgw estate serve`, when the estate is out of process
    # Its exit status if it ended on its own before the run did (None: it ran to the end,
    # or none ran): the gateway's commands would then have waited for an estate gone.
    estate_early_exit: int | None = None
    receiver: str = "inbox"  # "inbox", "external" (bench.receiver) or the --response-url
    receiver_cpu_seconds: float = 0.0  # bench.receiver over the measured window
    # Deliveries bench.receiver answered 200 over the whole run (warm-up and the gateway's
    # drain included), and how many distinct messages they carried; None: no bench.receiver.
    deliveries_received: int | None = None
    distinct_messages_received: int | None = None
    async_acknowledged: int = 0  # I99 answers over the whole run, warm-up included
    # The serving threads' CPU in the request checks (RequestChecks.verify), per request
    # checked in the measured window: the part of server_cpu_per_request_us the checks took.
    checks_cpu_per_request_us: float = 0.0


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarise(latencies: list[float]) -> Latency:
    ordered = sorted(s * 1000 for s in latencies)
    histogram: Counter[str] = Counter()
    for value in ordered:
        bound = next((b for b in LATENCY_BUCKETS_MS if value <= b), None)
        histogram[f"<={bound}" if bound is not None else f">{LATENCY_BUCKETS_MS[-1]}"] += 1
    return Latency(
        p50_ms=percentile(ordered, 0.50),
        p90_ms=percentile(ordered, 0.90),
        p99_ms=percentile(ordered, 0.99),
        p999_ms=percentile(ordered, 0.999),
        max_ms=ordered[-1] if ordered else 0.0,
        mean_ms=sum(ordered) / len(ordered) if ordered else 0.0,
        histogram_ms=dict(histogram),
    )


# ------------------------------------------------------------------ one run


def run(options: LoadOptions) -> LoadReport:
    """One complete run: state, corpus, gateway, load, shutdown. Blocking."""
    shared = corpus_mod.find_shared(Path(options.shared) if options.shared else None)
    if options.mode == "open" and not options.rate:
        raise ValueError("open loop needs --rate")
    if options.receiver == "external" and options.response_url is not None:
        raise ValueError("--receiver external starts its own receiver: drop --response-url")
    templates = corpus_mod.load_templates(shared, frozenset(options.variants), options.all_versions)
    state = Path(tempfile.mkdtemp(prefix="duisgw-bench-", dir=options.state_parent))
    keep = options.keep_state
    pin = options.workers == 1 and options.server_core >= 0
    client = options.client_core if pin and options.client_core >= 0 else None
    side_cores = {client} if client is not None else None  # estate and receiver: client's core
    receiver = None
    try:
        if options.receiver == "external":
            receiver = ReceiverProcess.start(state, corpus_mod.free_ports(1), cores=side_cores)
            options = msgspec.structs.replace(options, response_url=receiver.url)
        config, slot_ids = _prepare_state(state, shared, templates, options)
        corpus = corpus_mod.build_corpus(
            templates,
            state / "pki",
            slots=options.connections,
            total=options.requests,
            versions=corpus_mod.SERVED_VERSIONS if options.all_versions else None,
            processes=options.sign_processes,
            # Each worker buffers its own jobs (worker-i/): N workers take N times the
            # asynchronous requests before the mix turns to synchronous ones only.
            max_async=corpus_mod.MAX_ASYNC_PER_RUN * options.workers,
        )
        print(
            f"corpus: {corpus.size:,} signed requests in {corpus.build_seconds:.2f} s "
            f"({corpus.sign_processes} process(es)), {corpus.async_share:.0%} asynchronous",
            file=sys.stderr,
        )
        contexts = tls_contexts(state / "pki", slot_ids) if options.tls else None
        estate = None
        if options.estate == "network":
            port = corpus_mod.free_ports(1)
            _use_estate_link(config, port)
            estate = EstateProcess.start(config, port, cores=side_cores)
        gateway = GatewayProcess.start(
            config,
            workers=options.workers,
            cores={options.server_core} if pin else None,
            profile=Path(options.profile).resolve() if options.profile else None,
        )
        ready = False
        try:
            gateway.wait_ready()
            ready = True
            estate_cpu = estate.cpu_seconds() if estate is not None else 0.0
            receiver_cpu = receiver.cpu_seconds() if receiver is not None else 0.0
            report = _drive(options, corpus, gateway, contexts)
            if estate is not None:
                report.estate_cpu_seconds = estate.cpu_seconds() - estate_cpu
            if receiver is not None:
                report.receiver_cpu_seconds = receiver.cpu_seconds() - receiver_cpu
                settled = settle(receiver, report.async_acknowledged, options.settle_seconds)
                if not settled and options.settle_seconds:
                    keep = True
                    print(short_delivery(receiver, report, gateway, estate), file=sys.stderr)
        finally:
            report_exit = gateway.stop()
            estate_early = estate.process.poll() if estate is not None else None
            if estate is not None:
                estate.stop()
            # Keep a log worth reading; one that never got ready is in GatewayFailed.
            keep = keep or (ready and (report_exit != 0 or estate_early is not None))
        report.server_exit_code = report_exit
        report.estate_early_exit = estate_early
        report.receiver = (
            options.receiver if receiver is not None else options.response_url or "inbox"
        )
        if receiver is not None:
            # After the gateway stopped: the deliveries of its drain are counted too.
            stats = receiver.stats()
            report.deliveries_received = stats.delivered
            report.distinct_messages_received = stats.distinct_messages
        return report
    finally:
        if receiver is not None:
            receiver.stop()
        if keep:
            print(f"state and gateway log kept in {state}", file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)


def settle(receiver: ReceiverProcess, expected: int, seconds: float) -> bool:
    """Until the receiver holds `expected` distinct messages, for at most `seconds`;
    whether it got there."""
    deadline = time.monotonic() + seconds
    while receiver.stats().distinct_messages < expected:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def short_delivery(
    receiver: ReceiverProcess,
    report: LoadReport,
    gateway: GatewayProcess,
    estate: EstateProcess | None,
) -> str:
    """What a run whose deliveries fell short leaves to read: the counts and each
    process's log tail (the state directory is kept too)."""
    held = receiver.stats().distinct_messages
    parts = [
        f"bench.load: the receiver holds {held} of {report.async_acknowledged} acknowledged "
        "asynchronous requests' responses after the settle time",
        f"--- gateway log:\n{gateway.log_tail()}",
    ]
    if estate is not None:
        status = estate.process.poll()
        running = "running" if status is None else f"exited {status}"
        parts.append(f"--- estate ({running}) log:\n{estate.log_tail()}")
    parts.append(f"--- receiver log:\n{receiver.log_tail()}")
    return "\n".join(parts)


def _use_estate_link(config: Path, port: int) -> None:
    """bench.toml with the devices behind the estate link (docs/estate-link.md)."""
    config.write_text(
        config.read_text()
        + f'\n[estate]\ntransport = "network"\naddress = "127.0.0.1:{port}"\n'
        + 'node_id = "bench"\n'
    )


def _prepare_state(
    state: Path, shared: Path, templates: list[corpus_mod.Template], options: LoadOptions
) -> tuple[Path, list[list[str]]]:
    """The default state, one slot of User IDs per connection, and bench.toml."""
    now = dt.datetime.now(dt.UTC)
    default_config = ensure_default_state(state, now)
    originals = sorted({t.originator for t in templates})
    users, inventory = corpus_mod.add_slot_users(state, originals, options.connections, now)
    if options.response_url is not None:
        corpus_mod.point_users_at(users, options.response_url)
    slot_ids = [
        [corpus_mod.slot_user_id(o, k) for o in originals] for k in range(options.connections)
    ]
    config = corpus_mod.write_bench_config(
        default_config,
        users,
        inventory,
        xsd_dir=shared / "duis" / "xsd" if options.xsd else None,
        tls_slots=slot_ids if options.tls else None,
        admin_ports=options.workers,
        rules=Path(options.rules) if options.rules else None,
        synchronous=options.synchronous,
        overrides=options.overrides,
    )
    return config, slot_ids


def _drive(
    options: LoadOptions,
    corpus: corpus_mod.Corpus,
    gateway: GatewayProcess,
    contexts: list[ssl.SSLContext] | None,
) -> LoadReport:
    pinned = options.workers == 1 and options.client_core >= 0
    previous = os.sched_getaffinity(0)
    if pinned:
        os.sched_setaffinity(0, {options.client_core})
    warm = min(options.warmup, min(len(s) for s in corpus.slots) // 4)
    address = ("127.0.0.1", gateway.duis_port)
    try:
        # Warm-up: connections, lxml and catalogue caches, the first replay rows.
        warming = trio.run(closed_loop, address, [s[:warm] for s in corpus.slots], contexts, None)
        measured = [s[warm:] for s in corpus.slots]
        server_cpu, client_cpu = gateway.cpu_seconds(), time.process_time()
        buckets = gateway.latency_buckets()
        checks_cpu = gateway.checks_cpu()
        if options.mode == "open":
            assert options.rate is not None
            tally = trio.run(open_loop, address, measured, contexts, options.rate)
        else:
            tally = trio.run(closed_loop, address, measured, contexts, options.seconds)
        server_cpu = gateway.cpu_seconds() - server_cpu
        client_cpu = time.process_time() - client_cpu
        after = gateway.latency_buckets()
        checks_after = gateway.checks_cpu()
        checks_seconds, checked = checks_after[0] - checks_cpu[0], checks_after[1] - checks_cpu[1]
        server_buckets = {bound: after[bound] - buckets.get(bound, 0.0) for bound in after}
    finally:
        os.sched_setaffinity(0, previous)
    gateway_pin = (
        f"gateway on core {options.server_core}" if options.server_core >= 0 else "gateway unpinned"
    )
    pinning = ", ".join(
        [
            gateway_pin
            if options.workers == 1
            else f"{options.workers} gateway workers placed by duisgw itself",
            f"client on core {options.client_core}" if pinned else "client unpinned",
        ]
    )
    report = _report(options, corpus, tally, server_cpu, client_cpu, pinning)
    report.estate = options.estate
    report.async_acknowledged = warming.codes["I99"] + tally.codes["I99"]
    report.server_timed_p99_ms = bucket_percentile(server_buckets, 0.99) * 1000
    report.checks_cpu_per_request_us = checks_seconds / checked * 1e6 if checked else 0.0
    return report


def bucket_percentile(cumulative: dict[float, float], fraction: float) -> float:
    """The smallest bucket bound holding `fraction` of the observations (an upper bound)."""
    total = cumulative.get(math.inf, 0.0)
    for bound in sorted(cumulative):
        if total and cumulative[bound] >= fraction * total:
            return bound
    return 0.0


def _report(
    options: LoadOptions,
    corpus: corpus_mod.Corpus,
    tally: Tally,
    server_cpu: float,
    client_cpu: float,
    pinning: str,
) -> LoadReport:
    answered = len(tally.latencies)
    lags = sorted(tally.send_lags)
    return LoadReport(
        mode=options.mode,
        connections=options.connections,
        workers=options.workers,
        tls=options.tls,
        xsd=options.xsd,
        requests_measured=answered,
        seconds=tally.elapsed,
        throughput_per_second=answered / tally.elapsed if tally.elapsed else 0.0,
        target_rate_per_second=options.rate if options.mode == "open" else None,
        latency=summarise(tally.latencies),
        latency_from_due=summarise(tally.latencies_from_due) if options.mode == "open" else None,
        send_delay_p99_ms=percentile(lags, 0.99) * 1000,
        client_wake_lateness_p99_ms=percentile(sorted(tally.wake_lateness), 0.99) * 1000,
        http_status={str(k): v for k, v in sorted(tally.statuses.items())},
        duis_codes=dict(sorted(tally.codes.items())),
        unexpected_codes=tally.unexpected,
        failures=dict(tally.failures),
        client_cpu_seconds=client_cpu,
        server_cpu_seconds=server_cpu,
        server_cpu_per_request_us=server_cpu / answered * 1e6 if answered else 0.0,
        server_exit_code=None,
        corpus_size=corpus.size,
        corpus_build_seconds=corpus.build_seconds,
        corpus_sign_processes=corpus.sign_processes,
        corpus_async_share=corpus.async_share,
        versions=list(corpus.versions),
        templates=list(corpus.templates),
        pinning=pinning,
    )


def _from_due_line(r: LoadReport) -> list[str]:
    due = r.latency_from_due
    if due is None:
        return []
    return [
        f"from due ms     p50 {due.p50_ms:.2f}  p99 {due.p99_ms:.2f}  p99.9 {due.p999_ms:.2f}"
        "  (the client's own lateness in sending left in)"
    ]


def format_report(r: LoadReport) -> str:
    lat = r.latency
    rate = f" (target {r.target_rate_per_second:,.0f}/s)" if r.target_rate_per_second else ""
    lines = [
        f"mode            {r.mode} loop{rate}, {r.connections} connections, {r.workers} "
        f"worker(s), {'TLS' if r.tls else 'plain HTTP'}, XSD {'on' if r.xsd else 'off'}",
        f"pinning         {r.pinning}",
        f"answered        {r.requests_measured:,} in {r.seconds:.2f} s",
        f"throughput      {r.throughput_per_second:,.0f} requests/s",
        f"latency ms      p50 {lat.p50_ms:.2f}  p90 {lat.p90_ms:.2f}  p99 {lat.p99_ms:.2f}  "
        f"p99.9 {lat.p999_ms:.2f}  max {lat.max_ms:.2f}  mean {lat.mean_ms:.2f}",
        "histogram ms    " + "  ".join(f"{k}:{v}" for k, v in lat.histogram_ms.items()),
        f"server-timed    p99 <= {r.server_timed_p99_ms:g} ms (gateway histogram bucket)",
        f"send delay p99  {r.send_delay_p99_ms:.2f} ms after due; client wake-up lateness p99 "
        f"{r.client_wake_lateness_p99_ms:.2f} ms"
        if r.mode == "open"
        else "send delay      - (closed loop)",
        *_from_due_line(r),
        f"HTTP status     {r.http_status}",
        f"DUIS codes      {r.duis_codes}  unexpected: {r.unexpected_codes}",
        f"failures        {r.failures or 'none'}",
        f"CPU seconds     server {r.server_cpu_seconds:.2f} "
        f"({r.server_cpu_per_request_us:.0f} us/request), client {r.client_cpu_seconds:.2f}"
        + (f", estate {r.estate_cpu_seconds:.2f}" if r.estate == "network" else "")
        + (f", receiver {r.receiver_cpu_seconds:.2f}" if r.receiver == "external" else ""),
        f"checks CPU      {r.checks_cpu_per_request_us:.0f} us/request (the gateway's own timing)",
        f"estate          {r.estate}"
        + (" (duisgw estate serve, on the client's core)" if r.estate == "network" else ""),
        f"receiver        {receiver_line(r)}",
        f"corpus          {r.corpus_size:,} requests signed in {r.corpus_build_seconds:.2f} s, "
        f"{r.corpus_async_share:.0%} async, versions {', '.join(r.versions)}",
        f"gateway exit    {r.server_exit_code}"
        + (
            f"; the estate exited {r.estate_early_exit} before the run ended"
            if r.estate_early_exit is not None
            else ""
        ),
    ]
    return "\n".join(lines)


def receiver_line(r: LoadReport) -> str:
    """Where the Users' receiver ran and, for bench.receiver, what it received."""
    if r.receiver == "inbox":
        return "the dev inbox, in the gateway's process"
    if r.receiver != "external":
        return r.receiver
    return (
        f"bench.receiver in its own process: {r.deliveries_received:,} deliveries "
        f"({r.distinct_messages_received:,} distinct messages) for "
        f"{r.async_acknowledged:,} acknowledged asynchronous requests"
    )


def parse_args(argv: list[str] | None) -> tuple[LoadOptions, bool]:
    """The options and whether to print JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument("--requests", type=int, default=20_000, help="corpus size (signed up front)")
    p.add_argument("--connections", type=int, default=32, help="one slot of User IDs each")
    p.add_argument("--seconds", type=float, help="closed loop: stop after this long")
    p.add_argument("--rate", type=float, help="open loop: requests per second")
    p.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP_PER_CONNECTION,
        help="requests per connection sent before measuring",
    )
    p.add_argument("--variants", default="1,8", help="CommandVariants of the templates used")
    p.add_argument(
        "--all-versions",
        action="store_true",
        help="rewrite schemaVersion through every served version (5.0, 5.1, 5.3, 5.4)",
    )
    p.add_argument("--no-xsd", dest="xsd", action="store_false", help="gateway without XSD checks")
    p.add_argument("--rules", help="threshold rules file (TOML) for the gateway")
    p.add_argument(
        "--synchronous",
        choices=("full", "normal"),
        default="full",
        help="the gateway's [storage] synchronous (journal fsync per commit or not)",
    )
    add_placement_arguments(p)
    add_receiver_argument(p, "inbox")
    p.add_argument(
        "--estate",
        choices=("embedded", "network", "both"),
        default="embedded",
        help="simulated devices in the gateway's process, in `duisgw estate serve`, or "
        "one run each way with the gateway's CPU per request compared",
    )
    p.add_argument(
        "--settle-seconds",
        type=float,
        default=0.0,
        help="with --receiver external: after the load, wait up to this long for a delivery "
        "per acknowledged asynchronous request before stopping the gateway",
    )
    p.add_argument("--tls", action="store_true", help="mutual TLS with the dev PKI's TLS certs")
    p.add_argument("--workers", type=int, default=1, help="duisgw serve --workers N")
    p.add_argument("--server-core", type=int, default=0, help="-1: do not pin the gateway")
    p.add_argument("--client-core", type=int, default=1, help="-1: do not pin the client")
    p.add_argument("--sign-processes", type=int, default=SIGN_PROCESSES)
    p.add_argument("--shared", help="the shared test data (default: ../shared)")
    p.add_argument("--keep-state", action="store_true", help="keep the state dir and log")
    p.add_argument("--state-parent", help="make the state dir (journals) here (default: $TMPDIR)")
    p.add_argument("--profile", help="run the gateway under cProfile, stats to this file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    values = vars(p.parse_args(argv))
    as_json = values.pop("json")
    values["variants"] = [int(v) for v in values["variants"].split(",")]
    values["overrides"] = config_overrides(values.pop("set"), values.pop("instant_devices"))
    if values["receiver"] == "external" and values["response_url"] is not None:
        p.error("--receiver external starts its own receiver: drop --response-url")
    return msgspec.convert(values, LoadOptions), as_json


def add_placement_arguments(p: argparse.ArgumentParser) -> None:
    """Where the estate and the Users' receiver run (bench.load and bench.compare)."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a key of the gateway's bench.toml (VALUE in TOML), repeatable",
    )
    p.add_argument(
        "--response-url",
        help="every User's Receive Response URL (a receiver outside the gateway's process)",
    )
    p.add_argument(
        "--instant-devices",
        action="store_true",
        help="simulated hubs answer at once, 64 commands at a time (default: seconds each, "
        "one at a time, so few asynchronous requests complete during a run)",
    )


def add_receiver_argument(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--receiver",
        choices=("inbox", "external"),
        default=default,
        help="the Users' receiver: the dev inbox in the gateway's process (or --response-url),"
        " or `python -m bench.receiver` started on the client's core",
    )


def config_overrides(given: list[str], instant_devices: bool) -> tuple[str, ...]:
    """The config overrides of --set, after those of --instant-devices (so --set wins)."""
    return (*(INSTANT_DEVICES if instant_devices else ()), *given)


def placement(options: LoadOptions) -> str:
    """Where the device estate and the receiver ran, for the reports."""
    estate = (
        "`duisgw estate serve`, in its own process"
        if options.estate == "network"
        else "the embedded simulator, in the gateway's process"
    )
    rest = options.overrides
    if rest[: len(INSTANT_DEVICES)] == INSTANT_DEVICES:
        estate += ", instant devices"
        rest = rest[len(INSTANT_DEVICES) :]
    if rest:
        estate += f" (overrides: {', '.join(rest)})"
    if options.receiver == "external":
        receiver = "`python -m bench.receiver`, in its own process"
    else:
        receiver = options.response_url or "the dev inbox, in the gateway's process"
    text = f"estate: {estate}; receiver: {receiver}"
    pinned = options.workers == 1 and options.server_core >= 0 and options.client_core >= 0
    if pinned and (options.estate == "network" or options.receiver == "external"):
        text += f"; processes of their own on core {options.client_core} (the client's)"
    return text


def main(argv: list[str] | None = None) -> int:
    options, as_json = parse_args(argv)
    ways: list[Literal["embedded", "network"]] = (
        ["embedded", "network"] if options.estate == "both" else [options.estate]
    )
    reports = []
    try:
        for way in ways:
            reports.append(run(msgspec.structs.replace(options, estate=way)))
    except corpus_mod.SharedDataMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except GatewayFailed as exc:
        print(f"bench: the gateway failed: {exc}", file=sys.stderr)
        return 1
    if as_json:
        document: object = reports[0] if len(reports) == 1 else reports
        print(msgspec.json.format(msgspec.json.encode(document)).decode())
    else:
        print("\n\n".join(format_report(report) for report in reports))
        if len(reports) == 2:
            print("\n" + estate_comparison(*reports))
    return 0 if all(clean(report) for report in reports) else 1


def estate_comparison(embedded: LoadReport, network: LoadReport) -> str:
    """The gateway's CPU per request with the devices in its process and out of it."""
    inside, outside = embedded.server_cpu_per_request_us, network.server_cpu_per_request_us
    ratio = outside / inside if inside else 0.0
    return (
        f"gateway CPU per request: estate in-process {inside:.0f} us, out of process "
        f"{outside:.0f} us (ratio {ratio:.2f}; the estate process used "
        f"{network.estate_cpu_seconds:.2f} s for {network.requests_measured:,} requests)"
    )


def clean(report: LoadReport) -> bool:
    """Every request answered with its expected code, the gateway exited 0 and the estate
    (if one ran beside it) lasted the run."""
    return (
        report.server_exit_code == 0
        and report.estate_early_exit is None
        and not report.failures
        and not report.unexpected_codes
    )


if __name__ == "__main__":
    sys.exit(main())
