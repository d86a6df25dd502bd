"""The bench keeps working: tiny runs of each tool, through their command lines.

Asserts that they complete, that every request got its expected DUIS code, and that
the JSON carries its fields. Never anything about speed: that is what the bench
reports, on a machine chosen for it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from bench import compare, corpus, rtds_templates, stack_floor, stack_floor_server, verifier_peers
from bench.client import closed_loop
from bench.gateway_process import StackFloorProcess, workers_unavailable
from bench.load import LoadReport, format_report, placement
from bench.ports import free_ports
from bench.redis_process import REDIS_SERVER
from bench.verifier_peers import PeerRate
from gateway.core.config import decode_config
from gateway.core.simulator_config import QueueLimits
from gateway.devkit.default import ensure_default_state
from gateway.stores.replay_sqlite import ReplayDatabase

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_SECONDS = 180
LOAD_FIELDS = {
    "mode",
    "connections",
    "workers",
    "requests_measured",
    "seconds",
    "throughput_per_second",
    "latency",
    "http_status",
    "duis_codes",
    "unexpected_codes",
    "failures",
    "client_cpu_seconds",
    "server_cpu_seconds",
    "server_exit_code",
    "corpus_size",
    "corpus_build_seconds",
    "pinning",
    "server_timed_p99_ms",
    "client_wake_lateness_p99_ms",
}
LATENCY_FIELDS = {"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms", "histogram_ms"}


@pytest.fixture(scope="module", autouse=True)
def shared_data() -> Path:
    try:
        return corpus.find_shared()
    except corpus.SharedDataMissing as exc:
        pytest.skip(str(exc))


def run_json(module: str, *args: str) -> Any:
    return run_json_logged(module, *args)[0]


def run_json_logged(module: str, *args: str) -> tuple[Any, str]:
    """The tool's JSON report, and what it printed to stderr (diagnostics)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout), done.stderr


@pytest.fixture(scope="module")
def closed_report() -> Any:
    return run_json(
        "bench.load",
        "--requests",
        "200",
        "--connections",
        "2",
        "--warmup",
        "5",
        "--sign-processes",
        "1",
    )


def assert_answered_as_expected(report: Any, measured: int) -> None:
    assert set(report) >= LOAD_FIELDS
    assert set(report["latency"]) >= LATENCY_FIELDS
    assert report["server_exit_code"] == 0
    assert report["failures"] == {}
    assert report["unexpected_codes"] == 0
    assert report["http_status"] == {"200": measured}
    assert set(report["duis_codes"]) == {"I0", "I99"}  # CV 8 and CV 1 templates
    assert sum(report["duis_codes"].values()) == report["requests_measured"] == measured


def test_closed_loop_answers_every_request(closed_report: Any) -> None:
    assert_answered_as_expected(closed_report, 200 - 2 * 5)
    assert closed_report["mode"] == "closed"
    # The gateway's own timing of its checks reached the report (its /metrics, by worker).
    assert closed_report["checks_cpu_per_request_us"] > 0


def test_open_loop_answers_every_request() -> None:
    report = run_json(
        "bench.load",
        "--mode",
        "open",
        "--rate",
        "100",
        "--requests",
        "100",
        "--connections",
        "2",
        "--warmup",
        "5",
        "--sign-processes",
        "1",
    )
    assert_answered_as_expected(report, 100 - 2 * 5)
    assert report["target_rate_per_second"] == 100


def test_estate_both_ways_reports_the_gateway_cpu_each_way() -> None:
    """`--estate both`: one run with the simulator in the gateway, one with `duisgw estate
    serve` beside it; the gateway's CPU per request is reported for each."""
    reports = run_json(
        "bench.load",
        "--estate",
        "both",
        "--requests",
        "100",
        "--connections",
        "2",
        "--warmup",
        "5",
        "--sign-processes",
        "1",
    )
    assert [r["estate"] for r in reports] == ["embedded", "network"]
    for report in reports:
        assert_answered_as_expected(report, 100 - 2 * 5)
        assert report["server_cpu_per_request_us"] > 0
    assert reports[0]["estate_cpu_seconds"] == 0.0  # no estate process in the first run
    assert reports[1]["estate_cpu_seconds"] >= 0.0


