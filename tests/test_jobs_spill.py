"""The SQLite jobs store never makes an acknowledgement wait for room: beyond its
buffer, jobs wait in the journal and come back from it, each handed out once, with
the priority class their row keeps (also across a restart)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import trio
import trio.lowlevel

from gateway.stores.jobs import JobEntry, SqliteJobs, open_sqlite_jobs
from gateway.stores.outbox import open_outbox

AT = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


async def put(jobs: SqliteJobs, job_id: str, priority: int = 3) -> None:
    with trio.fail_after(10):  # a put that waited for room would hang here
        await jobs.put(job_id, "90-B3-D5-1F-30-01-00-00", job_id.encode(), AT, priority)


async def take(jobs: SqliteJobs) -> JobEntry:
    with trio.fail_after(10):
        entry = await jobs.next_job()
    await jobs.done(entry.job_id)
    return entry


async def test_puts_beyond_the_buffer_return_and_every_job_comes_back_once(
    tmp_path: Path,
) -> None:
    async with open_outbox(tmp_path / "jobs.sqlite") as journal:
        jobs = SqliteJobs(journal, capacity=5)
        ids = [f"job-{n}" for n in range(40)]
        for job_id in ids:
            await put(jobs, job_id)
        assert jobs.buffered == 5 and jobs.spilled  # the rest are on disk only
        taken = [(await take(jobs)).job_id for _ in ids]
        assert taken == ids  # one class: arrival order, each once
        assert journal.pending_count() == 0 and not jobs.spilled
        assert jobs.buffered <= 5


async def test_puts_and_takes_interleaved_lose_and_repeat_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    async with open_outbox(tmp_path / "jobs.sqlite") as journal:
        jobs = SqliteJobs(journal, capacity=4)
        ids = [f"job-{n}" for n in range(300)]
        taken: list[str] = []

        async def taker() -> None:
            while len(taken) < len(ids):
                taken.append((await take(jobs)).job_id)
                if rng.random() < 0.5:
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(taker)
            for job_id in ids:
                await put(jobs, job_id, priority=rng.randrange(4))
                assert jobs.buffered <= 4
                if rng.random() < 0.3:
                    await trio.lowlevel.checkpoint()
        assert sorted(taken) == sorted(ids)  # every job once: none lost, none twice
        assert journal.pending_count() == 0


async def test_the_buffer_hands_out_the_highest_class_it_holds_first(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "jobs.sqlite") as journal:
        jobs = SqliteJobs(journal, capacity=10)
        for n in range(5):
            await put(jobs, f"read-{n}", priority=3)
        await put(jobs, "top-up", priority=0)
        assert (await take(jobs)).job_id == "top-up"


async def test_a_restart_brings_back_each_class_beyond_the_buffer_too(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    async with open_sqlite_jobs(path) as jobs:
        for n in range(12):
            await put(jobs, f"read-{n}", priority=3)
        await put(jobs, "top-up", priority=0)
        assert (await take(jobs)).job_id == "top-up"  # done: not recovered
        await put(jobs, "second top-up", priority=0)
    async with open_outbox(path) as journal:
        jobs = SqliteJobs(journal, capacity=20)
        assert await jobs.recover() == 13
        first = await take(jobs)  # journaled last, its class kept: first
        assert (first.job_id, first.priority, first.repeated) == ("second top-up", 0, True)
        rest = [await take(jobs) for _ in range(12)]
        assert [e.job_id for e in rest] == [f"read-{n}" for n in range(12)]
        assert all(e.priority == 3 and e.repeated for e in rest)
    async with open_outbox(path) as journal:  # recovery beyond the buffer's room
        jobs = SqliteJobs(journal, capacity=2)
        for n in range(5):
            await put(jobs, f"more-{n}")
    async with open_outbox(path) as journal:
        jobs = SqliteJobs(journal, capacity=2)
        assert await jobs.recover() == 5
        assert jobs.buffered == 2
        back = [await take(jobs) for _ in range(5)]
        assert [e.job_id for e in back] == [f"more-{n}" for n in range(5)]
        assert all(e.repeated for e in back)
