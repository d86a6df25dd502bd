"""Several nodes on one Redis against one node on SQLite: requests per second, and what
the Redis round trip costs each acknowledged asynchronous request.

    python -m bench.bench_nodes [--nodes 1,2,3] [--repeats 3] [--seconds 6]
                                [--connections 6] [--puts 2000] [--json]

Two parts, each configuration run `--repeats` times (median and min..max spread):

1. **Nodes.** `duisgw serve` processes (bench/gateway_process.py) on a redis-server this
   bench starts (AOF, appendfsync always, its own port and directory), `[state] backend =
   "redis"`, for each count in `--nodes`; and one node on the embedded SQLite default as
   the reference. A closed loop of `--connections` connections, connection k always to
   node k mod N (its User IDs' counters then reach one node in order), sends the load
   tool's default mix (CV 1: jobs journal, then I99; CV 8: signed I0) for `--seconds`.
   Figure: requests answered with their expected DUIS code per second.
2. **The store round trip.** What the I99 of a CV 1 waits for: one `JobStore.put`, on
   SQLite (group commit, synchronous=FULL) and on Redis (one script + its fsync): one
   producer alone (latency per put) and 64 concurrent producers (puts per second).

On a shared 2-core machine the nodes compete with the client, Redis and each other for
the same cores: more nodes cannot give more throughput here; the figures show what one
round trip and the coordination cost, not how a deployment scales on separate machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import trio

from bench import corpus as corpus_mod
from bench.client import Tally, closed_loop
from bench.gateway_process import GatewayNodes, write_node_configs
from gateway.core.config import SharedRedisConfig
from gateway.devkit.default import ensure_default_state
from gateway.stores.jobs import JobStore, open_sqlite_jobs
from gateway.stores.jobs_redis import RedisJobs
from gateway.stores.redis_shared import open_shared_redis
from tests.redis_process import RedisProcess

CONCURRENT_PRODUCERS: Final = 64
BODY: Final = b"<sr:Request>" + b"x" * 4000 + b"</sr:Request>"  # a signed CV 1's size


def _median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# -- 1. nodes ------------------------------------------------------------------------------


def _prepare(
    base: Path, shared: Path, connections: int, total: int
) -> tuple[Path, corpus_mod.Corpus]:
    """One estate (PKI, slot users) and one signed corpus for every run."""
    templates = corpus_mod.load_templates(shared, corpus_mod.DEFAULT_VARIANTS, False)
    now = dt.datetime.now(dt.UTC)
    default_config = ensure_default_state(base, now)
    originals = sorted({t.originator for t in templates})
    users, inventory = corpus_mod.add_slot_users(base, originals, connections, now)
    config = corpus_mod.write_bench_config(
        default_config, users, inventory, xsd_dir=shared / "duis" / "xsd", tls_slots=None
    )
    corpus = corpus_mod.build_corpus(
        templates, base / "pki", slots=connections, total=total, processes=2
    )
    return config, corpus


def _run_nodes(
    config: Path, corpus: corpus_mod.Corpus, state: Mapping[str, object], count: int, seconds: float
) -> tuple[float, int]:
    """Requests per second with the expected code, and the ones without it."""
    for old in config.parent.glob("node-*"):
        shutil.rmtree(old)  # fresh journals: the corpus's counters are new again
    configs = write_node_configs(config, count, state=state)
    nodes = GatewayNodes.start(configs)
    try:

        async def drive() -> list[Tally]:
            tallies: list[Tally] = []

            async def one(node: int) -> None:
                slots = [s for k, s in enumerate(corpus.slots) if k % count == node]
                address = ("127.0.0.1", nodes.nodes[node].duis_port)
                tallies.append(await closed_loop(address, slots, None, seconds))

            async with trio.open_nursery() as nursery:
                for node in range(count):
                    nursery.start_soon(one, node)
            return tallies

        tallies = trio.run(drive)
    finally:
        exits = nodes.stop()
    if any(code != 0 for code in exits):
        print(f"warning: node exits {exits}\n{nodes.log_tails()}", file=sys.stderr)
    answered = sum(len(t.latencies) - t.unexpected for t in tallies)
    elapsed = max(t.elapsed for t in tallies)
    return answered / elapsed, sum(t.unexpected + sum(t.failures.values()) for t in tallies)


# -- 2. the store round trip ------------------------------------------------------------------


async def _puts(jobs: JobStore, total: int, producers: int, tag: str) -> float:
    """Seconds for `total` durable puts from `producers` tasks."""
    created = dt.datetime.now(dt.UTC)
    started = trio.current_time()

    async def producer(first: int) -> None:
        for n in range(first, total, producers):
            await jobs.put(f"{tag}-{n}", f"U{n % 16}", BODY, created, n % 4)

    async with trio.open_nursery() as nursery:
        for p in range(producers):
            nursery.start_soon(producer, p)
    return trio.current_time() - started


async def _sqlite_puts(directory: Path, total: int, producers: int, tag: str) -> float:
    async with open_sqlite_jobs(directory / f"jobs-{tag}.sqlite") as jobs:
        seconds = await _puts(jobs, total, producers, tag)
        # Drain the buffer so its bound does not stall the next run (no workers here).
        for _ in range(total):
            await jobs.next_job()
        return seconds


async def _redis_puts(url: str, total: int, producers: int, tag: str) -> float:
    async with open_shared_redis(SharedRedisConfig(url=url, key_prefix="bench")) as shared:
        return await _puts(RedisJobs(shared, lease_seconds=10.0), total, producers, tag)


# -- the run ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_nodes", description=__doc__)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=6)
    parser.add_argument("--requests", type=int, default=6000, help="signed corpus size")
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--shared", help="the DCC's samples and XSDs (default ../shared)")
    parser.add_argument("--dir", help="where the journals go (default: the system temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    shared = corpus_mod.find_shared(Path(args.shared) if args.shared else None)
    counts = [int(n) for n in args.nodes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="duisgw-bench-nodes-", dir=args.dir)).resolve()
    redis = RedisProcess(work / "redis")
    results: dict[str, dict[str, float]] = {}
    try:
        redis.start()
        config, corpus = _prepare(work / "estate", shared, args.connections, args.requests)
        runs: dict[str, Callable[[], tuple[float, int]]] = {
            "sqlite, 1 node": lambda: _run_nodes(
                config, corpus, {"backend": "sqlite"}, 1, args.seconds
            )
        }
        for count in counts:

            def on_redis(count: int = count) -> tuple[float, int]:
                prefix = f"n{time.time_ns()}"  # every run starts on empty streams
                state = {"backend": "redis", "redis": {"url": redis.url, "key_prefix": prefix}}
                return _run_nodes(config, corpus, state, count, args.seconds)

            runs[f"redis, {count} node{'s' if count > 1 else ''}"] = on_redis
        for name, run in runs.items():
            rates, bad = [], 0
            for _ in range(args.repeats):
                rate, unexpected = run()
                rates.append(rate)
                bad += unexpected
            results[f"{name}: requests/s"] = _median_spread(rates) | {"unexpected": bad}
            print(f"{name}: {results[f'{name}: requests/s']}", file=sys.stderr)
        for producers in (1, CONCURRENT_PRODUCERS):
            for backend in ("sqlite", "redis"):
                times = []
                for r in range(args.repeats):
                    tag = f"{backend}-{producers}-{r}"
                    if backend == "sqlite":
                        seconds = trio.run(_sqlite_puts, work, args.puts, producers, tag)
                    else:
                        seconds = trio.run(_redis_puts, redis.url, args.puts, producers, tag)
                    times.append(seconds)
                if producers == 1:
                    key = f"jobs put, {backend}, 1 producer: µs per put"
                    results[key] = _median_spread([s / args.puts * 1e6 for s in times])
                else:
                    key = f"jobs put, {backend}, {producers} producers: puts/s"
                    results[key] = _median_spread([args.puts / s for s in times])
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    reference = results.get("sqlite, 1 node: requests/s", {}).get("median")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for name, figures in results.items():
        ratio = ""
        if reference and name.endswith("requests/s"):
            ratio = f"  ratio to sqlite 1 node {figures['median'] / reference:.2f}"
        print(
            f"{name:48} median {figures['median']:10.1f}  "
            f"spread {figures['min']:.1f}..{figures['max']:.1f}{ratio}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
