"""The asynchronous life cycle: accepted CV 1/3/5/7 work -> device -> signed Service
Response -> outbox -> the User's Receive Response URL.

Nothing acknowledged is lost: `submit` returns only once the request is in the
jobs journal (a second durable queue with the outbox's group commit), and the
I99 goes out after that. A worker sends the command, stores the signed
response in the outbox under the message id `<RequestID>:response` and only
then marks the job done. After a crash, jobs still in the journal are rebuilt
from their signed bytes and run again; a response already in the outbox is
recognised by its message id and not stored twice.
"""

from __future__ import annotations

import logging

import trio

from gateway.core.answers import Answers
from gateway.core.commands import device_command
from gateway.core.device import DeviceReply
from gateway.core.log_fields import log_event
from gateway.core.outcome import Refusal
from gateway.core.snapshot import SnapshotHolder
from gateway.core.stages import RequestChecks
from gateway.edge.dispatch import AsyncJob, send_to_device
from gateway.edge.transport import DeviceTransport
from gateway.stores.outbox import DuplicateMessageId, OutboundMessage, Outbox
from mmc.identifiers import RequestId
from parse_correlate.commands import CommandError

log = logging.getLogger("duisgw.lifecycle")

ASYNC_QUEUE_SIZE = 10_000  # accepted jobs waiting for a worker; submit waits beyond it
ASYNC_WORKERS = 512  # jobs in flight at once (most of their time is device latency)
RECOVERY_PAGE = 1000
JOB_URL = "job:"  # jobs-journal rows are not delivered anywhere


def response_message_id(request_id: object) -> str:
    return f"{request_id}:response"


class Lifecycle:
    def __init__(
        self,
        checks: RequestChecks,
        snapshots: SnapshotHolder,
        answers: Answers,
        transport: DeviceTransport,
        jobs: Outbox,
        outbox: Outbox,
    ) -> None:
        self._checks = checks
        self._snapshots = snapshots
        self._answers = answers
        self._transport = transport
        self._jobs = jobs
        self._outbox = outbox
        self._send, self._receive = trio.open_memory_channel[AsyncJob](ASYNC_QUEUE_SIZE)

    async def deliver_alert(self, user_id: str, message_id: str, body: bytes) -> None:
        await self.deliver(user_id, message_id, body, "alert")

    async def already_answered(self, request_id: RequestId) -> bool:
        """Its job is journaled or its response stored: processing it again would repeat it."""
        return (
            await self._jobs.get(str(request_id)) is not None
            or await self._outbox.get(response_message_id(request_id)) is not None
        )

    async def submit(self, job: AsyncJob) -> None:
        """Journal the job durably, then queue it; the caller acknowledges after this."""
        header = job.request.header
        await self._jobs.put(
            OutboundMessage(
                message_id=str(header.request_id),
                user_id=header.request_id.originator,
                url=JOB_URL,
                body=job.request.raw,
                created_at=self._answers.now(),
            )
        )
        await self._send.send(job)

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
            await self._recover()

    async def _recover(self) -> None:
        """Re-run jobs journaled before a restart and not finished."""
        after = 0
        recovered = 0
        while True:
            page = await self._jobs.pending(after_id=after, limit=RECOVERY_PAGE)
            if not page:
                break
            for stored in page:
                after = stored.id
                job = self._rebuild(stored.body)
                if job is None:
                    await self._jobs.mark_delivered(stored.message_id)
                    continue
                await self._send.send(job)
                recovered += 1
        if recovered:
            log.info("recovered %d accepted jobs from the journal", recovered)

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

    async def finish_reply(self, command_id: str, reply: DeviceReply) -> None:
        """A device reply no worker here waits for (its node is gone, or it came after
        the timeout): finish the job if it is still pending in the journal, else drop it."""
        stored = await self._jobs.get(command_id)
        if stored is None or stored.state != "pending":
            log.info("reply for %s: no pending job for it here; dropped", command_id)
            return
        job = self._rebuild(stored.body)
        if job is None:
            await self._jobs.mark_delivered(stored.message_id)
            return
        await self._finish(job, reply)

    async def _worker(self) -> None:
        async for job in self._receive:
            await self._finish(job, await send_to_device(self._transport, job.command))

    async def _finish(self, job: AsyncJob, reply: DeviceReply) -> None:
        """Sign the Service Response, store it for delivery, then retire the job."""
        request = job.request
        outcome = self._answers.device_response(request, reply)
        request_id = request.header.request_id
        await self.deliver(
            request_id.originator, response_message_id(request_id), outcome.body, "response"
        )
        await self._jobs.mark_delivered(str(request_id))
        log_event(
            log,
            logging.INFO,
            "stored for delivery",
            "request_id=%(request_id)s device=%(device)s outcome=%(outcome)s stored for delivery",
            request_id=str(request_id),
            device=job.command.device_id,
            outcome=str(reply.outcome),
        )
