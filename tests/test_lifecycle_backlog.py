"""The life cycle holds at most `max_in_memory` accepted jobs; the rest wait in the
journal and are started from it as room frees, highest priority first, each exactly once."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import trio
import trio.lowlevel

from gateway.core.answers import Answers
from gateway.core.clock import SystemClock
from gateway.core.commands import device_command
from gateway.core.device import Priority
from gateway.core.outcome import Refusal
from gateway.core.simulator_config import LinkProfile, SimulatorConfig
from gateway.core.stages import RequestChecks
from gateway.devkit.client import sign_request
from gateway.devkit.simulator import Simulator
from gateway.edge.dispatch import AsyncJob
from gateway.edge.lifecycle import Lifecycle, response_message_id
from gateway.stores.jobs import JobsFull, SqliteJobs, open_sqlite_jobs
from gateway.stores.operator_files import load
from gateway.stores.outbox import open_outbox
from tests.estate_harness import slow_estate, transport
from tests.harness import default_config, next_counter

READ = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
TOP_UP = "duis/samples/requests/CS01a_2.2_SUCCESS_REQUEST_DUIS.XML"


class Parts:
    """What a life cycle is built from, on the embedded default in `state_dir`."""

    def __init__(self, state_dir: Path, shared_dir: Path) -> None:
        self.state_dir, self.shared_dir = state_dir, shared_dir
        self.clock = SystemClock()
        self.loaded = load(default_config(state_dir), self.clock)
        self.answers = Answers(self.clock, self.loaded.signer)
        self.checks = RequestChecks(self.loaded.versions, self.loaded.schemas, self.clock)

    def job(self, template: str = READ) -> AsyncJob:
        """`template` signed with a fresh counter, checked, its device command built."""
        raw, _ = sign_request(
            (self.shared_dir / template).read_bytes(),
            [self.state_dir / "pki"],
            counter=next_counter(),
        )
        snapshot = self.loaded.snapshots.current
        request = self.checks.verify(raw, snapshot.certstore, check_signature=False)
        return AsyncJob(request, device_command(request, snapshot.inventory, self.answers.now()))


async def test_a_backlog_waits_in_the_journal_and_every_job_runs_once(
    tmp_path: Path, shared_dir: Path
) -> None:
    parts = Parts(tmp_path, shared_dir)
    clock, loaded, answers, checks = parts.clock, parts.loaded, parts.answers, parts.checks
    leg = LinkProfile(distribution="fixed", latency_median_seconds=0.01, latency_p99_seconds=0.01)
    devices = Simulator.for_inventory(
        lambda: loaded.snapshots.current.inventory,
        msgspec.structs.replace(
            SimulatorConfig(),
            wan_profiles={name: leg for name in SimulatorConfig().wan_profiles},
            han_profiles={name: leg for name in SimulatorConfig().han_profiles},
        ),
        clock,
    )
    sent: list[str] = []
    original_send = devices.send
    # Devices answer only once every job is submitted, so which jobs reach a device before
    # the top-up does not depend on how fast this machine commits the journal.
    devices_answer = trio.Event()

    async def counting_send(command):  # type: ignore[no-untyped-def]
        sent.append(str(command.request_id))
        await devices_answer.wait()
        return await original_send(command)

    devices.send = counting_send  # type: ignore[method-assign]
    job = parts.job

    jobs_to_send = [job(READ) for _ in range(40)]
    top_up = job(TOP_UP)
    assert top_up.command.priority is Priority.PREPAYMENT_AND_CRITICAL
    async with (
        open_outbox(tmp_path / "outbox.sqlite", clock=clock) as outbox,
        open_sqlite_jobs(tmp_path / "jobs.sqlite", clock=clock) as journal,
        trio.open_nursery() as nursery,
    ):
        lifecycle = Lifecycle(
            checks, loaded.snapshots, answers, devices, journal, outbox, max_in_memory=10
        )
        await nursery.start(lifecycle.run)
        peak = 0
        for one in jobs_to_send:
            await lifecycle.submit(one)
            await trio.lowlevel.checkpoint()  # let the life cycle take what it has room for
            peak = max(peak, lifecycle.in_memory)
        assert peak <= 10
        assert journal.pending_count() > 20  # the rest wait in the journal only
        await lifecycle.submit(top_up)
        # The reads in memory reach their devices; the top-up is taken before any read
        # still waiting in the journal.
        with trio.fail_after(30):
            while len(sent) < 10:
                await trio.sleep(0.01)
        started_before_top_up = len(sent)
        assert started_before_top_up == lifecycle.in_memory == 10
        devices_answer.set()
        with trio.fail_after(30):
            while journal.pending_count():
                await trio.sleep(0.02)
        all_jobs = [*jobs_to_send, top_up]
        ids = [str(j.request.header.request_id) for j in all_jobs]
        assert sorted(sent) == sorted(ids)  # each sent to its device exactly once
        for request_id in ids:
            assert await outbox.get(response_message_id(request_id)) is not None
        # The top-up did not wait for the backlog of reads ahead of it.
        assert sent.index(ids[-1]) == started_before_top_up
        nursery.cancel_scope.cancel()


class FullJobs:
    """A jobs store at its deployment-wide limit (as RedisJobs beyond max_pending)."""

    async def put(self, *args: object) -> None:
        raise JobsFull("100,000 jobs wait for the device estate (limit 100,000)")


async def test_a_full_jobs_journal_refuses_with_503_at_once(
    tmp_path: Path, shared_dir: Path
) -> None:
    parts = Parts(tmp_path, shared_dir)
    job = parts.job()
    inventory = parts.loaded.snapshots.current.inventory
    devices = Simulator.for_inventory(lambda: inventory, SimulatorConfig(), parts.clock)
    async with open_outbox(tmp_path / "outbox.sqlite", clock=parts.clock) as outbox:
        full = FullJobs()
        lifecycle = Lifecycle(
            parts.checks,
            parts.loaded.snapshots,
            parts.answers,
            devices,
            full,  # type: ignore[arg-type]
            outbox,
        )
        with trio.fail_after(5), pytest.raises(Refusal) as refused:
            await lifecycle.submit(job)
    assert (refused.value.status, refused.value.stage, refused.value.reason) == (
        503,
        "jobs",
        "backlog_full",
    )
    assert "limit 100,000" in refused.value.detail


async def test_a_slow_network_estate_keeps_memory_bounded_and_jobs_on_disk(
    tmp_path: Path, shared_dir: Path
) -> None:
    """Credit held by the estate, at most `max_in_memory` jobs running, at most the store's
    buffer in memory, the rest journaled: every submit returns, every job answered once."""
    parts = Parts(tmp_path, shared_dir)
    clock, loaded, answers, checks = parts.clock, parts.loaded, parts.answers, parts.checks
    jobs_to_send = [parts.job() for _ in range(40)]
    estate = slow_estate(default_config(tmp_path / "estate"), 0.1, credit_window=3, hub_capacity=64)
    async with (
        open_outbox(tmp_path / "outbox.sqlite", clock=clock) as outbox,
        open_outbox(tmp_path / "jobs.sqlite", clock=clock) as journal,
        trio.open_nursery() as nursery,
    ):
        _, port = await nursery.start(estate.serve, "127.0.0.1", 0)
        link = transport(port)
        await nursery.start(link.run)
        jobs = SqliteJobs(journal, capacity=5)
        lifecycle = Lifecycle(
            checks, loaded.snapshots, answers, link, jobs, outbox, max_in_memory=4
        )
        await nursery.start(lifecycle.run)
        peaks = {"in_flight": 0, "running": 0, "buffered": 0}

        def watch() -> None:
            peaks["in_flight"] = max(peaks["in_flight"], link.in_flight)
            peaks["running"] = max(peaks["running"], lifecycle.in_memory)
            peaks["buffered"] = max(peaks["buffered"], jobs.buffered)

        for one in jobs_to_send:
            with trio.fail_after(10):  # an acknowledgement never waits for the devices
                await lifecycle.submit(one)
            watch()
        assert journal.pending_count() > 20 and jobs.spilled  # on disk, not in memory
        ids = [response_message_id(j.request.header.request_id) for j in jobs_to_send]
        with trio.fail_after(60):
            while journal.pending_count():
                watch()
                await trio.sleep(0.01)
        assert peaks["in_flight"] <= 3  # the estate's credit window
        assert peaks["running"] <= 4 and peaks["buffered"] <= 5
        for message_id in ids:  # each job answered, its response stored once
            assert await outbox.get(message_id) is not None
        assert outbox.pending_count() == len(ids)
        nursery.cancel_scope.cancel()
