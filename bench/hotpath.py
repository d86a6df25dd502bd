"""Hot-path micro-benchmarks: what each stage costs on one realistic signed request.

    python -m bench.hotpath [--template NAME] [--core N] [--round-seconds S] [--json]

The request is an RTDS template from ../shared (default: ECS17b 4.1.1, CV 1, DUIS
5.4) signed with a fresh dev PKI, and the stages run against what the gateway loads
at start (`gateway.compose.load`: the embedded default estate with the DUIS XSDs).
Each row is microseconds per call, the best of several rounds (as timeit takes the
minimum: the least disturbed), and its share of the summed total of a CV 1 request's
stages. The sum is a floor, not the end-to-end cost: the event loop, socket calls and
the replay journal's group commit come on top (`bench.load` measures those). The row
"(whole) RequestChecks.verify" runs the checking stages as the pipeline calls them, on a
fresh parse each time: its gap to the sum of those rows is what warm, repeated
measurement of one tree hides.

`--idle-gaps` adds what the machine does to the same code when it idles between
requests: RequestChecks.verify's mean CPU time per call (thread CPU clock) back to back
and after each idle gap. On this project's VM a call costs several times more after a
10 ms gap than back to back, so the gateway's CPU per request at a low rate is not a
measure of per-wake-up work in its own code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from bench import corpus as corpus_mod
from gateway.core.access import AccessRequest, decide
from gateway.core.certstore import check_signing_certificate, signer_certificate
from gateway.core.clock import SystemClock
from gateway.core.ingest import decode_header, parse_xml
from gateway.core.replay_rules import ReplayGuard
from gateway.core.signature import detach_keeping_tail, parse_signature
from gateway.core.stages import RequestChecks
from gateway.devkit.client import sign_request
from gateway.devkit.default import ensure_default_state
from gateway.edge.http import RequestParser, render_response
from gateway.edge.metrics import Metrics
from gateway.stores.operator_files import Loaded, load, load_config
from gateway.stores.threshold_memory import MemoryThresholdStore
from mmc import responses
from mmc.catalogue import Endpoint
from mmc.codec import extract_body_facts
from mmc.identifiers import RequestId
from parse_correlate.commands import CommandFacts, DeviceType, build_command
from thresholds.config import ThresholdConfig, ThresholdRule

DEFAULT_TEMPLATE = "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS"
ROUNDS = 5
ECDSA = ec.ECDSA(hashes.SHA256())


class Row(msgspec.Struct):
    stage: str
    us_per_call: float
    share: float | None  # of the summed CV 1 path; None for rows outside the sum
    in_sum: bool


class GapRow(msgspec.Struct):
    idle_gap_ms: float
    calls: int
    cpu_us_per_call: float  # mean thread CPU time of one RequestChecks.verify


class HotpathReport(msgspec.Struct):
    template: str
    request_bytes: int
    rows: list[Row]
    summed_us: float
    implied_ceiling_per_second: float
    raw_verify_us: float
    raw_verify_per_second: float
    ceiling_to_raw_verify: float
    idle_gaps: list[GapRow] = msgspec.field(default_factory=list)


def per_call_us(call: Callable[[], object], round_seconds: float) -> float:
    """Best of ROUNDS rounds; each round repeats `call` for about `round_seconds`."""
    call()  # warm caches (lru_cache, lxml dictionaries, prometheus children)
    start = time.perf_counter()
    calls = 1
    while time.perf_counter() - start < round_seconds / 10:
        call()
        calls += 1
    repeat = max(1, calls * 10)
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(repeat):
            call()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e6


def fixture(template: str, state_dir: Path) -> tuple[Loaded, bytes, str]:
    shared = corpus_mod.find_shared()
    xml = (shared / corpus_mod.SAMPLES / f"{template}.XML").read_bytes()
    config_path = ensure_default_state(state_dir, dt.datetime.now(dt.UTC))
    config = load_config(config_path)
    duis = msgspec.structs.replace(config.duis, xsd_dir=str(shared / "duis" / "xsd"))
    state = load(msgspec.structs.replace(config, duis=duis), SystemClock())
    signed, path = sign_request(xml, [state_dir / "pki"], counter=time.time_ns() // 1000)
    return state, signed, path


Stages = dict[str, tuple[Callable[[], object], bool]]
WHOLE_CHECKS_ROW = "(whole) RequestChecks.verify, fresh parse per call"


def stages(state: Loaded, signed: bytes, path: str) -> Stages:
    """Stage name -> (call, counted in the CV 1 sum)."""
    now = SystemClock().now()
    snapshot = state.snapshots.current
    registry = Metrics()
    root = parse_xml(signed)
    header = decode_header(root)
    route = state.versions.route(header.schema_version, now)
    assert route is not None and state.schemas is not None
    srv = route.catalogue.srvs[header.service_reference_variant]
    parts = parse_signature(root)
    cert = signer_certificate(
        snapshot.certstore, parts.issuer_name, parts.serial, parts.certificate
    )
    unsigned = parse_xml(signed)
    detach_keeping_tail(parse_signature(unsigned).signature)
    document = etree.tostring(unsigned.getroottree(), method="c14n")
    der = encode_dss_signature(parts.r, parts.s)
    body = next(c for c in root[1] if isinstance(c.tag, str))
    facts = extract_body_facts(body)
    wire = corpus_mod.http_request(path.encode(), signed)
    http_parser = RequestParser(1 << 20, 16_384)
    request_id = header.request_id
    counters = itertools.count(request_id.counter)
    replay = ReplayGuard()
    ack = responses.acknowledgement(
        route.catalogue, request_id, "I99", srv.reference, srv.variant, now
    )
    requests_counter = registry.requests.labels(route.version, srv.variant, "I99")
    latency = registry.latency.labels("S")
    device = snapshot.inventory.get(request_id.target)
    device_type = DeviceType(device.device_type) if device is not None else DeviceType.ESME
    access = AccessRequest(request_id, header.command_variant, srv.variant, facts.device_ids)
    threshold_check = _threshold_check(request_id.originator, srv.variant)

    def verify_ecdsa() -> None:
        cert.public_key.verify(der, parts.signed_info_c14n, ECDSA)

    def certificate() -> None:
        found = signer_certificate(
            snapshot.certstore, parts.issuer_name, parts.serial, parts.certificate
        )
        check_signing_certificate(
            found,
            at=now,
            signer_eui64=request_id.originator,
            allowed_role_codes=route.catalogue.signer_role_codes,
            store=snapshot.certstore,
        )

    def command() -> object:
        return build_command(
            srv.variant,
            request_id,
            CommandFacts(device_type=device_type),
            originator_counter=request_id.counter,
            now=now,
            critical=srv.critical,
        )

    def metrics() -> None:
        requests_counter.inc()
        latency.observe(0.001)

    def service_response() -> bytes:
        return responses.service_response(
            route.catalogue, request_id, "I0", srv.reference, srv.variant, now
        )

    response = service_response()

    table: dict[str, tuple[Callable[[], object], bool]] = {
        "HTTP parse (httptools)": (lambda: http_parser.feed(wire), True),
        "XML parse (ingest.parse_xml)": (lambda: parse_xml(signed), True),
        "header decode": (lambda: decode_header(root), True),
        "version route": (lambda: state.versions.route(header.schema_version, now), True),
        "XSD validation": (lambda: state.schemas.validate(route.version, root), True),  # type: ignore[union-attr]
        "signature profile + SignedInfo exc-C14N": (lambda: parse_signature(root), True),
        "certificate lookup + rules": (certificate, True),
        "document C14N (inclusive)": (
            lambda: etree.tostring(unsigned.getroottree(), method="c14n"),
            True,
        ),
        "digest SHA-256": (lambda: hashlib.sha256(document).digest(), True),
        "ECDSA P-256 verify": (verify_ecdsa, True),
        "body facts": (lambda: extract_body_facts(body), True),
        "replay admit (in memory)": (
            lambda: replay.admit(
                RequestId(request_id.originator, request_id.target, next(counters)), 1
            ),
            True,
        ),
        "access control (access.decide)": (
            lambda: decide(
                access, srv, snapshot.users, snapshot.inventory, now, Endpoint.SEND, state.dcc_eui64
            ),
            True,
        ),
        "GBCS command build (CV 1)": (command, True),
        "acknowledgement build (I99)": (
            lambda: responses.acknowledgement(
                route.catalogue, request_id, "I99", srv.reference, srv.variant, now
            ),
            True,
        ),
        "metrics: counter inc + histogram observe (bound)": (metrics, True),
        "HTTP response render": (lambda: render_response(200, ack), True),
        "(CV 8) service response build": (service_response, False),
        "(CV 8) response signing (ResponseSigner.sign)": (
            lambda: state.signer.sign(response),
            False,
        ),
        "(as pipeline) metrics labels() lookup + inc": (
            lambda: registry.requests.labels(route.version, srv.variant, "I99").inc(),
            False,
        ),
    }
    table["thresholds (memory store, 3 windows)"] = (threshold_check, True)
    checks = RequestChecks(state.versions, state.schemas, SystemClock())
    table[WHOLE_CHECKS_ROW] = (
        lambda: checks.verify(signed, snapshot.certstore),
        False,
    )
    return table


IDLE_GAPS_MS = (0.0, 1.0, 10.0, 50.0)


def idle_gap_costs(
    state: Loaded, signed: bytes, calls: int, gaps_ms: tuple[float, ...] = IDLE_GAPS_MS
) -> list[GapRow]:
    """RequestChecks.verify's mean CPU per call back to back and after each idle gap."""
    checks = RequestChecks(state.versions, state.schemas, SystemClock())
    certstore = state.snapshots.current.certstore
    checks.verify(signed, certstore)
    rows = []
    for gap_ms in gaps_ms:
        n = calls * 10 if gap_ms == 0 else calls
        spent = 0.0
        for _ in range(n):
            if gap_ms:
                time.sleep(gap_ms / 1000)
            start = time.thread_time()
            checks.verify(signed, certstore)
            spent += time.thread_time() - start
        rows.append(GapRow(gap_ms, n, spent / n * 1e6))
    return rows