def test_receiver_out_of_process_takes_every_acknowledged_request() -> None:
    """`--receiver external --estate network`: bench.receiver and `duisgw estate serve`
    beside the gateway; with instant devices every I99 is delivered before the gateway
    stops, and the report says where both ran."""
    report, stderr = run_json_logged(
        "bench.load",
        *("--receiver", "external", "--estate", "network", "--instant-devices"),
        *("--settle-seconds", "60", "--requests", "100", "--connections", "2"),
        *("--warmup", "5", "--sign-processes", "1"),
    )
    assert_answered_as_expected(report, 100 - 2 * 5)
    assert report["receiver"] == "external"
    assert report["async_acknowledged"] >= report["duis_codes"]["I99"] > 0
    # Every acknowledged asynchronous request's response reached the receiver, once (a
    # shortfall prints the counts and the gateway's, estate's and receiver's log tails).
    short = stderr[-8000:]
    assert report["distinct_messages_received"] == report["async_acknowledged"], short
    assert report["deliveries_received"] == report["async_acknowledged"], short
    assert report["estate_early_exit"] is None  # it lasted the run
    text = format_report(msgspec.convert(report, LoadReport))
    lines = dict(line.split(None, 1) for line in text.splitlines())
    assert lines["estate"] == "network (duisgw estate serve, on the client's core)"
    assert lines["receiver"] == (
        f"bench.receiver in its own process: {report['deliveries_received']} deliveries "
        f"({report['distinct_messages_received']} distinct messages) for "
        f"{report['async_acknowledged']} acknowledged asynchronous requests"
    )


def test_compare_places_estate_and_receiver_out_of_process_by_default() -> None:
    args = ["--server-core", "0", "--client-core", "1"]
    default = compare_placement(args)
    assert "estate: `duisgw estate serve`, in its own process" in default
    assert "receiver: `python -m bench.receiver`, in its own process" in default
    assert "on core 1 (the client's)" in default
    inside = compare_placement([*args, "--estate", "embedded", "--receiver", "inbox"])
    assert inside == (
        "estate: the embedded simulator, in the gateway's process; "
        "receiver: the dev inbox, in the gateway's process"
    )


def compare_placement(argv: list[str]) -> str:
    """The placement line bench.compare prints for these arguments."""
    return placement(compare.load_options(compare.parse_args(argv)))


def test_workers_run_answers_every_request() -> None:
    reason = workers_unavailable()
    if reason is not None:
        pytest.skip(reason)
    report = run_json(
        "bench.load",
        "--workers",
        "2",
        "--requests",
        "200",
        "--connections",
        "2",
        "--warmup",
        "5",
        "--sign-processes",
        "1",
    )
    assert_answered_as_expected(report, 200 - 2 * 5)
    assert report["workers"] == 2


def test_hotpath_reports_every_stage() -> None:
    report = run_json(
        "bench.hotpath", "--round-seconds", "0.002", "--core", "-1", "--idle-gaps", "2"
    )
    stages = {row["stage"] for row in report["rows"]}
    assert [gap["idle_gap_ms"] for gap in report["idle_gaps"]] == [0.0, 1.0, 10.0, 50.0]
    assert all(gap["cpu_us_per_call"] > 0 for gap in report["idle_gaps"])
    for expected in (
        "RequestChecks.verify",
        "XML parse",
        "XSD validation",
        "ECDSA P-256 verify",
        "access control",
        "HTTP parse (httptools)",
        "response signing",
    ):
        assert any(expected in stage for stage in stages), expected
    summed = [row for row in report["rows"] if row["in_sum"]]
    assert sum(row["share"] for row in summed) == pytest.approx(1.0)
    assert report["raw_verify_per_second"] > 0


def test_compare_judges_every_target(closed_report: Any) -> None:
    closed = msgspec.convert(closed_report, LoadReport)
    peers = [PeerRate("signxml verify alone", 300.0, 10, 0), PeerRate("xmlsec", 600.0, 10, 0)]
    floors = compare.Floors(1000.0, 200.0, 190.0, 230.0, peers)
    rows = compare.targets(floors, closed, closed, None, "not available: test")
    names = " ".join(f"{row.name} {row.threshold}" for row in rows)
    for expected in (
        "throughput",
        "stage floor",
        "raw verify",
        "signxml",
        "xmlsec",
        "p99 ack latency",
        "p99.9",
        "--workers 2",
        "GB 2022",
    ):
        assert expected in names
    assert {row.verdict for row in rows} <= {"PASS", "MISS", "INFO", "not available: test"}


