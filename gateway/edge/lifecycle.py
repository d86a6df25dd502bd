"""The asynchronous life cycle: accepted CV 1/3/5/7 work -> device -> signed Service
Response -> outbox -> the User's Receive Response URL.

Nothing acknowledged is lost: `submit` returns only once the request is in the
jobs journal (a second durable queue with the outbox's group commit), and the
I99 goes out after that. A worker sends the command, stores the signed
response in the outbox under the message id `<RequestID>:response` and only
then marks the job done. After a crash, jobs still in the journal are rebuilt
from their signed bytes and run again; a response already in the outbox is
recognised by its message id and not stored twice.

No first-in-first-out stage stands between the journal and the device transport
(¶130, SEC H3.27): every accepted job is handed to the transport at once, in its own
task, so the transport's priority order decides what reaches a hub first (the
simulator's per-hub, per-class queues, whose limits refuse at once; the estate link's
credit, granted in priority order). Memory stays bounded: at most `max_in_memory` jobs
are held at once, the last tenth of them kept for the prepayment-and-critical class so a
top-up never waits behind a backlog of reads. Jobs beyond that stay in the journal only
(the backlog), and are started in journal order as room frees; so are the jobs found in
the journal at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.answers import Answers
from gateway.core.commands import device_command
from gateway.core.device import DeviceReply, Priority
from gateway.core.device_reply_check import checked_reply
from gateway.core.log_fields import log_event
from gateway.core.outcome import Refusal
from gateway.core.snapshot import SnapshotHolder
from gateway.core.stages import RequestChecks
from gateway.edge.dispatch import AsyncJob, send_to_device
from gateway.edge.transport import DeviceTransport
from gateway.stores.outbox import DuplicateMessageId, OutboundMessage, Outbox
from mmc.identifiers import Eui64, RequestId
from parse_correlate.commands import CommandError

log = logging.getLogger("duisgw.lifecycle")

# Accepted jobs held in memory (each a task waiting for its device); beyond it they wait
# in the journal. A tenth of it is kept for the prepayment-and-critical class.
ASYNC_QUEUE_SIZE = 10_000
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
        *,
        device_keys: Mapping[Eui64, ec.EllipticCurvePublicKey] | None = None,
        max_in_memory: int = ASYNC_QUEUE_SIZE,
    ) -> None:
        self._checks = checks
        self._snapshots = snapshots
        self._answers = answers
        self._transport = transport
        self._jobs = jobs
        self._outbox = outbox
        self._device_keys = device_keys or {}
        self.max_in_memory = max_in_memory
        self._running: set[str] = set()  # RequestIDs of the jobs held in memory
        self._submitting: set[str] = set()  # being journaled by `submit`: it decides
        self._finished_in_scan: set[str] = set()  # finished since the backlog scan began
        self._backlog = True  # the journal may hold jobs not in memory (at start: all)
        self._submitted_in_scan = False
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.recovered = 0

    @property
    def in_memory(self) -> int:
        """Accepted jobs held in memory now (the rest of the journal's are the backlog)."""
        return len(self._running)

    async def deliver_alert(self, user_id: str, message_id: str, body: bytes) -> None:
        await self.deliver(user_id, message_id, body, "alert")

    async def already_answered(self, request_id: RequestId) -> bool:
        """Its job is journaled or its response stored: processing it again would repeat it."""
        return (
            await self._jobs.get(str(request_id)) is not None
            or await self._outbox.get(response_message_id(request_id)) is not None
        )

    async def submit(self, job: AsyncJob) -> None:
        """Journal the job durably, then start it (or leave it to the backlog); the
        caller acknowledges after this."""
        header = job.request.header
        key = str(header.request_id)
        self._submitting.add(key)
        try:
            await self._jobs.put(
                OutboundMessage(
                    message_id=key,
                    user_id=header.request_id.originator,
                    url=JOB_URL,
                    body=job.request.raw,
                    created_at=self._answers.now(),
                )
            )
        finally:
            self._submitting.discard(key)
        # A top-up or critical command goes straight to the transport even past a
        # backlog of others; the rest keep journal order behind the backlog.
        critical = job.command.priority is Priority.PREPAYMENT_AND_CRITICAL
        if (critical or not self._backlog) and self._has_room(job):
            self._start(key, job)
        else:  # journaled: the backlog scan starts it when there is room
            self._backlog = self._submitted_in_scan = True
            self._wake.set()

    def _has_room(self, job: AsyncJob) -> bool:
        limit = self.max_in_memory
        if job.command.priority is not Priority.PREPAYMENT_AND_CRITICAL:
            limit -= limit // 10  # the rest is kept for top-ups and critical commands
        return self._nursery is not None and len(self._running) < limit

    def _start(self, key: str, job: AsyncJob) -> None:
        assert self._nursery is not None
        self._running.add(key)
        self._nursery.start_soon(self._run_job, key, job)

    async def _run_job(self, key: str, job: AsyncJob) -> None:
        try:
            await self._finish(job, await send_to_device(self._transport, job.command))
        except Exception:  # our bug: this job stays journaled (run again at restart), others go on
            log.exception("job %s failed; left in the journal", key)
        finally:
            self._running.discard(key)
            self._finished_in_scan.add(key)
            room = self.max_in_memory - len(self._running)
            if self._backlog and (room >= self.max_in_memory // 5 or not self._running):
                self._wake.set()  # in batches: each scan reads the journal from the start

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
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    if self._backlog:
                        await self._scan_backlog()
                        if self.recovered:
                            log.info("started %d accepted jobs from the journal", self.recovered)
                            self.recovered = 0
                    await self._wake.wait()
                    self._wake = trio.Event()
            finally:  # stopping: jobs accepted from now on stay in the journal for the restart
                self._nursery = None

    async def _scan_backlog(self) -> None:
        """Start journaled jobs that are not in memory, in journal order, while there is
        room; the backlog is gone once a whole scan found nothing more to start."""
        while True:
            self._submitted_in_scan = False
            self._finished_in_scan = set()
            after = 0
            while True:
                page = await self._jobs.pending(after_id=after, limit=RECOVERY_PAGE)
                if not page:
                    break
                for stored in page:
                    after = stored.id
                    key = stored.message_id
                    if key in self._running or key in self._submitting:
                        continue
                    if key in self._finished_in_scan:
                        continue  # done after this page was read: not to be run again
                    job = self._rebuild(stored.body)
                    if job is None:
                        await self._jobs.mark_delivered(key)
                        continue
                    if not self._has_room(job):
                        return  # still a backlog: woken when room frees
                    self._start(key, job)
                    self.recovered += 1
            if not self._submitted_in_scan:
                self._backlog = False
                return

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

    async def _finish(self, job: AsyncJob, reply: DeviceReply) -> None:
        """Check the device's reply, sign the Service Response, store it for delivery,
        then retire the job."""
        command = job.command
        reply, refused = checked_reply(command, reply, self._device_keys.get(command.device_id))
        if refused is not None:
            log_event(
                log,
                logging.WARNING,
                "device reply refused",
                "request_id=%(request_id)s device=%(device)s: the device's reply was refused "
                "(%(reason)s: %(detail)s); answered %(outcome)s",
                request_id=str(command.request_id),
                device=command.device_id,
                reason=str(refused.reason),
                detail=str(refused),
                outcome=str(reply.outcome),
            )
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
