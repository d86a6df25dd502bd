"""The request pipeline's runner: the table's stages in order, for one request.

The table, its order and its one convention are gateway/core/stages.py: a stage
returns the value the next takes, or raises a `Stop`. Here the checks run, then
each admission stage (`ADMISSION`, with the I/O it needs: the replay file every
worker shares, the threshold counters), then dispatch; every stop is logged,
counted and rendered in this one place. "The peer sent something wrong" becomes an
HTTP 4xx with a reason (malformed, unsigned, unknown version) or a DUIS error
acknowledgement (E-codes, once the signature proves who is asking); "we broke" is
the server's 500 with a traceback (gateway/edge/server.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import Counter

from gateway.core.access import DccOriginated
from gateway.core.answers import Answers, render_refusal
from gateway.core.clock import Clock
from gateway.core.commands import check_signed_pre_command
from gateway.core.log_fields import log_event
from gateway.core.outcome import Acknowledge, Admitted, Outcome, Refusal, Verified
from gateway.core.snapshot import Snapshot, SnapshotHolder
from gateway.core.stages import (
    ADMISSION,
    RequestChecks,
    Stage,
    check_access,
    check_replay,
    check_tls_identity,
)
from gateway.edge.dispatch import Dispatcher
from gateway.edge.metrics import Metrics
from gateway.edge.screen import ThresholdScreen
from gateway.edge.stage_batch import StageBatch
from gateway.stores.local_commands import LocalCommandStoreError
from gateway.stores.quarantine import QuarantineStoreError
from gateway.stores.replay import ReplayStore, ReplayStoreError
from mmc.catalogue import SIGNED_PRE_COMMAND_VARIANTS, Endpoint
from mmc.identifiers import Eui64

# A store failing under a request (SQLite I/O, Redis down or not confirming): 503, never
# the connection's crash boundary.
STORE_FAILURES = (ReplayStoreError, QuarantineStoreError, LocalCommandStoreError)

log = logging.getLogger("duisgw.pipeline")

# Told about a request in a version not served (gateway/core/version_mismatch.py).
VersionMismatchAlert = Callable[[bytes], Awaitable[None]]
AdmissionStage = Callable[[Admitted], Awaitable[Admitted]]


class RequestPipeline:
    """Runs the stages in order for one request and returns what goes back to the User."""

    def __init__(
        self,
        checks: RequestChecks,
        snapshots: SnapshotHolder,
        answers: Answers,
        clock: Clock,
        metrics: Metrics,
        dcc_eui64: Eui64,
        replay: ReplayStore,
        dispatcher: Dispatcher,
        screen: ThresholdScreen | None = None,
        *,
        version_mismatch_alert: VersionMismatchAlert | None = None,
        dcc_originated: DccOriginated | None = None,
    ) -> None:
        self._checks = checks
        self._snapshots = snapshots
        self._answers = answers
        self._clock = clock
        self._metrics = metrics
        self._dcc_eui64 = dcc_eui64
        self._replay = replay
        self._dispatcher = dispatcher
        self._version_mismatch_alert = version_mismatch_alert
        self._dcc_originated = dcc_originated
        self._requests: dict[tuple[str, str, str], Counter] = {}
        self._checks_cpu = metrics.checks_cpu
        self._checks_batch = StageBatch()
        stages: Mapping[Stage, AdmissionStage] = {
            Stage.TLS: self._tls,
            Stage.REPLAY: self._replay_stage,
            Stage.ACCESS: self._access,
            Stage.PRE_COMMAND: self._pre_command,
            Stage.THRESHOLDS: screen.screen if screen is not None else _proceed,
        }
        self._admission = tuple(stages[stage] for stage in ADMISSION)  # the table's order

    async def handle(
        self, endpoint: Endpoint, raw: bytes, speaks_for: frozenset[str] | None = None
    ) -> Outcome:
        """`speaks_for`: the User IDs the mutual-TLS identity may send for (None: no TLS)."""
        snapshot = self._snapshots.current  # one view of trust and estate per request
        admitted: Admitted | None = None
        try:
            # With the checks of every request that arrived in the same round, back to
            # back (gateway/edge/stage_batch.py).
            request = await self._checks_batch.run(self._checked, raw, snapshot)
            admitted = Admitted(
                request=request, snapshot=snapshot, endpoint=endpoint, speaks_for=speaks_for
            )
            for stage in self._admission:
                admitted = await stage(admitted)
            outcome = await self._dispatcher.dispatch(admitted.request, admitted.snapshot)
        except Refusal as refusal:
            return await self._refused(refusal, raw)
        except STORE_FAILURES as exc:
            # Nothing was acknowledged: the User may send again (with a new counter if
            # this one was already spent). The store's own log says what failed.
            unavailable = Refusal(
                503, "store", "store_unavailable", f"{type(exc).__name__}: {exc}; retry later"
            )
            return await self._refused(unavailable, raw)
        except Acknowledge as stop:
            assert admitted is not None  # only the admission stages and dispatch acknowledge
            outcome = self._acknowledged(admitted, stop)
        self._count(outcome)
        return outcome

    def _checked(self, raw: bytes, snapshot: Snapshot) -> Verified:
        started = time.thread_time()  # a system call (~0.6 µs here): two per request
        try:
            return self._checks.verify(raw, snapshot.certstore)
        finally:
            self._checks_cpu.observe(time.thread_time() - started)

    def _count(self, outcome: Outcome) -> None:
        # The counter's children, bound on first use: labels() costs more than inc().
        # Bounded as its labels are: versions served x SRVs x outcome codes.
        key = (outcome.version, outcome.srv, outcome.code)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self._metrics.requests.labels(*key)
        child.inc()

    async def _refused(self, refusal: Refusal, raw: bytes) -> Outcome:
        self._metrics.refusals.labels(refusal.stage, refusal.reason).inc()
        log_event(
            log,
            logging.INFO,
            "refused",
            "refused request_id=%(request_id)s stage=%(stage)s reason=%(reason)s detail=%(detail)s",
            request_id=refusal.request_id,
            stage=refusal.stage,
            reason=refusal.reason,
            detail=refusal.detail,
            serial=None if refusal.serial is None else str(refusal.serial),
        )
        if refusal.reason == "unsupported_version" and self._version_mismatch_alert:
            await self._version_mismatch_alert(raw)
        return render_refusal(refusal)

    def _acknowledged(self, admitted: Admitted, stop: Acknowledge) -> Outcome:
        request = admitted.request
        log_event(
            log,
            logging.INFO,
            "held" if stop.code == "I99" else "refused",
            request_id=str(request.header.request_id),
            version=request.route.version,
            srv=request.srv.variant,
            stage=stop.stage,
            code=stop.code,
            reason=stop.reason,
        )
        return self._answers.acknowledgement(request, stop.code)

    # -- the admission stages, in the table's order --------------------------------------

    async def _tls(self, admitted: Admitted) -> Admitted:
        return check_tls_identity(admitted)

    async def _replay_stage(self, admitted: Admitted) -> Admitted:
        header = admitted.request.header
        # Returns once the decision is committed to the replay file every worker shares:
        # the counter is spent, durably, before anything is acknowledged.
        admission = await self._replay.admit(header.request_id, header.command_variant)
        return check_replay(admitted, admission)

    async def _access(self, admitted: Admitted) -> Admitted:
        return check_access(admitted, self._clock.now(), self._dcc_eui64, self._dcc_originated)

    async def _pre_command(self, admitted: Admitted) -> Admitted:
        # Before thresholds: only a correlated SignedPreCommand is ever held, released
        # or journaled (dispatch sends it as signed).
        if admitted.request.header.command_variant in SIGNED_PRE_COMMAND_VARIANTS:
            check_signed_pre_command(
                admitted.request,
                admitted.pre_command,
                admitted.snapshot.certstore,
                self._clock.now(),
            )
        return admitted


async def _proceed(admitted: Admitted) -> Admitted:
    return admitted