def test_compare_says_when_the_worker_runs_did_unequal_asynchronous_work(
    closed_report: Any,
) -> None:
    """A scaling ratio over runs whose life cycles did different work is flagged."""
    closed = msgspec.convert(closed_report, LoadReport)
    peers = [PeerRate("signxml verify alone", 300.0, 10, 0)]
    floors = compare.Floors(1000.0, 200.0, 190.0, 230.0, peers)
    one = msgspec.structs.replace(closed, deliveries_received=3, async_acknowledged=1_000)
    same = msgspec.structs.replace(closed, deliveries_received=40, async_acknowledged=1_000)
    more = msgspec.structs.replace(closed, deliveries_received=400, async_acknowledged=1_000)

    def flagged(workers: LoadReport) -> list[str]:
        rows = compare.targets(floors, one, None, workers, None)
        return [row.measured for row in rows if "not the same work" in row.name]

    assert flagged(more) == ["0% / 40%"]
    assert flagged(same) == []


def test_compare_gives_each_of_two_workers_the_one_workers_connections(
    closed_report: Any,
) -> None:
    """The scaling run keeps each worker's requests in flight at the one-worker run's,
    and the table says so, with each run's CPU per request beside it."""
    base = compare.load_options(compare.parse_args(["--connections", "24"]))
    options = compare.workers_options(base, seconds=3.0, rate=1_000.0, warmup=5)
    assert (options.workers, options.connections, options.mode) == (2, 48, "closed")
    assert options.requests == compare.corpus_size(1_000.0, 3.0, 48, 5)
    assert options.variants == base.variants and options.receiver == base.receiver

    closed = msgspec.convert(closed_report, LoadReport)
    one = msgspec.structs.replace(
        closed, throughput_per_second=1_000.0, server_cpu_per_request_us=500.0
    )
    two = msgspec.structs.replace(
        closed,
        workers=2,
        connections=48,
        throughput_per_second=1_800.0,
        server_cpu_per_request_us=550.0,
    )
    floors = compare.Floors(1000.0, 200.0, 190.0, 230.0, [])
    rows = {row.name: row for row in compare.targets(floors, one, None, two, None)}
    scaling = rows["--workers 2 over 1 worker"]
    assert (scaling.ratio, scaling.verdict) == (pytest.approx(1.8), "PASS")
    assert "24 connections per worker" in scaling.threshold
    cpu = rows["  CPU per request, 2 workers / 1 (us)"]
    assert (cpu.measured, cpu.ratio, cpu.verdict) == ("550 / 500", pytest.approx(1.1), "INFO")


def test_compare_says_when_the_worker_runs_answered_a_different_mix(closed_report: Any) -> None:
    closed = msgspec.convert(closed_report, LoadReport)
    floors = compare.Floors(1000.0, 200.0, 190.0, 230.0, [])
    one = msgspec.structs.replace(closed, duis_codes={"I99": 670, "I0": 330})
    close = msgspec.structs.replace(closed, duis_codes={"I99": 640, "I0": 360})
    cheaper = msgspec.structs.replace(closed, duis_codes={"I99": 540, "I0": 460})

    def flagged(workers: LoadReport) -> list[str]:
        rows = compare.targets(floors, one, None, workers, None)
        return [row.measured for row in rows if "not the same mix" in row.name]

    assert flagged(cheaper) == ["67% / 54%"]
    assert flagged(close) == []


def test_compare_sets_the_machines_idle_cost_beside_the_latency(closed_report: Any) -> None:
    closed = msgspec.convert(closed_report, LoadReport)
    measured = compare.Floors(
        1000.0, 200.0, 190.0, 230.0, [], checks_back_to_back_us=100.0, checks_after_idle_us=250.0
    )
    rows = [r for r in compare.targets(measured, closed, closed, None, None) if "idle" in r.name]
    assert [(r.measured, r.ratio, r.verdict) for r in rows] == [("250 / 100", 2.5, "INFO")]
    unmeasured = compare.Floors(1000.0, 200.0, 190.0, 230.0, [])
    assert not [
        r for r in compare.targets(unmeasured, closed, closed, None, None) if "idle" in r.name
    ]


