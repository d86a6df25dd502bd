"""The dispatch stage: answer an admitted request the way its CommandVariant says.

Which way is decided in the core (`gateway.core.commands.answer_mode`); this module
does the I/O each way needs: CV 8 is answered from the inventory, or by the
Technical Specification and Install and Leave rules (gateway/edge/techspec_dispatch.py,
which also checks a Commission Device before its Pre-Command), and an 8.13 by
`LocalDelivery` (gateway/edge/local_delivery.py); for CV 4 the Pre-Command is
recorded in the replay store (durable, shared by every worker) through
`RecordPreCommand` before the signed I0 carries it; CV 2 and 6 are kept in the local
command store and answered with the command for local delivery (nothing goes to the
device); CV 1, 3, 5 and 7 are journaled by the life cycle (`AsyncSubmit`) before the
I99 goes out (for CV 3 and 7, a signed I99 carrying the local copy).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.core.answers import Answers
from gateway.core.commands import AnswerMode, answer_mode, device_command
from gateway.core.dcc_services import answer_non_device
from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply
from gateway.core.log_fields import log_event
from gateway.core.outcome import Acknowledge, Outcome, Verified
from gateway.core.snapshot import Snapshot
from gateway.edge.local_delivery import LocalDelivery
from gateway.edge.stage_batch import StageBatch
from gateway.edge.techspec_dispatch import TechspecDispatch
from gateway.edge.transport import DeviceTransport, QueueFull
from mmc.identifiers import RequestId
from parse_correlate.commands import CommandError

log = logging.getLogger("duisgw.dispatch")


class AsyncJob:
    __slots__ = ("command", "request")

    def __init__(self, request: Verified, command: DeviceCommand) -> None:
        self.request = request
        self.command = command


# Hands an accepted asynchronous job to the life-cycle worker; returns once it is durable.
AsyncSubmit = Callable[[AsyncJob], Awaitable[None]]
# Keeps the Pre-Command issued for a CV 4 with its allowance; durable on return, False
# when the allowance is gone (evicted by the per-originator cap).
RecordPreCommand = Callable[[RequestId, bytes], Awaitable[bool]]


class Dispatcher:
    def __init__(
        self,
        answers: Answers,
        record_pre_command: RecordPreCommand,
        submit_async: AsyncSubmit,
        local: LocalDelivery,
        techspec: TechspecDispatch | None = None,
    ) -> None:
        self._answers = answers
        self._record_pre_command = record_pre_command
        self._submit_async = submit_async
        self._local = local
        self._techspec = techspec
        self._signing = StageBatch()

    async def dispatch(self, request: Verified, snapshot: Snapshot) -> Outcome:
        """The answer; `Acknowledge` (E11) when no command can be built for the request,
        (E0813xx) when an 8.13 answers no open local command."""
        mode = answer_mode(request.header.command_variant, request.srv)
        if mode is AnswerMode.RETURN_LOCAL:
            return await self._local.return_response(request)
        techspec = self._techspec
        if mode is AnswerMode.NON_DEVICE:
            answer = None
            if techspec is not None:
                answer = await techspec.non_device(request, snapshot.inventory)
            if answer is None:
                answer = answer_non_device(
                    request.srv.variant,
                    request.body,
                    request.facts,
                    snapshot.inventory,
                    tables=None if techspec is None else techspec.tables,
                )
            # Signed with the other answers of the round (gateway/edge/stage_batch.py).
            return await self._signing.run(
                self._answers.response, request, answer.code, answer.content
            )
        if mode is AnswerMode.TRANSFORM and techspec is not None:
            refused = techspec.commissioning(request, snapshot.inventory)
            if refused is not None:  # no Pre-Command: a SignedPreCommand for it gets E12
                return self._answers.response(request, refused.code)
        try:
            command = device_command(request, snapshot.inventory, self._answers.now())
        except CommandError as exc:
            raise Acknowledge("dispatch", "E11", str(exc)) from None
        if mode is AnswerMode.TRANSFORM:
            if not await self._record_pre_command(request.header.request_id, command.gbcs):
                log_event(
                    log,
                    logging.WARNING,
                    "Pre-Command allowance gone",
                    "request_id=%(request_id)s: its CV 4 allowance is gone (per-originator "
                    "cap); its SignedPreCommand will get E12",
                    request_id=str(request.header.request_id),
                )
            return self._answers.pre_command(request, command.gbcs)
        if mode is AnswerMode.LOCAL_ONLY:
            return await self._local.issue(request, command)
        await self._submit_async(AsyncJob(request, command))
        if mode is AnswerMode.ASYNC_AND_LOCAL:
            return self._local.local_copy(request, command)
        return self._answers.acknowledgement(request, "I99")


async def send_to_device(transport: DeviceTransport, command: DeviceCommand) -> DeviceReply:
    """The device's reply; a full hub queue is answered as no response (E21), logged."""
    try:
        return await transport.send(command)
    except QueueFull as exc:
        log_event(
            log,
            logging.WARNING,
            "hub queue full",
            request_id=str(command.request_id),
            hub=exc.hub_id,
            priority_class=command.priority.name,
            scope=exc.scope,
            limit=exc.limit,
        )
        return DeviceReply(DeviceOutcome.NO_RESPONSE)
