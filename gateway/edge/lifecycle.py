"""The asynchronous life cycle: accepted CV 1/3/5/7 work -> device -> signed Service
Response -> outbox -> the User's Receive Response URL.

Nothing acknowledged is lost: `submit` returns only once the request is in the
jobs journal (`JobStore`: SQLite, or Redis Streams shared by every node), and the
I99 goes out after that. Jobs are taken from the journal by priority class (on
Redis, any node's), the command is sent, the device's reply checked, the signed
response stored in the outbox under the message id `<RequestID>:response` and only
then is the job marked done; device alerts the reply carried are passed on to their
Users (gateway/edge/device_alerts.py) after the response is stored and before the job is
marked done. A job handed out again (after a restart, or taken over
from a node that died) is rebuilt from its signed bytes; a response already in the
outbox is recognised by its message id and not stored twice.

No first-in-first-out stage stands between the journal and the device transport
(¶130, SEC H3.27): the journal hands out jobs lowest priority class first, and each
job taken goes to the transport at once, in its own task, so the transport's own
priority order decides what reaches a hub first (the simulator's per-hub, per-class
queues; the estate link's credit, granted in priority order). Memory stays bounded: at
most `max_in_memory` jobs are held at once; the rest wait in the journal, where a
top-up is handed out before any read still waiting.

A store that fails before the acknowledgement refuses the request (503: nothing
was acknowledged); after it, the job is kept and tried again.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypeVar

import trio
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.answers import Answers
from gateway.core.commands import device_command
from gateway.core.device import DeviceOutcome, DeviceReply
from gateway.core.device_reply_check import checked_reply
from gateway.core.log_fields import log_event
from gateway.core.outcome import Refusal, Verified
from gateway.core.snapshot import SnapshotHolder
from gateway.core.stages import RequestChecks
from gateway.edge.dispatch import AsyncJob, send_to_device
from gateway.edge.transport import DeviceTransport
from gateway.stores.jobs import JobEntry, JobsFull, JobStore
from gateway.stores.outbox import DuplicateMessageId, OutboundMessage
from gateway.stores.outbox_sqlite import OutboxStoreError
from gateway.stores.outbox_store import OutboxStore
from mmc.identifiers import Eui64, RequestId
from parse_correlate.commands import CommandError

log = logging.getLogger("duisgw.lifecycle")

# Accepted jobs held in memory at once (each a task waiting for its device); the rest
# wait in the journal, handed out by priority class as room frees.
MAX_IN_MEMORY: Final = 10_000
# Jobs submitted here, kept parsed so this node need not parse them again; a job run by
# another node (Redis) leaves its entry to age out.
PARSED_JOBS: Final = 10_000
STORE_RETRY_SECONDS: Final = 1.0  # pause before trying a failed store again


T = TypeVar("T")

# Passes on the device alerts a reply carried (gateway/edge/device_alerts.py): the alerts,
# and the request whose reply carried them (None for a reply no job here waited for).
# Returns once each is stored or refused; waits out a store's outage.
ReplyAlerts = Callable[[tuple[bytes, ...], Verified | None], Awaitable[None]]


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
        *,
        device_keys: Mapping[Eui64, ec.EllipticCurvePublicKey] | None = None,
        max_in_memory: int = MAX_IN_MEMORY,
    ) -> None:
        self._checks = checks
        self._snapshots = snapshots
        self._answers = answers
        self._transport = transport
        self._jobs = jobs
        self._outbox = outbox
        self._device_keys = device_keys or {}
        self.max_in_memory = max_in_memory
        self._parsed: OrderedDict[str, AsyncJob] = OrderedDict()
        self._running: set[str] = set()  # RequestIDs of the jobs held in memory
        self._room = trio.lowlevel.ParkingLot()
        self._reply_alerts: ReplyAlerts | None = None

    def on_reply_alerts(self, handler: ReplyAlerts) -> None:
        """Who passes on the device alerts that replies carry; without one they are
        dropped (logged)."""
        self._reply_alerts = handler

    @property
    def in_memory(self) -> int:
        """Accepted jobs held in memory now (the rest of the journal's wait there)."""
        return len(self._running)

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
        except JobsFull as exc:
            log.warning("jobs journal full, request %s refused: %s", job_id, exc)
            raise Refusal(503, "jobs", "backlog_full", f"{exc}; retry later") from None
        # Taken here without parsing it again (no await since the put: on SQLite the job
        # is in this node's buffer and not yet handed out).
        self._parsed[job_id] = job
        while len(self._parsed) > PARSED_JOBS:
            self._parsed.popitem(last=False)

    async def deliver(self, user_id: str, message_id: str, body: bytes, kind: str) -> None:
        """Store a signed document for the User's Receive Response URL (durable on return)."""
        await self.store(user_id, message_id, body, kind)

    async def store_alert(self, user_id: str, message_id: str, body: bytes) -> bool:
        """`deliver_alert`, saying whether it was stored now (False: already stored)."""
        return await self.store(user_id, message_id, body, "alert")

    async def store(self, user_id: str, message_id: str, body: bytes, kind: str) -> bool:
        """`deliver`; True if stored now, False if a message with that id already was
        (the first one stands: it is not replaced, and is delivered once)."""
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
            return False
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take jobs from the journal, highest priority first, while there is room."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                while len(self._running) >= self.max_in_memory:
                    await self._room.park()
                entry = await self._jobs.next_job()
                job = self._parsed.pop(entry.job_id, None) or self._rebuild(entry.body)
                if job is None:
                    await self._until_stored(functools.partial(self._jobs.done, entry.job_id))
                    continue
                self._running.add(entry.job_id)
                nursery.start_soon(self._run_job, entry, job)

    async def _run_job(self, entry: JobEntry, job: AsyncJob) -> None:
        try:
            await self._run(entry, job)
            await self._until_stored(functools.partial(self._jobs.done, entry.job_id))
        except Exception:  # our bug: this job stays journaled (run again later), others go on
            log.exception("job %s failed; left in the journal", entry.job_id)
        finally:
            self._running.discard(entry.job_id)
            self._room.unpark()

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

    async def _run(self, entry: JobEntry, job: AsyncJob) -> None:
        """Send, check, answer (the response stored for delivery)."""
        message_id = response_message_id(job.request.header.request_id)
        if entry.repeated and await self._until_stored(
            functools.partial(self._answered, message_id)
        ):
            return  # answered before its node stopped: only the job's end was lost
        await self._finish(job, await send_to_device(self._transport, job.command))

    async def finish_reply(self, command_id: str, reply: DeviceReply) -> None:
        """A device reply no task here waits for (its node is gone, or it came after the
        command's timeout was answered). Its job, if still journaled, is run again by the
        node that holds it or takes it over; the reply is dropped here, and logged. The
        device alerts it carries happened all the same: they are passed on."""
        log.info(
            "reply for %s (%s): no command waits for it here; dropped (its job, if still "
            "journaled, runs again where it is held)",
            command_id,
            reply.outcome,
        )
        await self._pass_on_alerts(reply.alerts, None)

    async def _finish(self, job: AsyncJob, reply: DeviceReply) -> None:
        """Check the device's reply, sign the Service Response, store it for delivery."""
        command = job.command
        alerts = reply.alerts  # the device raised them whatever becomes of its response
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
        await self._until_stored(
            lambda: self.deliver(
                request_id.originator, response_message_id(request_id), outcome.body, "response"
            )
        )
        # A device that answered is the ordinary case, and its response waits in the
        # outbox: a line per request at INFO took 3.4% of the event loop's samples at
        # 1,000 requests/s (py-spy, bench.load --instant-devices). One that did not is news.
        ordinary = reply.outcome is DeviceOutcome.RESPONDED
        log_event(
            log,
            logging.DEBUG if ordinary else logging.INFO,
            "stored for delivery",
            "request_id=%(request_id)s device=%(device)s outcome=%(outcome)s stored for delivery",
            request_id=str(request_id),
            device=command.device_id,
            outcome=str(reply.outcome),
        )
        await self._pass_on_alerts(alerts, request)

    async def _pass_on_alerts(self, alerts: tuple[bytes, ...], request: Verified | None) -> None:
        if not alerts:
            return
        if self._reply_alerts is None:
            log.warning("%d device alert(s) in a reply dropped: no handler", len(alerts))
            return
        await self._reply_alerts(alerts, request)

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
