"""Hot-path cost of threshold checks: `python -m bench.bench_thresholds`.

Prints microseconds per check for the in-process store and the Redis store
(skipped with a message when Redis is not reachable), and hold throughput of
the SQLite quarantine. Numbers, not verdicts: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import coredis
import trio

from gateway.core.clock import SystemClock
from gateway.stores.quarantine import QuarantineItem, open_quarantine_store
from gateway.stores.threshold_memory import MemoryThresholdStore
from gateway.stores.threshold_redis import open_redis_threshold_store
from thresholds.config import RedisStoreSettings, ThresholdConfig, ThresholdRule

REDIS_URL = "redis://127.0.0.1:6379/0"
SRVS = ("1.1.1", "4.1.1", "4.6.1", "6.15.1")
T0 = 1_800_000_000.0


def user_ids(n: int) -> list[str]:
    return [f"90-B3-D5-1F-30-01-{i >> 8:02X}-{i & 0xFF:02X}" for i in range(n)]


def realistic_config(minute_limit: int = 2000) -> ThresholdConfig:
    """Every request meets a minute counter, a bucketed day total and a per-SRV hour.

    The minute limit is exact in memory at 2000; nothing here reaches a limit.
    """
    return ThresholdConfig(
        rules=(
            ThresholdRule(
                user_id="*", srv="*", window_seconds=86_400, limit=10**8, kind="dcc_quarantine"
            ),
            ThresholdRule(
                user_id="*", srv="*", window_seconds=60, limit=minute_limit, kind="user_quarantine"
            ),
            *(
                ThresholdRule(
                    user_id="*", srv=srv, window_seconds=3600, limit=10**7, kind="warning"
                )
                for srv in SRVS
            ),
        )
    )


def bench_memory(n: int, users: list[str]) -> None:
    for label, config in (
        ("memory, no rules", ThresholdConfig()),
        ("memory, 3 windows", realistic_config()),
    ):
        store = MemoryThresholdStore(config)
        t = T0
        start = time.perf_counter()
        for i in range(n):
            t += 0.0005
            store.check_and_count(users[i % len(users)], SRVS[i % len(SRVS)], t)
        elapsed = time.perf_counter() - start
        print(f"{label:32s} {elapsed / n * 1e6:7.2f} µs/check  ({n} checks)")


async def bench_redis(n: int, users: list[str], batch_size: int) -> None:
    prefix = f"duisgw-bench:{uuid.uuid4().hex}:"
    settings = RedisStoreSettings(url=REDIS_URL, key_prefix=prefix, batch_size=batch_size)
    config = realistic_config(minute_limit=10**6)
    async with open_redis_threshold_store(config, settings) as store:
        t = T0
        for u in users:  # first use of a counter reads it: keep that out of the figure
            await store.check_and_count(u, SRVS[0], t)
            await store.check_and_count(u, SRVS[1], t)
            await store.check_and_count(u, SRVS[2], t)
            await store.check_and_count(u, SRVS[3], t)
        waited = 0
        start = time.perf_counter()
        for i in range(n):
            t += 0.0005
            user, srv = users[i % len(users)], SRVS[i % len(SRVS)]
            if store.check_and_count_nowait(user, srv, t) is None:
                waited += 1
                await store.check_and_count(user, srv, t)
        elapsed = time.perf_counter() - start
        label = f"redis, batch {batch_size}, {len(users)} IDs"
        print(
            f"{label:32s} {elapsed / n * 1e6:7.2f} µs/check  ({n} checks, {waited} waited for a"
            " flush)"
        )
        client: coredis.Redis[Any] = coredis.Redis.from_url(REDIS_URL)
        async with client:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(keys)


async def bench_quarantine(n: int, holders: int) -> None:
    clock = SystemClock()
    with tempfile.TemporaryDirectory() as tmp:
        async with open_quarantine_store(Path(tmp) / "q.sqlite", clock) as store:
            body = b"<sr:Request/>" * 100

            async def holder(k: int) -> None:
                for i in range(k, n, holders):
                    await store.hold(
                        QuarantineItem(
                            user_id="90-B3-D5-1F-30-01-00-00",
                            request_id=f"x:y:{i}",
                            srv="4.1.1",
                            duis_version="5.4",
                            breach="ADUserThresholdBreach",
                            held_at=dt.datetime.now(dt.UTC),
                            raw_request=body,
                        )
                    )

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for k in range(holders):
                    nursery.start_soon(holder, k)
            elapsed = time.perf_counter() - start
            print(
                f"{'quarantine hold (SQLite, FULL)':32s} {n / elapsed:7.0f} holds/s  "
                f"({holders} concurrent, {store.transactions} transactions)"
            )


def redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    users = user_ids(args.users)
    bench_memory(args.checks, users)
    if redis_reachable():
        # Round-robin over many IDs is the worst case for batching (no two requests
        # of a batch share a counter); a few busy IDs is the usual one.
        for batch, ids in ((1, users), (64, users), (256, users), (64, users[:10])):
            n = args.checks if batch > 1 else args.checks // 50
            trio.run(bench_redis, n, ids, batch)
    else:
        print("redis: skipped, nothing listening at 127.0.0.1:6379")
    trio.run(bench_quarantine, 5000, 100)


if __name__ == "__main__":
    main()