def test_bench_delivery_posts_through_both_clients() -> None:
    rows = run_json(
        "bench.bench_delivery", "--posts", "40", "--concurrency", "1", "4", "--rounds", "1"
    )
    assert [row["concurrency"] for row in rows] == [1, 4]
    for row in rows:
        assert row["httpx_us"] > 0 and row["poster_us"] > 0
        assert row["ratio"] == pytest.approx(row["poster_us"] / row["httpx_us"])


def test_bench_thread_hop_times_both_ways() -> None:
    result = run_json("bench.bench_thread_hop", "--calls", "200", "--rounds", "1")
    assert result["to_thread_us"] > 0 and result["writer_thread_us"] > 0
    assert result["ratio"] == pytest.approx(result["writer_thread_us"] / result["to_thread_us"])
    # Requests read and hopped for, spaced and all at once, each its figure and the ratio.
    assert result["request_spaced_us"] > 0 and result["request_at_once_us"] > 0
    spaced_over = result["request_spaced_us"] / result["request_at_once_us"]
    assert result["spaced_ratio"] == pytest.approx(spaced_over)


def test_compare_summarises_repeated_runs_by_median_and_passes() -> None:
    def row(name: str, ratio: float | None, verdict: str, measured: str) -> compare.Target:
        return compare.Target(name, measured, "t", ratio, verdict)

    runs = [
        [row("throughput", 0.20, "MISS", "1,300"), row("p99 at 650/s", 2.0, "MISS", "10.0")],
        [row("throughput", 0.25, "MISS", "1,600"), row("p99 at 800/s", 0.9, "PASS", "4.5")],
        [
            row("throughput", 0.19, "MISS", "1,250"),
            row("p99 at 1,250/s", 1.1, "MISS", "5.5"),
            row("not the same work", None, "INFO", "0% / 40%"),
        ],
    ]
    lines = {line.split("  ")[0].strip(): line for line in compare.summary_table(runs).splitlines()}
    assert "0.20 (0.19..0.25)" in lines["throughput"] and " 0/3 " in lines["throughput"]
    p99 = lines["p99 at #/s"]  # the rate in a row's name differs between runs
    assert "1.10 (0.90..2.00)" in p99 and " 1/3 " in p99 and p99.endswith("10.0, 4.5, 5.5")
    assert lines["not the same work"].endswith("0% / 40%")


def test_verifier_peers_verify_the_load_corpus() -> None:
    """Both peers accept every request of each mix: the comparison is on valid requests."""
    for mix in ("default", "cv8"):
        report = verifier_peers.measure(mix, 4, -1)
        assert [peer.name for peer in report.peers] == ["signxml verify alone", "xmlsec"]
        for peer in report.peers:
            assert peer.failed == 0 and peer.verified == 4 and peer.per_second > 0


def test_pc_coverage_prints_the_figure_of_the_readme() -> None:
    rows = {row["kind"]: row for row in run_json("bench.pc_coverage")}
    assert set(rows) == {"responses", "alerts"}
    vectors = sum(row["vectors"] for row in rows.values())
    assert vectors == 596
    assert sum(row["typed_keys"] for row in rows.values()) >= 0.9 * vectors
    for row in rows.values():
        assert row["refused"] == 0 and row["invalid"] == 0
        assert row["corrupted_refused"] == row["protected"] > 0


