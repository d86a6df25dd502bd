"""The asynchronous life cycle: accepted CV 1/3/5/7 work -> device -> signed Service
Response -> outbox -> the User's Receive Response URL.

Nothing acknowledged is lost: `submit` returns only once the request is in the
jobs journal (`JobStore`: SQLite, or Redis Streams shared by every node), and the
I99 goes out after that. Workers take jobs from the journal by priority class
(on Redis, any node's), send the command, store the signed response in the
outbox under the message id `<RequestID>:response` and only then mark the job
done. A job handed out again (after a restart, or taken over from a node that
died) is rebuilt from its signed bytes; a response already in the outbox is
recognised by its message id and not stored twice.

A store that fails before the acknowledgement refuses the request (503: nothing
was acknowledged); after it, the worker keeps the job and tries again.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio

from gateway.core.answers import Answers
from gateway.core.commands import device_command
from gateway.core.log_fields import log_event
from gateway.core.outcome import Refusal
from gateway.core.snapshot import SnapshotHolder
from gateway.core.stages import RequestChecks
from gateway.edge.dispatch import AsyncJob, send_to_device
from gateway.edge.transport import DeviceTransport
from gateway.stores.jobs import JobEntry, JobStore
from gateway.stores.outbox import DuplicateMessageId, OutboundMessage
from gateway.stores.outbox_sqlite import OutboxStoreError
from gateway.stores.outbox_store import OutboxStore
from mmc.identifiers import RequestId
from parse_correlate.commands import CommandError

log = logging.getLogger("duisgw.lifecycle")

ASYNC_WORKERS = 512  # jobs in flight at once (most of their time is device latency)
# Jobs submitted here, kept parsed so a worker on this node need not parse them again; a
# job run by another node (Redis) leaves its entry to age out.
PARSED_JOBS: Final = 10_000
STORE_RETRY_SECONDS: Final = 1.0  # a worker's pause before trying a failed store again


T = TypeVar("T")


def response_message_id(request_id: object) -> str:
    return f"{request_id}:response"


class Lifecycle:
    def __init__(
        self,
        checks: RequestChecks,
        snapshots: SnapshotHolder,
        answers: Answers,
        transport: DeviceTransport,
        jobs: JobStore,
        outbox: OutboxStore,
    ) -> None:
        self._checks = checks
        self._snapshots = snapshots
        self._answers = answers
        self._transport = transport
        self._jobs = jobs
        self._outbox = outbox
        self._parsed: OrderedDict[str, AsyncJob] = OrderedDict()

    async def deliver_alert(self, user_id: str, message_id: str, body: bytes) -> None:
        await self.deliver(user_id, message_id, body, "alert")

    async def already_answered(self, request_id: RequestId) -> bool:
        """Its job is journaled or its response stored: processing it again would repeat it."""
        return (
            await self._jobs.contains(str(request_id))
            or await self._outbox.get(response_message_id(request_id)) is not None
        )

    async def submit(self, job: AsyncJob) -> None:
        """Journal the job durably; the caller acknowledges after this. A journal that
        fails refuses the request (503), so nothing unjournaled is acknowledged."""
        header = job.request.header
        job_id = str(header.request_id)
        try:
            await self._jobs.put(
                job_id,
                header.request_id.originator,
                job.request.raw,
                self._answers.now(),
                int(job.command.priority),
            )
        except OutboxStoreError as exc:
            log.error("jobs journal unavailable, request %s refused: %s", job_id, exc)
            raise Refusal(
                503, "jobs", "store_unavailable", "the jobs journal is unavailable; retry later"
            ) from None
        # A worker here takes it without parsing it again (no await since the put: on
        # SQLite the job is in this node's buffer and no worker has run yet).
        self._parsed[job_id] = job
        while len(self._parsed) > PARSED_JOBS:
            self._parsed.popitem(last=False)

    async def deliver(self, user_id: str, message_id: str, body: bytes, kind: str) -> None:
        """Store a signed document for the User's Receive Response URL (durable on return)."""
        user = self._snapshots.current.users.get(user_id)
        url = user.response_url if user is not None and user.response_url else ""
        if not url:
            # Stored anyway: delivery dead-letters it where an operator can see and retry it.
            log_event(
                log,
                logging.WARNING,
                "no Receive Response URL",
                "user_id=%(user_id)s has no Receive Response URL; %(message_id)s goes to "
                "dead letters",
                user_id=user_id,
                message_id=message_id,
            )
        try:
            await self._outbox.put(
                OutboundMessage(
                    message_id=message_id,
                    user_id=user_id,
                    url=url,
                    body=body,
                    created_at=self._answers.now(),
                    kind="alert" if kind == "alert" else "response",
                )
            )
        except DuplicateMessageId:
            log.info("message %s was already stored (recovered job); not stored twice", message_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(ASYNC_WORKERS):
                nursery.start_soon(self._worker)
            task_status.started()

    def _rebuild(self, raw: bytes) -> AsyncJob | None:
        snapshot = self._snapshots.current
        try:
            request = self._checks.verify(raw, snapshot.certstore, check_signature=False)
            command = device_command(request, snapshot.inventory, self._answers.now())
        except Refusal as refusal:
            log_event(
                log,
                logging.ERROR,
                "journaled job dropped",
                "journaled job no longer readable (%(reason)s: %(detail)s); dropped from the "
                "journal",
                reason=refusal.reason,
                detail=refusal.detail,
            )
            return None
        except CommandError as exc:  # it was built once: the estate has changed since
            log.error("journaled job's command cannot be built (%s); dropped", exc)
            return None
        return AsyncJob(request, command)

    async def _worker(self) -> None:
        while True:
            entry = await self._jobs.next_job()
            job = self._parsed.pop(entry.job_id, None) or self._rebuild(entry.body)
            if job is not None:
                await self._run(entry, job)
            await self._until_stored(functools.partial(self._jobs.done, entry.job_id))

    async def _run(self, entry: JobEntry, job: AsyncJob) -> None:
        request = job.request
        request_id = request.header.request_id
        message_id = response_message_id(request_id)
        if entry.repeated and await self._until_stored(
            functools.partial(self._answered, message_id)
        ):
            return  # answered before its node stopped: only the job's end was lost
        reply = await send_to_device(self._transport, job.command)
        outcome = self._answers.device_response(request, reply)
        await self._until_stored(
            lambda: self.deliver(request_id.originator, message_id, outcome.body, "response")
        )
        log_event(
            log,
            logging.INFO,
            "stored for delivery",
            "request_id=%(request_id)s device=%(device)s outcome=%(outcome)s stored for delivery",
            request_id=str(request_id),
            device=job.command.device_id,
            outcome=str(reply.outcome),
        )

    async def _answered(self, message_id: str) -> bool:
        return await self._outbox.get(message_id) is not None

    async def _until_stored(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """After the acknowledgement a job is not given up: wait out the store's outage."""
        while True:
            try:
                return await attempt()
            except OutboxStoreError as exc:
                log.warning("store unavailable (%s); retrying in %gs", exc, STORE_RETRY_SECONDS)
                await trio.sleep(STORE_RETRY_SECONDS)
