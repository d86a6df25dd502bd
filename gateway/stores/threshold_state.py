"""Anomaly-detection state across restarts: the rules in force and the window counts.

At start, `rules_in_force` applies the precedence of thresholds/rules_state.py to the
rules file and what the state store holds, and records (with an audit entry) any
change of what is in force. With the in-process (memory) store, `restore_counts`
takes back the counts saved before, and `run_count_snapshots` saves the counters
that changed every `thresholds.counts_snapshot_seconds` and once more at shutdown:
a `kill -9` forgets at most that interval's counts, a clean stop none.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio

from gateway.core.clock import Clock
from gateway.core.config import Config, StartupError
from gateway.stores.redis_shared import SharedRedis
from gateway.stores.threshold_memory import MemoryThresholdStore
from gateway.stores.threshold_redis import RedisThresholdStore, open_redis_threshold_store
from gateway.stores.threshold_sqlite import (
    ThresholdStateError,
    ThresholdStateStore,
    open_threshold_state,
)
from gateway.stores.threshold_state_redis import open_redis_threshold_state
from thresholds.config import ThresholdConfig
from thresholds.rules_state import choose_rules

log = logging.getLogger("duisgw.thresholds")

STATE_FILE = "thresholds.sqlite"
# Where the per-User-ID counts live: this process (memory) or shared (Redis).
CounterStore = MemoryThresholdStore | RedisThresholdStore
# The last snapshot at shutdown: bounded, so a stuck disk cannot hold the exit.
SHUTDOWN_SNAPSHOT_TIMEOUT_SECONDS = 5.0


def rules_file_name(config: Config) -> str:
    return config.thresholds.rules_file or "(no thresholds.rules_file)"


async def read_rules_file(config: Config) -> bytes | None:
    """The rules file's bytes, None when none is configured; OSError if unreadable."""
    path = config.thresholds.rules_file
    return None if path is None else await trio.Path(path).read_bytes()


async def rules_in_force(
    config: Config, file_raw: bytes | None, store: ThresholdStateStore, clock: Clock
) -> ThresholdConfig:
    choice = choose_rules(
        file_raw,
        rules_file_name(config),
        await store.load_rules(),
        clock.now(),
        runtime_allowed=config.thresholds.store == "memory",
    )
    if choice.audit is not None:
        await store.replace_rules(choice.record, choice.audit)
    log.log(logging.WARNING if choice.superseded else logging.INFO, "%s", choice.log_message)
    return choice.config


async def restore_counts(counters: MemoryThresholdStore, store: ThresholdStateStore) -> None:
    saved = await store.load_counts()
    if saved:
        restored = counters.restore(saved)
        log.info("threshold counts restored: %d of %d saved counters", restored, len(saved))


async def save_counts(
    counters: MemoryThresholdStore, store: ThresholdStateStore, clock: Clock
) -> None:
    live, gone = counters.changed_counters(clock.now().timestamp())
    if live or gone:
        await store.save_counts(live, gone)


async def run_count_snapshots(
    counters: MemoryThresholdStore,
    store: ThresholdStateStore,
    clock: Clock,
    interval_seconds: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Save changed counts every interval, and once more when cancelled (shutdown)."""
    task_status.started()
    try:
        while True:
            await trio.sleep(interval_seconds)
            try:
                await save_counts(counters, store, clock)
            except ThresholdStateError:
                log.exception("threshold counts not saved; trying again in %.0fs", interval_seconds)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_SNAPSHOT_TIMEOUT_SECONDS):
            try:
                await save_counts(counters, store, clock)
            except ThresholdStateError:
                log.exception("threshold counts not saved at shutdown")


def state_path(config: Config) -> Path:
    return Path(config.state_dir) / STATE_FILE


@asynccontextmanager
async def threshold_counters(config: Config, rules: ThresholdConfig) -> AsyncIterator[CounterStore]:
    if config.thresholds.store == "memory":
        yield MemoryThresholdStore(rules)
        return
    async with open_redis_threshold_store(rules, config.thresholds.redis) as store:
        yield store


@asynccontextmanager
async def open_thresholds(
    config: Config,
    rules_raw: bytes | None,
    clock: Clock,
    *,
    synchronous: str,
    shared: SharedRedis | None = None,
) -> AsyncIterator[tuple[CounterStore, ThresholdStateStore]]:
    """The counters under the rules in force (saved counts restored) and the state store:
    on the shared Redis when given (every node one set of rules), else the state file."""
    path = state_path(config)
    where = "[state.redis]" if shared is not None else str(path)
    async with AsyncExitStack() as stack:
        try:
            store: ThresholdStateStore = await stack.enter_async_context(
                open_redis_threshold_state(shared)
                if shared is not None
                else open_threshold_state(path, synchronous=synchronous)
            )
            rules = await rules_in_force(config, rules_raw, store, clock)
            counters = await stack.enter_async_context(threshold_counters(config, rules))
            if isinstance(counters, MemoryThresholdStore):
                await restore_counts(counters, store)
        except ThresholdStateError as exc:
            raise StartupError(f"{where}: {exc}") from None
        yield counters, store