def test_soak_answers_the_well_behaved_client_beside_the_crowd() -> None:
    """A tiny soak: every kind of hostile client gets its refusal, the client its answers.

    The limits are made small so each refusal happens within seconds; the p99 ratio and
    RSS are reported by the bench, never asserted here.
    """
    report = run_json(
        "bench.soak",
        "--seconds",
        "4",
        "--rate",
        "20",
        "--connections",
        "2",
        "--ramp-seconds",
        "3",
        "--cooldown-seconds",
        "1",
        "--peers",
        "2",
        "--idle",
        "60",
        "--slow-heads",
        "2",
        "--slow-bodies",
        "2",
        "--slow-interval-seconds",
        "0.2",
        "--huge-heads",
        "1",
        "--non-readers",
        "1",
        "--sign-processes",
        "1",
        "--limit",
        "max_connections=48",
        "--limit",
        "request_timeout_seconds=1",
        "--limit",
        "send_timeout_seconds=1",
    )
    assert report["server_exit_code"] == 0
    assert report["every_request_answered"] is True
    for phase in ("reference", "crowd"):
        assert report[phase]["answered"] == report[phase]["sent"] > 0
        assert report[phase]["unexpected_codes"] == 0
    assert report["p99_ratio"] > 0 and report["rss"] and report["rss_max_mb"]["crowd"] > 0
    saw = report["crowd_saw"]
    assert set(saw) == {
        "admin",
        "fuzz",
        "huge_head",
        "idle",
        "non_reader",
        "slow_body",
        "slow_head",
    }
    assert saw["slow_head"]["outcomes"].get("HTTP 408", 0) > 0
    assert saw["slow_body"]["outcomes"].get("HTTP 408", 0) > 0
    assert saw["huge_head"]["outcomes"].get("HTTP 431", 0) > 0
    assert saw["non_reader"]["outcomes"].get("closed by the gateway", 0) > 0
    assert saw["idle"]["outcomes"].get("closed silently", 0) > 0  # reclaimed for newcomers
    assert saw["fuzz"]["attempts"] > 0 and saw["admin"]["attempts"] > 0
    counters = report["gateway_metrics"]
    assert counters['duisgw_connections_reclaimed_total{listener="duis"}'] > 0
    assert counters['duisgw_client_timeouts_total{kind="send"}'] > 0
    # What the gateway did in each phase: every well-behaved request went through its
    # pipeline (the crowd's fuzz too), and its young collections show.
    for phase in ("reference", "crowd"):
        figures = report["in_phase"][phase]
        assert figures["pipeline requests"] >= report[phase]["answered"]
        assert 0 <= figures.get("pipeline over 10 ms", 0) <= figures["pipeline requests"]
        assert figures["gc0 pauses"] > 0 and figures["gc0 seconds"] >= 0
        assert figures["deliveries"] >= 0


def test_nodes_bench_runs_every_setup_and_store_round_trip() -> None:
    """bench.nodes: the SQLite node, then Redis nodes, each run answering the whole corpus
    as expected; every store round trip on both backends, with ratios to SQLite."""
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed and CI is set")
        pytest.skip("redis-server is not installed (with CI set this fails instead)")
    report = run_json(
        "bench.nodes",
        "--nodes", "1,2", "--repeats", "2", "--seconds", "0", "--requests", "120",
        "--connections", "4", "--ops", "64",
    )  # fmt: skip
    setups = [(s["backend"], s["nodes"]) for s in report["setups"]]
    assert setups == [("sqlite", 1), ("redis", 1), ("redis", 2)]
    for setup in report["setups"]:
        assert setup["requests_per_run"] == [120, 120], setup  # fresh state every run
        assert setup["unexpected_codes"] == 0 and setup["failures"] == 0, setup
        assert setup["node_exit_failures"] == 0, setup
        spread = setup["throughput_per_second"]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"], setup
    assert report["setups"][0]["ratio_to_sqlite"] == 1.0
    assert [(c["operation"], c["backend"], c["concurrency"]) for c in report["store"]] == [
        (operation, backend, concurrency)
        for operation in ("replay admit", "jobs put")
        for concurrency in (1, 64)
        for backend in ("sqlite", "redis")
    ]
    for cost in report["store"]:
        assert cost["operations_per_run"] == 64 and cost["microseconds_per_operation"]["min"] > 0
        if cost["backend"] == "sqlite":
            assert cost["ratio_to_sqlite"] == 1.0
        else:
            assert cost["ratio_to_sqlite"] > 0


def test_config_overrides_are_toml_values_at_dotted_keys() -> None:
    config: dict[str, object] = {"delivery": {"max_concurrent_posts": 8}}
    corpus.apply_override(config, 'transport.kind = "estate"')
    corpus.apply_override(config, "delivery.max_concurrent_posts=2")
    corpus.apply_override(config, "transport.hubs=[1, 2]")
    assert config == {
        "delivery": {"max_concurrent_posts": 2},
        "transport": {"kind": "estate", "hubs": [1, 2]},
    }
    for bad in ("no-equals", "delivery.max_concurrent_posts=not toml", ".x=1"):
        with pytest.raises(ValueError):
            corpus.apply_override(config, bad)
    with pytest.raises(ValueError, match="not a table"):
        corpus.apply_override(config, "transport.kind.deeper=1")


