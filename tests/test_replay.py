"""Replay protection: strictly increasing counters, the Signed Pre-Command exception,
decisions shared through one SQLite file by several processes, group commit."""

from __future__ import annotations

import itertools
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from unittest import mock

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.redis_process import RedisProcess
from gateway.core import replay_rules
from gateway.core.config import SharedRedisConfig
from gateway.core.replay_rules import Admission, ReplayGuard, ReplayVerdict
from gateway.stores import replay
from gateway.stores.redis_shared import open_shared_redis
from gateway.stores.replay import SharedReplayGuard
from gateway.stores.replay_redis import open_redis_replay_store
from gateway.stores.replay_sqlite import ReplayDatabase, ReplayStoreError
from mmc.catalogue import SIGNED_PRE_COMMAND_VARIANTS
from mmc.identifiers import MAX_COUNTER, RequestId

SUP = "90-B3-D5-1F-30-01-00-00"
NET = "90-B3-D5-1F-30-02-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROCESS_TIMEOUT_SECONDS = 15

Admit = Callable[[RequestId, int], Awaitable[ReplayVerdict]]


def rid(counter: int, originator: str = SUP, target: str = ESME) -> RequestId:
    return RequestId(originator, target, counter)


@pytest.fixture(params=["memory", "shared", "redis"])
async def admit(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Admit]:
    """The same rules through the in-memory model, the shared database and the shared
    Redis (a test-owned server), over the whole uint64 range (the default ceiling has
    tests of its own)."""
    if request.param == "memory":
        guard = ReplayGuard(max_counter=MAX_COUNTER)

        async def in_memory(request_id: RequestId, command_variant: int) -> ReplayVerdict:
            return guard.admit(request_id, command_variant).verdict

        yield in_memory
    elif request.param == "redis":
        server: RedisProcess = request.getfixturevalue("redis_server")
        settings = SharedRedisConfig(url=server.url, key_prefix="replay-test")
        async with (
            open_shared_redis(settings) as shared_redis,
            open_redis_replay_store(shared_redis, max_counter=MAX_COUNTER) as store,
        ):

            async def through_redis(request_id: RequestId, command_variant: int) -> ReplayVerdict:
                return (await store.admit(request_id, command_variant)).verdict

            yield through_redis
    else:
        shared = await SharedReplayGuard.open(tmp_path / "replay.sqlite", max_counter=MAX_COUNTER)

        async def through_file(request_id: RequestId, command_variant: int) -> ReplayVerdict:
            return (await shared.admit(request_id, command_variant)).verdict

        yield through_file
        await shared.aclose()


def test_counters_strictly_increase_per_originator() -> None:
    guard = ReplayGuard()
    assert guard.check_and_advance(SUP, 10)
    assert not guard.check_and_advance(SUP, 10)  # the same counter again
    assert not guard.check_and_advance(SUP, 9)  # going back
    assert guard.check_and_advance(SUP, 11)
    assert guard.check_and_advance(NET, 1)  # another originator has its own sequence
    assert guard.check_and_advance(SUP, 0) is False
    assert guard.last_counter(SUP) == 11 and guard.last_counter(NET) == 1
    assert guard.check_and_advance("90-B3-D5-1F-30-03-00-00", 0)  # 0 is a valid first counter


async def test_counters_strictly_increase_through_admit(admit: Admit) -> None:
    assert await admit(rid(10), 1) is ReplayVerdict.FRESH
    assert await admit(rid(10), 1) is ReplayVerdict.REPLAYED
    assert await admit(rid(9), 2) is ReplayVerdict.REPLAYED
    assert await admit(rid(11), 1) is ReplayVerdict.FRESH
    assert await admit(rid(1, originator=NET), 1) is ReplayVerdict.FRESH
    assert await admit(rid(0, originator="90-B3-D5-1F-30-03-00-00"), 1) is ReplayVerdict.FRESH


async def test_counter_is_per_originator_not_per_target(admit: Admit) -> None:
    assert await admit(rid(5, target=ESME), 1) is ReplayVerdict.FRESH
    assert await admit(rid(5, target="00-DB-12-34-56-78-90-A1"), 1) is ReplayVerdict.REPLAYED


