"""What happens to a quarantined request when the User decides, or its retention ends.

release: the stored request goes on through dispatch as if just accepted (no
second replay, access or threshold check; counted once, now). A synchronous
answer it would have had (a signed Service Response) goes to the User's Receive
Response URL instead; an acknowledgement (I99) says the answer follows from the
life cycle; a request dispatch refuses (E11) is answered with a signed Service
Response carrying that code, like a deleted one: never an unsigned acknowledgement.
The release is journaled: the row is `releasing` (this process its owner) from
before dispatch until the answer is durable (jobs journal or outbox), then
`released`. A process that stopped in between resumes its `releasing` rows at
start (`resume_releases`): an answer already stored is not made again, one that
is not is made now, and its message id (`<RequestID>:response`) is the one the
first attempt would have used, so the User gets one answer.
delete / expiry: the request is dropped and the User is told with a signed
Service Response for its RequestID carrying E1 ("failed authorisation": the
DCC did not authorise it to proceed). DUIS has no code of its own for this;
the choice is documented in the README.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from gateway.core.answers import Answers
from gateway.core.log_fields import log_event
from gateway.core.outcome import Acknowledge, Outcome, OutcomeKind, Refusal, Verified
from gateway.core.snapshot import Snapshot, SnapshotHolder
from gateway.core.stages import RequestChecks
from gateway.core.versions import VersionRegistry
from gateway.edge.lifecycle import Lifecycle, response_message_id
from gateway.edge.screen import ThresholdScreen
from gateway.stores.quarantine import QuarantinedRequest
from gateway.stores.quarantine_audit import Decision
from mmc.identifiers import parse_request_id

log = logging.getLogger("duisgw.quarantine")

DELETED_CODE = "E1"
EXPIRY_CHECK_INTERVAL_SECONDS = 60.0


class Dispatch(Protocol):
    """The dispatch stage (gateway/edge/dispatch.py `Dispatcher`)."""

    async def dispatch(self, request: Verified, snapshot: Snapshot) -> Outcome: ...


class QuarantineOps:
    def __init__(
        self,
        checks: RequestChecks,
        snapshots: SnapshotHolder,
        versions: VersionRegistry,
        answers: Answers,
        screen: ThresholdScreen,
        dispatcher: Dispatch,
        lifecycle: Lifecycle,
        retention_seconds: float,
        expiry_check_interval_seconds: float = EXPIRY_CHECK_INTERVAL_SECONDS,
        *,
        owner: int = 0,
    ) -> None:
        self._checks = checks
        self._snapshots = snapshots
        self._versions = versions
        self._answers = answers
        self.screen = screen
        self._dispatcher = dispatcher
        self._lifecycle = lifecycle
        self._retention = retention_seconds
        self._expiry_interval = expiry_check_interval_seconds
        self._owner = owner  # this process's worker index: whose releases it resumes

    async def release(self, ref: int, decision: Decision | None = None) -> str:
        """Release and process one held request; returns the DUIS code it was answered with."""
        item = await self.screen.quarantine.begin_release(ref, self._owner, decision)
        return await self._process(item, resumed=False)

    async def resume_releases(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Finish the releases this owner began before it stopped (run once at start)."""
        unfinished = await self.screen.quarantine.releasing(self._owner)
        task_status.started()
        for item in unfinished:
            try:
                code = await self._process(item, resumed=True)
            except Exception:  # we broke: the row stays `releasing` for the next start
                log_event(
                    log,
                    logging.ERROR,
                    "resuming a release failed",
                    "resuming the release of ref=%(ref)d failed",
                    exc_info=True,
                    ref=item.event_ref,
                )
                continue
            log_event(log, logging.INFO, "resumed release", ref=item.event_ref, answered=code)

    async def _process(self, item: QuarantinedRequest, *, resumed: bool) -> str:
        ref = item.event_ref
        snapshot = self._snapshots.current
        try:
            request = self._checks.verify(
                item.raw_request, snapshot.certstore, check_signature=False
            )
        except Refusal as refusal:  # e.g. its DUIS version has been retired since
            log_event(
                log,
                logging.ERROR,
                "released request unprocessable",
                "released ref=%(ref)d cannot be processed: %(reason)s",
                ref=ref,
                reason=refusal.detail,
            )
            return await self._finish_told(item, "E1")
        if resumed and await self._lifecycle.already_answered(request.header.request_id):
            await self.screen.quarantine.finish_release(ref)
            return "stored before the restart"
        self.screen.counters.commit_release(item.user_id, item.srv, self._answers.now().timestamp())
        try:
            outcome = await self._dispatcher.dispatch(request, snapshot)
        except Acknowledge as refused:  # no command could be built for it
            log_event(
                log,
                logging.INFO,
                "released request refused",
                "released ref=%(ref)d refused by dispatch: %(reason)s",
                ref=ref,
                code=refused.code,
                reason=refused.reason,
            )
            return await self._finish_told(item, refused.code)
        if outcome.kind is OutcomeKind.RESPONSE:  # synchronous: the HTTP exchange is long gone
            await self._lifecycle.deliver(
                item.user_id, response_message_id(item.request_id), outcome.body, "response"
            )
        elif outcome.kind is OutcomeKind.LOCAL_COPY:  # its Service Response is the job's
            await self._lifecycle.deliver(
                item.user_id, f"{item.request_id}:local-copy", outcome.body, "response"
            )
        await self.screen.quarantine.finish_release(ref)
        log_event(
            log,
            logging.INFO,
            "released",
            ref=ref,
            request_id=item.request_id,
            answered=outcome.code,
        )
        return outcome.code

    async def _finish_told(self, item: QuarantinedRequest, code: str) -> str:
        await self._tell(item, code)
        await self.screen.quarantine.finish_release(item.event_ref)
        return code

    async def delete(self, ref: int, decision: Decision | None = None) -> None:
        item = await self.screen.quarantine.delete(ref, decision)
        await self._tell(item, DELETED_CODE)
        log_event(log, logging.INFO, "deleted", ref=ref, request_id=item.request_id)

    async def run_expiry(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            for item in await self.screen.quarantine.expire(self._retention):
                log_event(
                    log, logging.INFO, "expired", ref=item.event_ref, request_id=item.request_id
                )
                await self._tell(item, DELETED_CODE)
            await trio.sleep(self._expiry_interval)

    async def _tell(self, item: QuarantinedRequest, code: str) -> None:
        route = self._versions.route(item.duis_version, self._answers.now())
        if route is None:
            log_event(
                log,
                logging.ERROR,
                "User not told",
                "cannot tell user_id=%(user_id)s about ref=%(ref)d: version %(version)s no "
                "longer served",
                user_id=item.user_id,
                ref=item.event_ref,
                version=item.duis_version,
            )
            return
        catalogue = route.catalogue
        document = self._answers.response_document(
            catalogue, parse_request_id(item.request_id), catalogue.srvs[item.srv], code
        )
        await self._lifecycle.deliver(
            item.user_id, f"{item.request_id}:quarantine:{item.event_ref}", document, "response"
        )
