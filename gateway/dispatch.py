"""Dispatch an accepted request by its CommandVariant and answer it.

    CV 8        DCC-only: answered here from the inventory (signed, synchronous)
    CV 4        transform: the Pre-Command goes back in a signed I0 (serviceT)
    CV 2, 6     synchronous: the device's answer on the same exchange (signed)
    CV 1,3,5,7  asynchronous: I99 now; the Service Response follows via the outbox

CV 5/6/7 carry a SignedPreCommand: `check_signed_pre_command` correlates it with
the Pre-Command this gateway issued for the same RequestID, which the replay store
hands over as it spends the CV 4's allowance. The pipeline calls it before the
thresholds stage, so dispatch (now, after a quarantine release, or for a journaled
job after a restart) only ever sends a SignedPreCommand that correlated. The
Pre-Command a CV 4 is answered with is recorded in that store first (durable, shared
by every worker) through `RecordPreCommand`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable

import trio
from lxml import etree

from gateway.dcc_services import answer_non_device
from gateway.log_fields import log_event
from gateway.outcome import Outcome, Verified
from gateway.priority import QueueFull
from gateway.state import GatewayState
from gateway.transport import (
    OUTCOME_CODES,
    DeviceCommand,
    DeviceOutcome,
    DeviceReply,
    DeviceTransport,
    Priority,
)
from mmc import responses
from mmc.commands import CommandError, CommandFacts, DeviceType, build_command
from mmc.identifiers import RequestId
from parse_correlate.correlate import CorrelationError
from parse_correlate.correlate import Reason as CorrelationReason

log = logging.getLogger("duisgw.dispatch")

SYNC_DEVICE_VARIANTS = frozenset({2, 6})
ASYNC_VARIANTS = frozenset({1, 3, 5, 7})
SIGNED_PRE_COMMAND_VARIANTS = frozenset({5, 6, 7})
SYNC_DEVICE_TIMEOUT_SECONDS = 30.0
PREPAYMENT_SRVS = frozenset({"2.1", "2.2", "2.3", "2.5"})
# SMKI role codes of User role certificates that may sign a Pre-Command (not 87/89).
ROLE_SIGNING_CODES = ("02", "03", "04", "08", "7F")

# Hands an accepted asynchronous job to the life-cycle worker; returns once it is durable.
AsyncSubmit = Callable[["AsyncJob"], Awaitable[None]]
# Keeps the Pre-Command issued for a CV 4 with its allowance; durable on return, False
# when the allowance is gone (evicted by the per-originator cap).
RecordPreCommand = Callable[[RequestId, bytes], Awaitable[bool]]


class PreCommandMismatch(CommandError):
    """A SignedPreCommand that does not answer a Pre-Command we issued: E12."""


class AsyncJob:
    __slots__ = ("command", "request")

    def __init__(self, request: Verified, command: DeviceCommand) -> None:
        self.request = request
        self.command = command


class Dispatcher:
    def __init__(
        self,
        state: GatewayState,
        transport: DeviceTransport,
        record_pre_command: RecordPreCommand,
        submit_async: AsyncSubmit,
    ) -> None:
        self._state = state
        self._transport = transport
        self._record_pre_command = record_pre_command
        self._submit_async = submit_async

    async def dispatch(self, request: Verified) -> Outcome:
        cv = request.header.command_variant
        if request.srv.non_device:
            return self._non_device(request)
        try:
            command = self.command_for(request)
        except CommandError as exc:
            log_event(
                log,
                logging.INFO,
                "refused",
                request_id=str(request.header.request_id),
                code="E11",
                reason=str(exc),
            )
            return self.acknowledgement(request, "E11")
        if cv == 4:
            if not await self._record_pre_command(request.header.request_id, command.gbcs):
                log.warning(
                    "request_id=%s: its CV 4 allowance is gone (per-originator cap); "
                    "its SignedPreCommand will get E12",
                    request.header.request_id,
                )
            gbcs_version = request.route.catalogue.gbcs_version or "4.0"
            return self._signed(request, "I0", responses.pre_command(gbcs_version, command.gbcs))
        if cv in SYNC_DEVICE_VARIANTS:
            with trio.move_on_after(SYNC_DEVICE_TIMEOUT_SECONDS):
                return self.device_response(request, await send_to_device(self._transport, command))
            return self.device_response(request, DeviceReply(DeviceOutcome.NO_RESPONSE))
        await self._submit_async(AsyncJob(request, command))
        return self.acknowledgement(request, "I99")

    def _non_device(self, request: Verified) -> Outcome:
        answer = answer_non_device(
            request.srv.variant, request.body, request.facts, self._state.inventory
        )
        return self._signed(request, answer.code, answer.content)

    def check_signed_pre_command(self, request: Verified, issued: bytes | None) -> str | None:
        """E12 unless the CV 5/6/7's signed GBCS answers the Pre-Command `issued` for its
        RequestID and the User's role key signed it; None when it may go on.

        One attempt per Pre-Command: its allowance is spent whatever the verdict, so a
        User whose signed copy was refused starts again with a new CV 4 request.
        """
        try:
            signed = _signed_pre_command_payload(request.body)
            if issued is None:
                raise PreCommandMismatch("no Pre-Command was issued for this RequestID")
            request.route.handlers.correlate(issued, signed)
            self._verify_user_signature(request, signed)
        except CorrelationError as exc:
            reason = f"SignedPreCommand refused: {exc.reason}"
        except PreCommandMismatch as exc:
            reason = str(exc)
        else:
            return None
        log_event(
            log,
            logging.INFO,
            "refused",
            request_id=str(request.header.request_id),
            code="E12",
            reason=reason,
        )
        return "E12"

    def command_for(self, request: Verified) -> DeviceCommand:
        """The device command. A SignedPreCommand's GBCS is sent as the User signed it:
        `check_signed_pre_command` passed it before it was admitted (or journaled)."""
        header = request.header
        device = self._state.inventory.get(header.request_id.target)
        device_type = device.device_type if device is not None else "ESME"
        cv = header.command_variant
        if cv in SIGNED_PRE_COMMAND_VARIANTS:
            gbcs = _signed_pre_command_payload(request.body)
        else:
            built = build_command(
                request.srv.variant,
                header.request_id,
                CommandFacts(
                    device_type=_command_device_type(device_type),
                    execution_date_time=request.facts.execution_datetime,
                ),
                originator_counter=header.request_id.counter,
                now=self._state.clock.now(),
                critical=request.srv.critical,
            )
            gbcs = built.gbcs
        return DeviceCommand(
            request_id=header.request_id,
            srv_variant=request.srv.variant,
            device_id=header.request_id.target,
            device_type=device_type,
            hub_id=device.chf_id if device is not None else None,
            gbcs=gbcs,
            priority=priority_for(request),
            not_before=request.facts.execution_datetime,
        )

    def _verify_user_signature(self, request: Verified, signed: bytes) -> None:
        """The GBCS signature must verify with one of the originator's role digital-signing
        certificates (never the XML-signing one), valid now."""
        originator = request.header.request_id.originator
        now = self._state.clock.now()
        store = self._state.certstore
        for role in ROLE_SIGNING_CODES:
            for cert in store.find(originator, role, "digitalSignature"):
                if cert.not_before <= now <= cert.not_after and not store.is_revoked(cert):
                    try:
                        request.route.handlers.verify_pre_command_signature(signed, cert.public_key)
                    except CorrelationError:
                        continue
                    return
        raise CorrelationError(
            CorrelationReason.SIGNATURE_INVALID,
            f"no valid role signing certificate of {originator} verifies the Pre-Command",
        )

    def device_response(self, request: Verified, reply: DeviceReply) -> Outcome:
        code = OUTCOME_CODES[reply.outcome]
        content = responses.gbcs_payload(reply.gbcs) if reply.gbcs is not None else ""
        return self._signed(request, code, content)

    def acknowledgement(self, request: Verified, code: str) -> Outcome:
        body = responses.acknowledgement(
            request.route.catalogue,
            request.header.request_id,
            code,
            request.srv.reference,
            request.srv.variant,
            self._state.clock.now(),
        )
        return Outcome(200, body, code=code, version=request.route.version, srv=request.srv.variant)

    def _signed(self, request: Verified, code: str, content: str = "") -> Outcome:
        catalogue = request.route.catalogue
        document = responses.service_response(
            catalogue,
            request.header.request_id,
            code,
            request.srv.reference,
            request.srv.variant,
            self._state.clock.now(),
            content=content,
        )
        return Outcome(
            200,
            self._state.signer.sign(document),
            code=responses.response_code(catalogue, code),
            version=request.route.version,
            srv=request.srv.variant,
        )


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


def priority_for(request: Verified) -> Priority:
    """User requests are prepayment/critical, future-dated or on-demand; DCC_SCHEDULED
    is the class of schedule executions (bulk reads the DCC runs itself)."""
    srv = request.srv
    if srv.variant in PREPAYMENT_SRVS or srv.critical:
        return Priority.PREPAYMENT_AND_CRITICAL
    if request.facts.execution_datetime is not None:
        return Priority.FUTURE_DATED
    return Priority.ON_DEMAND


def _command_device_type(device_type: str) -> DeviceType:
    try:
        return DeviceType(device_type)
    except ValueError:
        return DeviceType.ESME


def _signed_pre_command_payload(body: etree._Element) -> bytes:
    for element in body.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname == "GBCSPayload":
            try:
                return base64.b64decode((element.text or "").strip(), validate=True)
            except ValueError:
                raise PreCommandMismatch("SignedPreCommand GBCSPayload is not base64") from None
    raise PreCommandMismatch("SignedPreCommand has no GBCSPayload")