def _threshold_check(user_id: str, srv: str) -> Callable[[], object]:
    """The in-process threshold store with a minute, an hour and a day window."""
    rules = (
        ThresholdRule(
            user_id="*", srv="*", window_seconds=86_400, limit=10**8, kind="dcc_quarantine"
        ),
        ThresholdRule(user_id="*", srv="*", window_seconds=60, limit=10**6, kind="user_quarantine"),
        ThresholdRule(user_id="*", srv=srv, window_seconds=3600, limit=10**7, kind="warning"),
    )
    store = MemoryThresholdStore(ThresholdConfig(rules=rules))
    clock = itertools.count()
    return lambda: store.check_and_count(user_id, srv, 1_800_000_000.0 + next(clock) * 1e-4)


def measure(
    template: str,
    round_seconds: float,
    idle_gap_calls: int = 0,
    idle_gaps_ms: tuple[float, ...] = IDLE_GAPS_MS,
) -> HotpathReport:
    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as tmp:
        state, signed, path = fixture(template, Path(tmp))
    measured = {
        name: (per_call_us(call, round_seconds), counted)
        for name, (call, counted) in stages(state, signed, path).items()
    }
    gaps = idle_gap_costs(state, signed, idle_gap_calls, idle_gaps_ms) if idle_gap_calls else []
    summed = sum(us for us, counted in measured.values() if counted)
    rows = [
        Row(name, us, us / summed if counted else None, counted)
        for name, (us, counted) in measured.items()
    ]
    rows.sort(key=lambda r: (not r.in_sum, -r.us_per_call))
    raw_us = raw_verify_us(round_seconds)
    ceiling = 1e6 / summed
    return HotpathReport(
        template=template,
        request_bytes=len(signed),
        rows=rows,
        summed_us=summed,
        implied_ceiling_per_second=ceiling,
        raw_verify_us=raw_us,
        raw_verify_per_second=1e6 / raw_us,
        ceiling_to_raw_verify=ceiling * raw_us / 1e6,
        idle_gaps=gaps,
    )