def test_bench_config_gives_the_one_hub_a_queue_deeper_than_any_run(tmp_path: Path) -> None:
    """Otherwise a run with more commands in flight (two workers) gets "queue full"
    answers, signs and delivers them, and so does more work than the run it is compared
    with; `--set` still wins."""
    now = dt.datetime.now(dt.UTC)
    default_config = ensure_default_state(tmp_path / "state", now)
    users, inventory = corpus.add_slot_users(tmp_path / "state", [], 1, now)

    def written(*overrides: str) -> QueueLimits:
        path = corpus.write_bench_config(
            default_config, users, inventory, xsd_dir=None, tls_slots=None, overrides=overrides
        )
        return decode_config(path.read_bytes(), path).simulator.queue_limits

    deep = written()
    assert deep.max_queued_per_class == corpus.BENCH_HUB_QUEUE > corpus.MAX_ASYNC_PER_RUN * 2
    assert deep.max_queued_per_user_per_class == corpus.BENCH_HUB_QUEUE
    assert deep.max_queued_per_class > QueueLimits().max_queued_per_class
    given = "simulator.queue_limits={max_queued_per_class = 10, max_queued_per_user_per_class = 5}"
    assert written(given) == QueueLimits(max_queued_per_class=10, max_queued_per_user_per_class=5)


# ------------------------------------------------------------------ bench.rtds_templates


def fake_template_package(root: Path, shared: Path) -> Path:
    """A package directory shaped like @smartdcc/duis-templates (templates/*.XML), made
    from ../shared samples: the CS06 11.3 CV 4 the 8.13 sample answers (the future-dated
    sample without its date, counter 1000: the package's IMMEDIATE twin), the 8.13 itself,
    the DUIS 5.2 sample (not served: refused), and a file that is not a request template."""
    samples = shared / corpus.SAMPLES
    templates = root / "package" / "templates"
    templates.mkdir(parents=True)
    old_version = samples / "CS02aMAC_6.24.1_SUCCESS_REQUEST_DUIS_v5.2.XML"
    (templates / "CS02aMAC_6.24.1_V52_REQUEST_DUIS.XML").write_bytes(old_version.read_bytes())
    future = (samples / "CS06_11.3_FUTURE_DATED_SUCCESS_REQUEST_DUIS.XML").read_text()
    immediate = re.sub(r"\s*<sr:ExecutionDateTime>[^<]*</sr:ExecutionDateTime>", "", future)
    immediate = immediate.replace("-90-A0:1001<", "-90-A0:1000<")
    assert immediate != future and "-90-A0:1000<" in immediate
    (templates / "CS06_11.3_IMMEDIATE_SUCCESS_REQUEST_DUIS.XML").write_text(immediate)
    returned = "8.13_RETURN_LOCAL_COMMAND_RESPONSE_CS06_REQUEST_DUIS.XML"
    (templates / returned).write_bytes((samples / returned).read_bytes())
    (templates / "NOT_A_TEMPLATE.XML").write_text("<x/>")
    return root / "package"


def test_rtds_templates_answers_a_tiny_package(tmp_path: Path, shared_data: Path) -> None:
    """bench.rtds_templates' core on a fake package, no network: every template found and
    answered, the 8.13 after the CV 4 and CV 6 that open its local command, the refused
    one listed with its answer."""
    package = fake_template_package(tmp_path, shared_data)
    assert len(rtds_templates.find_templates(package)) == 3
    report = rtds_templates.check_templates(package, "dev")
    assert report.templates_found == 3
    assert report.accepted == 2, rtds_templates.format_report(report)
    refused = "HTTP 400 version: unsupported_version"
    assert {row.outcome: row.count for row in report.outcomes} == {"I0": 2, refused: 1}
    [old] = report.not_accepted
    assert (old.template, old.outcome) == ("CS02aMAC_6.24.1_V52_REQUEST_DUIS.XML", refused)
    assert "'5.2' is not served" in old.detail
    assert [(a.command_variant, a.outcome) for a in report.preparation] == [(4, "I0"), (6, "I0")]
    assert report.gateway_exit_code == 0
    text = rtds_templates.format_report(report)
    assert "3 found, 2 answered I0/I99" in text and "not answered I0/I99 (1)" in text
    decoded = json.loads(msgspec.json.encode(report))
    assert decoded["templates_found"] == 3 and len(decoded["not_accepted"]) == 1