def test_verdict_codes() -> None:
    assert ReplayVerdict.FRESH.code is None
    assert ReplayVerdict.REPLAYED.code == "E1"
    assert ReplayVerdict.NO_PRE_COMMAND.code == "E12"


@pytest.mark.parametrize("signed_variant", [5, 6, 7])
async def test_signed_pre_command_reuses_its_cv4_counter_once(
    admit: Admit, signed_variant: int
) -> None:
    assert await admit(rid(100), 4) is ReplayVerdict.FRESH
    assert await admit(rid(101), 1) is ReplayVerdict.FRESH  # other traffic in between
    assert await admit(rid(100), signed_variant) is ReplayVerdict.FRESH
    assert await admit(rid(100), signed_variant) is ReplayVerdict.REPLAYED  # only once
    assert await admit(rid(100), 4) is ReplayVerdict.REPLAYED  # the CV 4 itself is spent


async def test_signed_pre_command_needs_a_cv4(admit: Admit) -> None:
    assert await admit(rid(7), 1) is ReplayVerdict.FRESH
    assert await admit(rid(7), 5) is ReplayVerdict.REPLAYED  # a CV 1 leaves no allowance
    assert await admit(rid(8), 5) is ReplayVerdict.NO_PRE_COMMAND  # fresh counter, no CV 4
    assert await admit(rid(8), 1) is ReplayVerdict.FRESH  # ... and it did not spend 8
    assert await admit(rid(9, originator=NET), 4) is ReplayVerdict.FRESH
    # Another originator's CV 4 leaves nothing for SUP: 9 is fresh for SUP, so E12.
    assert await admit(rid(9), 5) is ReplayVerdict.NO_PRE_COMMAND


async def test_open_pre_commands_are_bounded_oldest_first(
    admit: Admit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_rules, "MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR", 2)
    for counter in (1, 2, 3):
        assert await admit(rid(counter), 4) is ReplayVerdict.FRESH
    assert await admit(rid(1), 5) is ReplayVerdict.REPLAYED  # dropped
    assert await admit(rid(2), 5) is ReplayVerdict.FRESH
    assert await admit(rid(3), 6) is ReplayVerdict.FRESH
    assert await admit(rid(4), 4) is ReplayVerdict.FRESH  # consumed ones make room again
    assert await admit(rid(5), 4) is ReplayVerdict.FRESH
    assert await admit(rid(4), 7) is ReplayVerdict.FRESH


async def test_uint64_extremes(admit: Admit) -> None:
    assert await admit(rid(0), 1) is ReplayVerdict.FRESH
    assert await admit(rid(0), 1) is ReplayVerdict.REPLAYED
    assert await admit(rid(MAX_COUNTER - 1), 4) is ReplayVerdict.FRESH
    assert await admit(rid(MAX_COUNTER), 1) is ReplayVerdict.FRESH
    assert await admit(rid(MAX_COUNTER - 1), 5) is ReplayVerdict.FRESH
    assert await admit(rid(MAX_COUNTER), 1) is ReplayVerdict.REPLAYED


# ------------------------------------------------- the database agrees with the model

REQUESTS = st.tuples(
    st.sampled_from([SUP, NET]),
    st.one_of(st.integers(0, 12), st.sampled_from([MAX_COUNTER - 1, MAX_COUNTER])),
    st.sampled_from([1, 2, 4, 4, 5, 6, 7, 8]),
)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.lists(REQUESTS, min_size=1, max_size=8), max_size=6))
def test_database_decides_as_the_model_does(batches: list[list[tuple[str, int, int]]]) -> None:
    # A cap of 2 makes the oldest-first drop happen inside short runs.
    with (
        mock.patch.object(replay_rules, "MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR", 2),
        tempfile.TemporaryDirectory() as folder,
    ):
        model = ReplayGuard(max_counter=MAX_COUNTER)
        database = ReplayDatabase(Path(folder) / "replay.sqlite", max_counter=MAX_COUNTER)
        try:
            for batch in batches:
                requests = [(rid(c, originator=o), cv) for o, c, cv in batch]
                expected = [model.admit(request_id, cv) for request_id, cv in requests]
                assert database.decide_batch(requests) == expected
            reloaded = database.load()
            for originator in (SUP, NET):
                assert reloaded.last_counter(originator) == model.last_counter(originator)
            assert_counts_consistent(database_path=Path(folder) / "replay.sqlite")
        finally:
            database.close()


