"""Several nodes on one Redis against one node on SQLite: requests per second, and what
each store round trip costs on either backend.

    python -m bench.nodes [--nodes 1,2,3] [--repeats 3] [--seconds 6] [--requests 6000]
                          [--connections 24] [--ops 2000] [--no-xsd] [--json]

Every figure is the median of `--repeats` runs with its min..max spread, and its ratio
to the SQLite reference of the same run.

1. **Nodes.** One estate (the bench's slot Users) and one corpus signed before any node
   starts. Setups: the SQLite default on one node (the reference), then `[state] backend
   = "redis"` on each count of `--nodes`, as separate `duisgw serve` processes
   (bench/gateway_process.py) on one private `redis-server` (AOF, appendfsync always).
   Every run starts from empty state (fresh node directories, a new Redis key prefix), so
   the one corpus's counters are new again. A closed loop of `--connections` keep-alive
   connections, connection k always on node k mod N (its User IDs' counters then reach
   one node in order), sends the load tool's default mix (CV 1: jobs journal, then I99;
   CV 8: signed I0) for `--seconds` (0: the whole corpus). Figure: requests answered
   with their expected DUIS code per second; ratio = Redis / SQLite throughput.
2. **The store round trips alone** (no HTTP): the replay decision (`admit`) and the jobs
   journal's `put` (what a CV 1's I99 waits for), on SQLite (synchronous = FULL, group
   commit) and on Redis (one script and the server's fsync each), one caller at a time
   and 64 at once (shared round trips / group commits). Figure: µs per operation; ratio =
   Redis / SQLite µs at the same concurrency (above 1: Redis is slower).

On a 2-core machine the nodes share the cores with Redis and the client: the node
figures say what this machine does, not how nodes scale on separate machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import shutil
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Final

import msgspec
import trio

from bench import corpus as corpus_mod
from bench.client import Tally, closed_loop
from bench.gateway_process import GatewayNodes, write_node_configs
from bench.redis_process import RedisProcess
from gateway.core.config import SharedRedisConfig
from gateway.core.replay_rules import ReplayVerdict
from gateway.devkit.default import ensure_default_state
from gateway.stores.jobs import JobStore, open_sqlite_jobs
from gateway.stores.jobs_redis import RedisJobs
from gateway.stores.redis_shared import open_shared_redis
from gateway.stores.replay import ReplayStore, SharedReplayGuard
from gateway.stores.replay_redis import open_redis_replay_store
from mmc.identifiers import RequestId

CONCURRENCIES: Final = (1, 64)
TARGET: Final = "00-DB-12-34-56-78-90-A0"
JOB_BODY: Final = b"<sr:Request>" + b"x" * 4000 + b"</sr:Request>"  # a signed CV 1's size
JOB_LEASE_SECONDS: Final = 10.0


class Spread(msgspec.Struct, kw_only=True):
    median: float
    min: float
    max: float


class Setup(msgspec.Struct, kw_only=True):
    backend: str
    nodes: int
    runs: int
    throughput_per_second: Spread  # answered with the expected code
    ratio_to_sqlite: float  # median / the SQLite node's median
    requests_per_run: list[int]
    p50_ms: float  # median over the runs
    p99_ms: float
    unexpected_codes: int  # over every run
    failures: int
    node_exit_failures: int


class StoreCost(msgspec.Struct, kw_only=True):
    operation: str  # "replay admit" or "jobs put"
    backend: str
    concurrency: int
    operations_per_run: int
    microseconds_per_operation: Spread
    ratio_to_sqlite: float  # median / SQLite's median, same operation and concurrency


class NodesReport(msgspec.Struct, kw_only=True):
    repeats: int
    seconds_per_run: float  # 0: the whole corpus
    corpus_requests: int
    connections: int
    xsd: bool
    setups: list[Setup]
    store: list[StoreCost]


class Options(msgspec.Struct, kw_only=True):
    node_counts: list[int]
    repeats: int
    seconds: float
    requests: int
    connections: int
    ops: int
    xsd: bool
    shared: Path | None = None
    work_dir: Path | None = None


def _spread(values: list[float]) -> Spread:
    return Spread(
        median=round(statistics.median(values), 1),
        min=round(min(values), 1),
        max=round(max(values), 1),
    )


def _ratio(value: float, reference: float) -> float:
    return round(value / reference, 2) if reference else 0.0


def run(options: Options) -> NodesReport:
    shared = corpus_mod.find_shared(options.shared)
    work = Path(tempfile.mkdtemp(prefix="duisgw-bench-nodes-", dir=options.work_dir)).resolve()
    redis = RedisProcess(work / "redis")
    prefixes = (f"bench{n}" for n in itertools.count())  # every run on empty keys
    try:
        redis.start()
        config, corpus = _prepare(work / "estate", shared, options)
        plan: list[tuple[str, int]] = [("sqlite", 1)]
        plan += [("redis", count) for count in options.node_counts]
        setups: list[Setup] = []
        for backend, count in plan:
            runs: list[_NodeRun] = []
            for _ in range(options.repeats):
                state: dict[str, object] = {"backend": "sqlite"}
                if backend == "redis":
                    redis_state = {"url": redis.url, "key_prefix": next(prefixes)}
                    state = {"backend": "redis", "redis": redis_state}
                runs.append(_run_nodes(config, corpus, state, count, options.seconds))
            setups.append(_setup(backend, count, runs, setups))
            t = setups[-1].throughput_per_second
            progress = f"{t.median:,.0f} req/s ({t.min:,.0f}..{t.max:,.0f})"
            print(f"{backend}, {count} node(s): {progress}", file=sys.stderr)
        store = trio.run(_store_costs, work, redis.url, prefixes, options)
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    return NodesReport(
        repeats=options.repeats,
        seconds_per_run=options.seconds,
        corpus_requests=options.requests,
        connections=options.connections,
        xsd=options.xsd,
        setups=setups,
        store=store,
    )


# -- 1. nodes ------------------------------------------------------------------------------


class _NodeRun(msgspec.Struct, kw_only=True):
    throughput: float
    answered: int
    p50_ms: float
    p99_ms: float
    unexpected: int
    failures: int
    bad_exits: int


def _prepare(base: Path, shared: Path, options: Options) -> tuple[Path, corpus_mod.Corpus]:
    """One estate (PKI, slot users) and one signed corpus for every run."""
    templates = corpus_mod.load_templates(shared, corpus_mod.DEFAULT_VARIANTS, False)
    now = dt.datetime.now(dt.UTC)
    default_config = ensure_default_state(base, now)
    originals = sorted({t.originator for t in templates})
    users, inventory = corpus_mod.add_slot_users(base, originals, options.connections, now)
    config = corpus_mod.write_bench_config(
        default_config,
        users,
        inventory,
        xsd_dir=shared / "duis" / "xsd" if options.xsd else None,
        tls_slots=None,
    )
    corpus = corpus_mod.build_corpus(
        templates, base / "pki", slots=options.connections, total=options.requests
    )
    return config, corpus


def _run_nodes(
    config: Path,
    corpus: corpus_mod.Corpus,
    state: Mapping[str, object],
    count: int,
    seconds: float,
) -> _NodeRun:
    for old in config.parent.glob("node-*"):
        shutil.rmtree(old)  # fresh journals: the corpus's counters are new again
    configs = write_node_configs(config, count, state=state)
    nodes = GatewayNodes.start(configs)
    try:
        tallies = trio.run(_all_nodes, nodes, corpus.slots, seconds or None)
    finally:
        exits = nodes.stop()
    bad_exits = sum(1 for code in exits if code != 0)
    if bad_exits:
        print(f"warning: node exits {exits}\n{nodes.log_tails()}", file=sys.stderr)
    latencies = sorted(itertools.chain.from_iterable(t.latencies for t in tallies))
    unexpected = sum(t.unexpected for t in tallies)
    elapsed = max(t.elapsed for t in tallies)
    answered = len(latencies)
    return _NodeRun(
        throughput=(answered - unexpected) / elapsed,
        answered=answered,
        p50_ms=latencies[answered // 2] * 1000 if latencies else 0.0,
        p99_ms=latencies[min(answered - 1, answered * 99 // 100)] * 1000 if latencies else 0.0,
        unexpected=unexpected,
        failures=sum(sum(t.failures.values()) for t in tallies),
        bad_exits=bad_exits,
    )


async def _all_nodes(
    nodes: GatewayNodes, slots: list[list[corpus_mod.Prepared]], seconds: float | None
) -> list[Tally]:
    count = len(nodes.nodes)
    tallies: list[Tally] = []

    async def one(index: int) -> None:
        address = ("127.0.0.1", nodes.nodes[index].duis_port)
        tallies.append(await closed_loop(address, slots[index::count], None, seconds))

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
    return tallies


def _setup(backend: str, count: int, runs: list[_NodeRun], before: list[Setup]) -> Setup:
    throughput = _spread([r.throughput for r in runs])
    reference = before[0].throughput_per_second.median if before else throughput.median
    return Setup(
        backend=backend,
        nodes=count,
        runs=len(runs),
        throughput_per_second=throughput,
        ratio_to_sqlite=_ratio(throughput.median, reference),
        requests_per_run=[r.answered for r in runs],
        p50_ms=round(statistics.median(r.p50_ms for r in runs), 2),
        p99_ms=round(statistics.median(r.p99_ms for r in runs), 2),
        unexpected_codes=sum(r.unexpected for r in runs),
        failures=sum(r.failures for r in runs),
        node_exit_failures=sum(r.bad_exits for r in runs),
    )


# -- 2. the store round trips ---------------------------------------------------------------

# One operation, numbered n, from caller k (of `concurrency`): awaited and checked.
Operation = Callable[[int, int], Awaitable[None]]


async def _timed(operation: Operation, callers: int, per_caller: int) -> float:
    """Microseconds per operation with `callers` concurrent callers."""
    started = trio.current_time()

    async def caller(k: int) -> None:
        for n in range(per_caller):
            await operation(k, n)

    async with trio.open_nursery() as nursery:
        for k in range(callers):
            nursery.start_soon(caller, k)
    return (trio.current_time() - started) / (callers * per_caller) * 1e6


def _admit_with(store: ReplayStore) -> Operation:
    async def operation(k: int, n: int) -> None:
        # Caller k is its own originator; its counters rise, so each admit is fresh.
        originator = f"90-B3-D5-1F-3C-0{k >> 8:X}-{(k >> 4) & 15:X}0-{k & 15:02X}"
        admission = await store.admit(RequestId(originator, TARGET, n), 1)
        if admission.verdict is not ReplayVerdict.FRESH:
            raise RuntimeError(f"admit of a new counter said {admission!r}")

    return operation


def _put_with(jobs: JobStore, tag: str, callers: int) -> Operation:
    created = dt.datetime.now(dt.UTC)

    async def operation(k: int, n: int) -> None:
        number = n * callers + k
        await jobs.put(f"{tag}-{number}", f"U{number % 16}", JOB_BODY, created, number % 4)

    return operation


async def _one_cost(
    operation: str,
    backend: str,
    callers: int,
    per_caller: int,
    directory: Path,
    url: str,
    prefix: str,
) -> float:
    """One measurement, on a store of its own (a new file, or a new key prefix)."""
    redis = SharedRedisConfig(url=url, key_prefix=prefix)
    if operation == "replay admit" and backend == "sqlite":
        guard = await SharedReplayGuard.open(directory / f"replay-{prefix}.sqlite")
        try:
            return await _timed(_admit_with(guard), callers, per_caller)
        finally:
            await guard.aclose()
    if operation == "replay admit":
        async with open_shared_redis(redis) as shared, open_redis_replay_store(shared) as store:
            return await _timed(_admit_with(store), callers, per_caller)
    if backend == "sqlite":
        async with open_sqlite_jobs(directory / f"jobs-{prefix}.sqlite") as jobs:
            micros = await _timed(_put_with(jobs, prefix, callers), callers, per_caller)
            for _ in range(callers * per_caller):
                await jobs.next_job()  # untimed: leaves nothing behind in its buffer
            return micros
    async with open_shared_redis(redis) as shared:
        streams = RedisJobs(shared, lease_seconds=JOB_LEASE_SECONDS)
        return await _timed(_put_with(streams, prefix, callers), callers, per_caller)


async def _store_costs(
    directory: Path, url: str, names: Iterator[str], options: Options
) -> list[StoreCost]:
    costs: list[StoreCost] = []
    for operation in ("replay admit", "jobs put"):
        for callers in CONCURRENCIES:
            per_caller = max(1, options.ops // callers)
            reference = 0.0
            for backend in ("sqlite", "redis"):
                micros = [
                    await _one_cost(
                        operation, backend, callers, per_caller, directory, url, next(names)
                    )
                    for _ in range(options.repeats)
                ]
                spread = _spread(micros)
                reference = reference or spread.median
                costs.append(
                    StoreCost(
                        operation=operation,
                        backend=backend,
                        concurrency=callers,
                        operations_per_run=callers * per_caller,
                        microseconds_per_operation=spread,
                        ratio_to_sqlite=_ratio(spread.median, reference),
                    )
                )
    return costs


# -- the report -----------------------------------------------------------------------------


def format_report(report: NodesReport) -> str:
    length = f"{report.seconds_per_run:g} s" if report.seconds_per_run else "the whole corpus"
    lines = [
        f"{report.repeats} run(s) per setup of {length} ({report.corpus_requests:,} signed "
        f"requests), {report.connections} connections (connection k on node k mod N), "
        f"closed loop, XSD {'on' if report.xsd else 'off'}; median (min..max)",
        "backend  nodes  req/s (expected code)      ratio  p50 ms  p99 ms  unexpected  failures",
    ]
    for s in report.setups:
        t = s.throughput_per_second
        spread = f"{t.median:,.0f} ({t.min:,.0f}..{t.max:,.0f})"
        lines.append(
            f"{s.backend:<8} {s.nodes:>5}  {spread:<25}  {s.ratio_to_sqlite:>5.2f}  "
            f"{s.p50_ms:>6.1f}  {s.p99_ms:>6.1f}  {s.unexpected_codes:>10}  "
            f"{s.failures + s.node_exit_failures:>8}"
        )
    lines.append("store round trips alone: µs per operation (ratio Redis / SQLite)")
    for c in report.store:
        m = c.microseconds_per_operation
        lines.append(
            f"  {c.operation:<12} {c.backend:<6} {c.concurrency:>3} at once  "
            f"{m.median:>8,.1f} µs ({m.min:,.1f}..{m.max:,.1f})  x{c.ratio_to_sqlite:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.nodes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", default="1,2,3", help="Redis node counts (comma-separated)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure")
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="closed loop per run (0: the whole corpus)"
    )
    parser.add_argument("--requests", type=int, default=6_000, help="signed corpus size")
    parser.add_argument("--connections", type=int, default=24)
    parser.add_argument("--ops", type=int, default=2_000, help="store operations per run")
    parser.add_argument("--no-xsd", dest="xsd", action="store_false", help="nodes without XSD")
    parser.add_argument("--shared", help="the DCC's samples and XSDs (default ../shared)")
    parser.add_argument("--dir", help="where the journals go (default: the system temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.nodes.split(",") if n]
    if args.repeats < 1 or args.connections < max(counts, default=1) or args.ops < 1:
        parser.error("--repeats and --ops must be at least 1, --connections at least the nodes")
    report = run(
        Options(
            node_counts=counts,
            repeats=args.repeats,
            seconds=args.seconds,
            requests=args.requests,
            connections=args.connections,
            ops=args.ops,
            xsd=args.xsd,
            shared=Path(args.shared) if args.shared else None,
            work_dir=Path(args.dir) if args.dir else None,
        )
    )
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print(format_report(report))
    bad = any(s.unexpected_codes or s.failures or s.node_exit_failures for s in report.setups)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
