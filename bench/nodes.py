"""Several nodes on one Redis: throughput for 1, 2 and 3 nodes beside the SQLite node, and
what a replay decision costs on each backend.

    python -m bench.nodes [--nodes 1,2,3] [--requests N] [--connections K] [--json]

Part 1, the gateway: a fresh estate (the bench's slot Users), one corpus signed before
any node starts, then for each setup separate `duisgw serve` processes
(bench/gateway_process.py: `write_node_configs`, `GatewayNodes`): the SQLite default on
one node (the reference), then `[state] backend = "redis"` on 1, 2, 3 nodes, one bench
Redis (its own `redis-server`, appendfsync always, in a temporary directory). Closed
loop: K keep-alive connections, connection k on node k mod N. Every setup sends the same
corpus with counters above the previous setup's, so the Redis setups all start from one
warm key space.

Part 2, the replay store alone (no HTTP): `admit` one at a time (one round trip, or one
SQLite transaction, each) and 64 at once (shared round trips / group commits), on the
SQLite guard (synchronous = FULL) and on the Redis store; microseconds per request.

Every figure is printed with its ratio to the SQLite reference of the same run. On a
2-core machine several nodes share the cores with Redis and the client: the node
figures say what this machine does, not how nodes scale on separate machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import trio

from bench import corpus as corpus_mod
from bench.client import Tally, closed_loop
from bench.gateway_process import GatewayNodes, write_node_configs
from gateway.core.config import SharedRedisConfig
from gateway.devkit.default import ensure_default_state
from gateway.stores.redis_shared import open_shared_redis
from gateway.stores.replay import SharedReplayGuard
from gateway.stores.replay_redis import open_redis_replay_store
from mmc.identifiers import RequestId

REDIS_START_TIMEOUT_SECONDS = 10.0
STORE_REQUESTS = 2_000
STORE_CONCURRENCY = 64
BENCH_KEY_PREFIX = "bench"
ORIGINATOR = "90-B3-D5-1F-30-01-00-00"
TARGET = "00-DB-12-34-56-78-90-A0"


class Setup(msgspec.Struct, kw_only=True):
    backend: str
    nodes: int
    requests: int
    seconds: float
    throughput_per_second: float
    ratio_to_sqlite: float
    p50_ms: float
    p99_ms: float
    unexpected_codes: int
    failures: int


class StoreCost(msgspec.Struct, kw_only=True):
    backend: str
    concurrency: int
    microseconds_per_request: float
    ratio_to_sqlite: float


class NodesReport(msgspec.Struct, kw_only=True):
    connections: int
    requests_per_setup: int
    setups: list[Setup]
    replay_store: list[StoreCost]


@contextmanager
def bench_redis(directory: Path) -> Iterator[str]:
    """A private redis-server (AOF, fsync always) for the run; its url."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed")
    port = corpus_mod.free_ports(1)
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            server,
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bench redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(node_counts: list[int], requests: int, connections: int) -> NodesReport:
    shared = corpus_mod.find_shared()
    templates = corpus_mod.load_templates(shared, corpus_mod.DEFAULT_VARIANTS, False)
    base = Path(tempfile.mkdtemp(prefix="duisgw-bench-nodes-"))
    try:
        now = dt.datetime.now(dt.UTC)
        default = ensure_default_state(base, now)
        originals = sorted({t.originator for t in templates})
        users, inventory = corpus_mod.add_slot_users(base, originals, connections, now)
        bench_config = corpus_mod.write_bench_config(
            default, users, inventory, xsd_dir=None, tls_slots=None
        )
        with bench_redis(base / "redis") as url:
            state: dict[str, object] = {
                "backend": "redis",
                "redis": {"url": url, "key_prefix": BENCH_KEY_PREFIX},
            }
            plan: list[tuple[str, int, dict[str, object]]] = [("sqlite", 1, {"backend": "sqlite"})]
            plan += [("redis", n, state) for n in node_counts]
            setups: list[Setup] = []
            for index, (backend, count, setup_state) in enumerate(plan):
                corpus = corpus_mod.build_corpus(
                    templates,
                    base / "pki",
                    slots=connections,
                    total=requests,
                    counter_base=time.time_ns() // 1000 + index * 10 * requests,
                )
                directory = base / f"setup-{index}"
                directory.mkdir()
                copy = directory / "bench.toml"
                copy.write_text(bench_config.read_text())
                configs = write_node_configs(
                    copy, count, state=setup_state, overrides=_absolute(bench_config)
                )
                tally = _drive(configs, corpus.slots)
                setups.append(_setup(backend, count, tally, setups))
            costs = trio.run(_store_costs, base / "replay.sqlite", url)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return NodesReport(
        connections=connections, requests_per_setup=requests, setups=setups, replay_store=costs
    )


def _absolute(bench_config: Path) -> dict[str, dict[str, object]]:
    """The estate's paths, absolute: node configs live elsewhere than bench.toml."""
    base = bench_config.parent.resolve()
    return {
        "trust": {
            "certificate_dirs": [str(base / "pki")],
            "dcc_signing_certificate": str(
                base / "pki" / "dsp-xml-sign-90B3D51F30000002-ds.cert.pem"
            ),
            "dcc_signing_key": str(base / "pki" / "dsp-xml-sign-90B3D51F30000002-ds.key.pem"),
        }
    }