def raw_verify_us(round_seconds: float) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    message = b"<ds:SignedInfo>" + b"x" * 600 + b"</ds:SignedInfo>"
    signature = key.sign(message, ECDSA)
    public = key.public_key()
    return per_call_us(lambda: public.verify(signature, message, ECDSA), round_seconds)


def format_report(report: HotpathReport) -> str:
    lines = [
        f"{report.template}: {report.request_bytes} bytes signed; us per call, best of "
        f"{ROUNDS} rounds, one core",
        f"{'stage':<52} {'us':>8} {'share':>7}",
    ]
    for row in report.rows:
        share = f"{row.share:7.1%}" if row.share is not None else "   (not summed)"
        lines.append(f"{row.stage:<52} {row.us_per_call:8.2f} {share}")
    lines += [
        f"{'sum of a CV 1 request stages':<52} {report.summed_us:8.2f}",
        f"{'raw P-256 verify (reference)':<52} {report.raw_verify_us:8.2f}"
        f"   = {report.raw_verify_per_second:,.0f}/s",
        f"implied ceiling {report.implied_ceiling_per_second:,.0f} requests/s per core = "
        f"{report.ceiling_to_raw_verify:.2f} of raw verify (before event loop, sockets, journal)",
    ]
    if report.idle_gaps:
        back_to_back = report.idle_gaps[0].cpu_us_per_call
        lines.append("RequestChecks.verify, mean thread CPU per call after an idle gap:")
        for gap in report.idle_gaps:
            lines.append(
                f"  gap {gap.idle_gap_ms:5.1f} ms  {gap.cpu_us_per_call:8.1f} us  "
                f"{gap.cpu_us_per_call / back_to_back:5.2f}x back to back  ({gap.calls} calls)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hotpath", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--template", default=DEFAULT_TEMPLATE, help="sample file name stem")
    parser.add_argument("--core", type=int, default=0, help="pin to this core (-1: do not pin)")
    parser.add_argument("--round-seconds", type=float, default=0.05)
    parser.add_argument(
        "--idle-gaps",
        type=int,
        default=0,
        metavar="CALLS",
        help="also measure RequestChecks.verify's CPU per call after idle gaps of "
        f"{', '.join(f'{g:g}' for g in IDLE_GAPS_MS)} ms, CALLS calls per gap",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.core >= 0:
        os.sched_setaffinity(0, {args.core})
    try:
        report = measure(args.template, args.round_seconds, args.idle_gaps)
    except corpus_mod.SharedDataMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(report)).decode())
    else:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