def assert_counts_consistent(database_path: Path) -> None:
    with sqlite3.connect(database_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        mismatched = db.execute(
            "SELECT originator FROM last_counter WHERE open_pre_commands != "
            "(SELECT count(*) FROM open_pre_command AS o WHERE o.originator = "
            "last_counter.originator)"
        ).fetchall()
    assert mismatched == []


def test_a_file_from_the_single_process_gateway_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    with sqlite3.connect(path) as db:  # the schema before counts and user_version
        db.executescript(
            "CREATE TABLE last_counter (originator TEXT PRIMARY KEY, counter INTEGER NOT NULL)"
            " WITHOUT ROWID; CREATE TABLE open_pre_command (originator TEXT NOT NULL,"
            " counter INTEGER NOT NULL, PRIMARY KEY (originator, counter)) WITHOUT ROWID;"
        )
        shift = 2**63
        db.execute("INSERT INTO last_counter VALUES (?, ?)", (SUP, 30 - shift))
        db.executemany(
            "INSERT INTO open_pre_command VALUES (?, ?)", [(SUP, 10 - shift), (SUP, 20 - shift)]
        )
    with mock.patch.object(replay_rules, "MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR", 2):
        database = ReplayDatabase(path)
        try:
            fresh, e1 = ReplayVerdict.FRESH, ReplayVerdict.REPLAYED
            # 31's allowance is the third: the cap of 2 drops the oldest, 10.
            first = [(rid(30), 1), (rid(31), 4), (rid(10), 5), (rid(20), 5)]
            assert [a.verdict for a in database.decide_batch(first)] == [e1, fresh, e1, fresh]
            second = [(rid(20), 5), (rid(31), 5)]
            assert [a.verdict for a in database.decide_batch(second)] == [e1, fresh]
        finally:
            database.close()
    assert_counts_consistent(path)


# ------------------------------------------------------------ durability and restarts


async def test_restart_survival(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    first = await SharedReplayGuard.open(path)
    assert (await first.admit(rid(41), 1)).verdict is ReplayVerdict.FRESH
    assert (await first.admit(rid(42), 4)).verdict is ReplayVerdict.FRESH
    assert (await first.admit(rid(3, originator=NET), 1)).verdict is ReplayVerdict.FRESH
    # No clean close: a verdict is only given once it is committed.
    second = await SharedReplayGuard.open(path)
    assert (await second.admit(rid(41), 1)).verdict is ReplayVerdict.REPLAYED
    assert (await second.admit(rid(3, originator=NET), 1)).verdict is ReplayVerdict.REPLAYED
    assert (await second.admit(rid(42), 5)).verdict is ReplayVerdict.FRESH  # the CV 4's allowance
    assert (await second.admit(rid(43), 1)).verdict is ReplayVerdict.FRESH
    await second.aclose()
    third = await SharedReplayGuard.open(path)
    assert (await third.admit(rid(42), 5)).verdict is ReplayVerdict.REPLAYED  # consumed before
    assert (await third.admit(rid(43), 1)).verdict is ReplayVerdict.REPLAYED
    # The first guard's floor is stale (41); the database still refuses 43 for it.
    assert (await first.admit(rid(43), 1)).verdict is ReplayVerdict.REPLAYED
    await third.aclose()
    await first.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await first.admit(rid(99), 1)


def originator_for(number: int) -> str:
    return f"90-B3-D5-1F-30-01-{number >> 8:02X}-{number & 255:02X}"


# -------------------------------------------------------- group commit and its edges


class GatedDatabase(ReplayDatabase):
    """Holds each transaction open until the test lets it finish; can fail one."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False

    def decide_in_transaction(
        self, db: sqlite3.Connection, requests: Sequence[tuple[RequestId, int]]
    ) -> list[Admission]:
        verdicts = super().decide_in_transaction(db, requests)
        self.gate.wait(PROCESS_TIMEOUT_SECONDS)
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")  # after the writes: the rollback must undo them
        return verdicts


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[SharedReplayGuard, GatedDatabase]]:
    database = await trio.to_thread.run_sync(GatedDatabase, tmp_path / "replay.sqlite")
    guard = SharedReplayGuard(database)
    yield guard, database
    database.gate.set()
    await guard.aclose()


async def test_concurrent_admissions_share_transactions(
    gated: tuple[SharedReplayGuard, GatedDatabase],
) -> None:
    guard, _ = gated
    requests = 2000
    verdicts: list[ReplayVerdict] = []

    async def one(counter: int) -> None:
        verdicts.append(
            (await guard.admit(rid(counter, originator=originator_for(counter)), 1)).verdict
        )

    async with trio.open_nursery() as nursery:
        for counter in range(requests):
            nursery.start_soon(one, counter)
    assert verdicts == [ReplayVerdict.FRESH] * requests
    assert guard.statistics().transactions_total <= 3  # the first alone, then the rest


async def start_in_order(
    nursery: trio.Nursery, guard: SharedReplayGuard, requests: list[tuple[RequestId, int]]
) -> list[ReplayVerdict | None]:
    """Queue requests in this order (trio does not promise to start tasks in order)."""
    verdicts: list[ReplayVerdict | None] = [None] * len(requests)

    async def one(index: int, request_id: RequestId, command_variant: int) -> None:
        verdicts[index] = (await guard.admit(request_id, command_variant)).verdict

    for index, (request_id, command_variant) in enumerate(requests):
        nursery.start_soon(one, index, request_id, command_variant)
        await trio.testing.wait_all_tasks_blocked()
    return verdicts


async def test_duplicates_in_one_transaction_are_decided_in_arrival_order(
    gated: tuple[SharedReplayGuard, GatedDatabase],
) -> None:
    guard, database = gated
    database.gate.clear()
    requests = [(rid(1), 1), (rid(5), 1), (rid(5), 1), (rid(4), 1), (rid(6), 4)]
    requests += [(rid(6), 5), (rid(6), 6), (rid(7), 5)]
    async with trio.open_nursery() as nursery:
        verdicts = await start_in_order(nursery, guard, requests)
        assert guard.statistics().queued == len(requests) - 1  # the first one is writing
        database.gate.set()
    fresh, e1, e12 = ReplayVerdict.FRESH, ReplayVerdict.REPLAYED, ReplayVerdict.NO_PRE_COMMAND
    assert verdicts == [fresh, fresh, e1, e1, fresh, fresh, e1, e12]
    assert guard.statistics().transactions_total == 2


async def test_replays_below_the_known_floor_need_no_transaction(
    gated: tuple[SharedReplayGuard, GatedDatabase],
) -> None:
    guard, _ = gated
    assert (await guard.admit(rid(10), 4)).verdict is ReplayVerdict.FRESH
    transactions = guard.statistics().transactions_total
    assert (await guard.admit(rid(9), 1)).verdict is ReplayVerdict.REPLAYED
    assert (await guard.admit(rid(10), 4)).verdict is ReplayVerdict.REPLAYED
    assert guard.statistics().transactions_total == transactions
    assert guard.statistics().refused_in_memory_total == 2
    # A Signed Pre-Command at or below the floor may hold an allowance: asked, not assumed.
    assert (await guard.admit(rid(10), 5)).verdict is ReplayVerdict.FRESH
    assert guard.statistics().transactions_total == transactions + 1


async def test_a_failed_transaction_decides_nothing(
    gated: tuple[SharedReplayGuard, GatedDatabase],
) -> None:
    guard, database = gated
    database.fail_next = True
    with pytest.raises(ReplayStoreError) as failure:
        await guard.admit(rid(1), 4)
    assert isinstance(failure.value.__cause__, OSError)
    assert (await guard.admit(rid(1), 4)).verdict is ReplayVerdict.FRESH  # rolled back: still fresh
    assert (await guard.admit(rid(1), 5)).verdict is ReplayVerdict.FRESH


async def test_cancelled_callers_leave_the_transaction_whole(
    gated: tuple[SharedReplayGuard, GatedDatabase],
) -> None:
    guard, database = gated
    database.gate.clear()
    scopes = [trio.CancelScope() for _ in range(3)]
    verdicts: list[ReplayVerdict] = []

    async def one(scope: trio.CancelScope, counter: int) -> None:
        with scope:
            verdicts.append((await guard.admit(rid(counter), 1)).verdict)

    async with trio.open_nursery() as nursery:
        for scope, counter in zip(scopes, (1, 2, 3), strict=True):
            nursery.start_soon(one, scope, counter)
            await trio.testing.wait_all_tasks_blocked()
        for scope in scopes:  # the writer (1) mid-transaction, 2 and 3 queued behind it
            scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert guard.statistics().queued == 2
        database.gate.set()
    # The writer's transaction could not be abandoned; the others went when cancelled.
    assert verdicts == [ReplayVerdict.FRESH]
    # Their admissions stay queued and are committed first: their counters are spent.
    assert (await guard.admit(rid(3), 1)).verdict is ReplayVerdict.REPLAYED
    assert (await guard.admit(rid(2), 1)).verdict is ReplayVerdict.REPLAYED
    # Cancelled before asking, a caller spends nothing.
    with trio.CancelScope() as scope:
        scope.cancel()
        await guard.admit(rid(4), 1)
    assert (await guard.admit(rid(4), 1)).verdict is ReplayVerdict.FRESH


async def test_cancelled_before_its_transaction_began_the_batch_goes_back_in_order(
    gated: tuple[SharedReplayGuard, GatedDatabase],
) -> None:
    guard, database = gated
    database.gate.clear()
    follower = trio.CancelScope()
    outcome: list[object] = []

    async def writer() -> None:
        outcome.append((await guard.admit(rid(1), 1)).verdict)
        # Same step as the wake-up: the follower is woken, not yet running, when cancelled;
        # it becomes the next writer and is cancelled on entering the worker thread.
        follower.cancel()

    async def waiting() -> None:
        with follower:
            outcome.append((await guard.admit(rid(2), 4)).verdict)
        outcome.append("cancelled" if follower.cancelled_caught else "not cancelled")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiting)
        await trio.testing.wait_all_tasks_blocked()
        database.gate.set()
    assert outcome == [ReplayVerdict.FRESH, "cancelled"]
    assert guard.statistics().queued == 1  # put back, not lost
    assert (
        await guard.admit(rid(2), 5)
    ).verdict is ReplayVerdict.FRESH  # the requeued CV 4 went first


async def test_callers_wait_beyond_the_queue_bound(
    gated: tuple[SharedReplayGuard, GatedDatabase], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "MAX_QUEUED_ADMISSIONS", 4)
    guard, database = gated
    database.gate.clear()
    requests = [(rid(counter, originator=originator_for(counter)), 1) for counter in range(10)]
    async with trio.open_nursery() as nursery:
        verdicts = await start_in_order(nursery, guard, requests)
        assert guard.statistics().queued == 4  # one writing, four queued, five waiting
        assert guard.statistics().committing == 1
        database.gate.set()
    assert verdicts == [ReplayVerdict.FRESH] * 10


async def test_a_peer_holding_the_write_lock_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    guard = await SharedReplayGuard.open(path)
    peer = sqlite3.connect(path, isolation_level=None)
    peer.execute("BEGIN IMMEDIATE")  # as another worker's transaction would
    verdicts: list[ReplayVerdict] = []

    async def one() -> None:
        verdicts.append((await guard.admit(rid(1), 1)).verdict)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        assert guard.statistics().committing == 1 and not verdicts
        peer.execute("COMMIT")
    assert verdicts == [ReplayVerdict.FRESH]
    # Held past the (short) timeout, the lock fails the batch rather than hanging it.
    impatient = await SharedReplayGuard.open(path, busy_timeout_seconds=0.05)
    peer.execute("BEGIN IMMEDIATE")
    with pytest.raises(ReplayStoreError) as failure:
        await impatient.admit(rid(2), 1)
    assert isinstance(failure.value.__cause__, sqlite3.OperationalError)
    peer.execute("COMMIT")
    assert (await impatient.admit(rid(2), 1)).verdict is ReplayVerdict.FRESH
    peer.close()
    await impatient.aclose()
    await guard.aclose()


# ----------------------------------------------------- several processes, one file


class AuditedDatabase(ReplayDatabase):
    """Logs each decision in the transaction that takes it: rowid order is commit order."""

    def decide_in_transaction(
        self, db: sqlite3.Connection, requests: Sequence[tuple[RequestId, int]]
    ) -> list[Admission]:
        admissions = super().decide_in_transaction(db, requests)
        db.executemany(
            "INSERT INTO audit (pid, originator, counter, variant, code) VALUES (?, ?, ?, ?, ?)",
            [
                (os.getpid(), r.originator, r.counter, variant, admission.verdict.code)
                for (r, variant), admission in zip(requests, admissions, strict=True)
            ],
        )
        return admissions


WORKER_ORIGINATORS = (SUP, NET, "90-B3-D5-1F-30-03-00-00")


def worker_main() -> None:
    """A gateway-like process: concurrent tasks admitting overlapping RequestIDs.

    Run as `python -c 'from tests.test_replay import worker_main; worker_main()' PATH
    WORKER TASKS ADMISSIONS`. Prints "ready", waits for a line on stdin (so workers
    start together), then prints "originator counter variant" for every FRESH verdict.
    """
    path, worker, tasks, admissions = Path(sys.argv[1]), *map(int, sys.argv[2:5])
    trio.run(run_worker, path, worker, tasks, admissions)


async def run_worker(path: Path, worker: int, tasks: int, admissions: int) -> None:
    guard = SharedReplayGuard(await trio.to_thread.run_sync(AuditedDatabase, path))
    print("ready", flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)

    async def walk(rng: random.Random) -> None:
        counters = dict.fromkeys(WORKER_ORIGINATORS, 0)
        transforms: list[RequestId] = []
        for _ in range(admissions):
            if transforms and rng.random() < 0.2:
                request_id, variant = rng.choice(transforms), rng.choice((5, 6, 7))
            else:
                originator = rng.choice(WORKER_ORIGINATORS)
                counters[originator] += rng.randint(0, 2)  # 0: this task repeats itself
                variant = rng.choice((1, 1, 2, 4))
                request_id = rid(counters[originator], originator=originator)
                if variant == 4:
                    transforms.append(request_id)
            if (await guard.admit(request_id, variant)).verdict is ReplayVerdict.FRESH:
                print(request_id.originator, request_id.counter, variant, flush=True)

    async with trio.open_nursery() as nursery:
        # Even tasks run the same seeds in every worker: each of their requests is
        # replayed to the other worker. Odd tasks race it with counters of their own.
        for task in range(tasks):
            nursery.start_soon(
                walk, random.Random(task if task % 2 == 0 else 1000 * (worker + 1) + task)
            )
    await guard.aclose()


class Worker:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""

    @classmethod
    async def start(
        cls, path: Path, worker: int, tasks: int, admissions: int, stderr: Path
    ) -> Worker:
        command = [
            sys.executable,
            "-c",
            "from tests.test_replay import worker_main; worker_main()",
            *map(str, (path, worker, tasks, admissions)),
        ]
        with stderr.open("wb") as errors:
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                cwd=PROJECT_ROOT,
            )  # fmt: skip
        started = cls(process)
        await started.read_until(lambda: started.output.startswith(b"ready\n"))
        return started

    async def read_until(self, condition: Callable[[], bool]) -> None:
        assert self.process.stdout is not None
        while not condition():
            chunk = await self.process.stdout.receive_some()
            assert chunk, "worker ended early"
            self.output += chunk

    async def go(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(b"go\n")

    async def finish(self) -> None:
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.receive_some():
            self.output += chunk
        assert await self.process.wait() == 0

    def accepted(self) -> list[tuple[str, int, int]]:
        # A worker killed mid-write leaves a partial last line: not a report.
        text = self.output.decode()
        lines = text[: text.rfind("\n") + 1].splitlines()[1:]
        return [(o, int(c), int(v)) for o, c, v in (line.split() for line in lines)]


def audited_file(tmp_path: Path) -> Path:
    path = tmp_path / "replay.sqlite"
    ReplayDatabase(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY, pid INTEGER, originator TEXT, "
            "counter INTEGER, variant INTEGER, code TEXT)"
        )
    return path


def assert_commit_order_is_sound(path: Path) -> list[tuple[int, str, int, int]]:
    """Per originator the accepted counters rise in commit order; each allowance is used
    at most once and only after its CV 4. Returns the accepted (pid, originator, counter,
    variant) in commit order."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT pid, originator, counter, variant FROM audit WHERE code IS NULL ORDER BY seq"
        ).fetchall()
        last_on_disk = dict(db.execute("SELECT originator, counter FROM last_counter"))
    highest: dict[str, int] = {}
    transforms: set[tuple[str, int]] = set()
    for _, originator, counter, variant in rows:
        if variant in SIGNED_PRE_COMMAND_VARIANTS:
            transforms.remove((originator, counter))  # KeyError: no (or a spent) allowance
            continue
        assert counter > highest.get(originator, -1), (originator, counter)
        highest[originator] = counter
        if variant == replay_rules.TRANSFORM_VARIANT:
            transforms.add((originator, counter))
    assert {o: c + 2**63 for o, c in last_on_disk.items()} == highest
    assert_counts_consistent(path)
    return rows


async def test_two_processes_never_accept_one_counter_twice(tmp_path: Path) -> None:
    path = audited_file(tmp_path)
    with trio.fail_after(PROCESS_TIMEOUT_SECONDS):
        workers = [
            await Worker.start(path, n, tasks=8, admissions=150, stderr=tmp_path / f"{n}.err")
            for n in range(2)
        ]
        for worker in workers:
            await worker.go()
        for worker in workers:
            await worker.finish()
    rows = assert_commit_order_is_sound(path)
    reported = [set(worker.accepted()) for worker in workers]
    assert all(reported), "each worker should win some races"
    assert not reported[0] & reported[1]  # nothing accepted by both
    pids = [worker.process.pid for worker in workers]
    assert {(o, c, v) for pid, o, c, v in rows if pid == pids[0]} == reported[0]
    assert {(o, c, v) for pid, o, c, v in rows if pid == pids[1]} == reported[1]
    with sqlite3.connect(path) as db:
        order = [pid for (pid,) in db.execute("SELECT pid FROM audit ORDER BY seq")]
    switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
    assert switches > 2, "the workers' transactions should interleave"


async def test_a_worker_killed_mid_run_leaves_its_acceptances_on_disk(tmp_path: Path) -> None:
    path = audited_file(tmp_path)
    with trio.fail_after(PROCESS_TIMEOUT_SECONDS):
        doomed = await Worker.start(path, 0, tasks=8, admissions=10**6, stderr=tmp_path / "d.err")
        survivor = await Worker.start(path, 1, tasks=8, admissions=150, stderr=tmp_path / "s.err")
        await doomed.go()
        await survivor.go()
        await doomed.read_until(lambda: doomed.output.count(b"\n") > 300)
        doomed.process.kill()  # SIGKILL: no cleanup, possibly inside a transaction
        assert doomed.process.stdout is not None
        while chunk := await doomed.process.stdout.receive_some():
            doomed.output += chunk
        assert await doomed.process.wait() == -9
        await survivor.finish()  # the dead worker's lock did not stop it
    rows = assert_commit_order_is_sound(path)
    on_disk = {(o, c, v) for pid, o, c, v in rows if pid == doomed.process.pid}
    assert set(doomed.accepted()) <= on_disk  # every acceptance it reported was committed
    guard = await SharedReplayGuard.open(path)
    for originator, counter, variant in doomed.accepted():
        verdict = (await guard.admit(rid(counter, originator=originator), variant)).verdict
        assert verdict is not ReplayVerdict.FRESH
    await guard.aclose()