def _drive(configs: list[Path], slots: list[list[corpus_mod.Prepared]]) -> Tally:
    nodes = GatewayNodes.start(configs)
    try:
        tallies = trio.run(_all_nodes, nodes, slots)
    finally:
        nodes.stop()
    merged = Tally()
    for tally in tallies:
        merged.latencies += tally.latencies
        merged.codes.update(tally.codes)
        merged.unexpected += tally.unexpected
        merged.failures.update(tally.failures)
    merged.elapsed = max(t.elapsed for t in tallies)
    return merged


async def _all_nodes(nodes: GatewayNodes, slots: list[list[corpus_mod.Prepared]]) -> list[Tally]:
    count = len(nodes.nodes)
    tallies: list[Tally] = []

    async def one(index: int) -> None:
        address = ("127.0.0.1", nodes.nodes[index].duis_port)
        tallies.append(await closed_loop(address, slots[index::count], None, None))

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
    return tallies


def _setup(backend: str, count: int, tally: Tally, before: list[Setup]) -> Setup:
    ordered = sorted(tally.latencies)
    answered = len(ordered)
    throughput = answered / tally.elapsed if answered else 0.0
    reference = before[0].throughput_per_second if before else throughput
    return Setup(
        backend=backend,
        nodes=count,
        requests=answered,
        seconds=round(tally.elapsed, 3),
        throughput_per_second=round(throughput, 1),
        ratio_to_sqlite=round(throughput / reference, 2) if reference else 0.0,
        p50_ms=round(ordered[answered // 2] * 1000, 2) if ordered else 0.0,
        p99_ms=round(ordered[min(answered - 1, answered * 99 // 100)] * 1000, 2)
        if ordered
        else 0.0,
        unexpected_codes=tally.unexpected,
        failures=sum(tally.failures.values()),
    )


async def _store_costs(sqlite_path: Path, url: str) -> list[StoreCost]:
    costs: list[StoreCost] = []
    guard = await SharedReplayGuard.open(sqlite_path)
    try:
        for index, concurrency in enumerate((1, STORE_CONCURRENCY)):
            costs.append(
                StoreCost(
                    backend="sqlite",
                    concurrency=concurrency,
                    microseconds_per_request=await _admit_cost(
                        guard.admit, concurrency, "AB"[index]
                    ),
                    ratio_to_sqlite=1.0,
                )
            )
    finally:
        await guard.aclose()
    settings = SharedRedisConfig(url=url, key_prefix=f"{BENCH_KEY_PREFIX}-store")
    async with open_shared_redis(settings) as shared, open_redis_replay_store(shared) as store:
        for index, concurrency in enumerate((1, STORE_CONCURRENCY)):
            micros = await _admit_cost(store.admit, concurrency, "CD"[index])
            reference = costs[index].microseconds_per_request
            costs.append(
                StoreCost(
                    backend="redis",
                    concurrency=concurrency,
                    microseconds_per_request=micros,
                    ratio_to_sqlite=round(micros / reference, 2) if reference else 0.0,
                )
            )
    return costs


async def _admit_cost(admit: object, concurrency: int, run: str) -> float:
    """Microseconds per `admit` with `concurrency` callers, each its own originator
    (`run`, a hex digit, keeps the originators of each measurement apart)."""
    call = admit  # ReplayStore.admit of either backend
    per_caller = STORE_REQUESTS // concurrency
    started = time.perf_counter()

    async def caller(k: int) -> None:
        originator = f"90-B3-D5-1F-3C-{run}{k >> 8:X}-{(k >> 4) & 15:X}0-{k & 15:02X}"
        for counter in range(per_caller):
            verdict = await call(RequestId(originator, TARGET, counter), 1)  # type: ignore[operator]
            assert verdict.verdict.value == "fresh"

    async with trio.open_nursery() as nursery:
        for k in range(concurrency):
            nursery.start_soon(caller, k)
    return round((time.perf_counter() - started) / (per_caller * concurrency) * 1e6, 1)


def format_report(report: NodesReport) -> str:
    lines = [
        f"{report.requests_per_setup:,} requests per setup, {report.connections} connections "
        "(connection k on node k mod N), closed loop",
        "backend  nodes  req/s     ratio  p50 ms  p99 ms  unexpected  failures",
    ]
    for s in report.setups:
        lines.append(
            f"{s.backend:<8} {s.nodes:>5}  {s.throughput_per_second:>8,.0f}  "
            f"{s.ratio_to_sqlite:>5.2f}  {s.p50_ms:>6.2f}  {s.p99_ms:>6.2f}  "
            f"{s.unexpected_codes:>10}  {s.failures:>8}"
        )
    lines.append("replay store alone: microseconds per admit (ratio to SQLite, same concurrency)")
    for c in report.replay_store:
        lines.append(
            f"  {c.backend:<6} {c.concurrency:>3} at once  {c.microseconds_per_request:>8.1f} us"
            f"  x{c.ratio_to_sqlite:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nodes", description=__doc__)
    parser.add_argument("--nodes", default="1,2,3", help="Redis node counts (comma-separated)")
    parser.add_argument("--requests", type=int, default=6_000)
    parser.add_argument("--connections", type=int, default=24)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.nodes.split(",") if n]
    report = run(counts, args.requests, args.connections)
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print(format_report(report))
    bad = any(s.unexpected_codes or s.failures for s in report.setups)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