def test_rtds_templates_exits_2_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No templates at --package-dir, or no npm to fetch them: exit 2, saying why."""
    assert rtds_templates.main(["--package-dir", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    assert rtds_templates.main([]) == 2
    assert "npm is not installed" in capsys.readouterr().err


def test_compare_sets_the_checks_in_the_gateway_against_the_checks_alone(
    closed_report: Any,
) -> None:
    """The row says how much more the checks cost inside the loaded gateway, and what
    the rest of each request's CPU was; without the gateway's timing there is no row."""
    closed = msgspec.convert(closed_report, LoadReport)
    peers = [PeerRate("signxml verify alone", 300.0, 10, 0)]
    floors = compare.Floors(1000.0, 200.0, 190.0, 230.0, peers, checks_isolated_us=150.0)
    timed = msgspec.structs.replace(
        closed, checks_cpu_per_request_us=240.0, server_cpu_per_request_us=600.0
    )
    rows = [r for r in compare.targets(floors, timed, None, None, None) if "checks" in r.name]
    assert [(r.measured, r.ratio, r.verdict) for r in rows] == [("240", 1.6, "INFO")]
    assert "alone 150 us" in rows[0].threshold and "the rest 360 us" in rows[0].threshold
    untimed = msgspec.structs.replace(closed, checks_cpu_per_request_us=0.0)
    assert not [r for r in compare.targets(floors, untimed, None, None, None) if "checks" in r.name]


def test_stack_floor_times_each_mode_on_the_load_clients_requests() -> None:
    floor = run_json(
        "bench.stack_floor",
        "--seconds",
        "0.3",
        "--connections",
        "4",
        "--server-core",
        "-1",
        "--client-core",
        "-1",
    )
    assert [m["mode"] for m in floor["modes"]] == ["bare", "edge", "replay"]
    for mode in floor["modes"]:
        assert mode["answered"] > 0 and mode["server_us_per_request"] > 0


def test_stack_floor_replay_mode_commits_a_decision_per_request(tmp_path: Path) -> None:
    answer = tmp_path / "answer.xml"
    answer.write_bytes(b"<ResponseCode>I0</ResponseCode>")
    server = StackFloorProcess.start(tmp_path, free_ports(), "replay", answer, cores=None)
    try:
        slots = [[(stack_floor.wire(b"<x/>"), frozenset({"I0"}))] * 25 for _ in range(4)]
        tally = trio.run(closed_loop, ("127.0.0.1", server.port), slots, None, None)
    finally:
        server.stop()
    assert tally.codes == {"I0": 100} and not tally.failures
    # Every request's counter was committed: the file's last one is the hundredth.
    database = ReplayDatabase(tmp_path / "replay.sqlite")
    try:
        assert database.status(stack_floor_server.ORIGINATOR).last_counter == 100
    finally:
        database.close()


def test_compare_sets_the_serving_ceiling_beside_the_floor_ratio(closed_report: Any) -> None:
    closed = msgspec.convert(closed_report, LoadReport)
    measured = compare.Floors(
        1000.0,
        150.0,
        140.0,
        160.0,
        [PeerRate("xmlsec", 8000.0, 10, 0)],
        serving_bare_us=20.0,
        serving_edge_us=30.0,
        serving_replay_us=50.0,
    )
    rows = [
        r
        for r in compare.targets(measured, closed, None, None, None)
        if "serving" in r.name or "ceiling" in r.name
    ]
    # 150 us of stages and 50 of serving: 0.75 of the floor, 5,000/s, 0.625 of the peer.
    assert [(r.measured, r.ratio, r.verdict) for r in rows] == [
        ("20/30/50", 0.75, "INFO"),
        ("5,000", 0.625, "INFO"),
    ]
    unmeasured = compare.Floors(1000.0, 150.0, 140.0, 160.0, [])
    assert not [
        r for r in compare.targets(unmeasured, closed, None, None, None) if "serving" in r.name
    ]
