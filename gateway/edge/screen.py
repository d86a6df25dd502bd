"""The thresholds stage: count the request per User ID, hold it if a threshold says so.

A held request is stored durably (gateway/stores/quarantine.py) before anyone is
told; then the User gets a signed DCC Alert AD1 with QuarantinedRequest, valid
for the request's DUIS version, and the HTTP exchange gets an I99: the request
was received and is held; its fate follows when the User (through the DCC)
releases or deletes it. A warning only notifies (log and metric); the request
goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.core.answers import Answers
from gateway.core.log_fields import log_event
from gateway.core.outcome import Acknowledge, Admitted, Refusal, Verified
from gateway.edge.metrics import Metrics
from gateway.stores.quarantine import QuarantineItem, QuarantineStore
from gateway.stores.threshold_memory import MemoryThresholdStore
from gateway.stores.threshold_redis import ThresholdStoreUnavailable
from gateway.stores.threshold_state import CounterStore
from mmc import responses
from thresholds.engine import Action, Decision

log = logging.getLogger("duisgw.thresholds")

# (User ID, message id, signed document) -> returns once the alert is durably queued.
Notify = Callable[[str, str, bytes], Awaitable[None]]


class ThresholdScreen:
    def __init__(
        self,
        answers: Answers,
        metrics: Metrics,
        counters: CounterStore,
        quarantine: QuarantineStore,
        notify: Notify,
        *,
        fail_open: bool = False,
    ) -> None:
        self._answers = answers
        self._metrics = metrics
        self.counters = counters
        self.quarantine = quarantine
        self._notify = notify
        self._fail_open = fail_open

    async def screen(self, admitted: Admitted) -> Admitted:
        """The thresholds stage: on, or `Acknowledge` (I99) once the request is held;
        `Refusal` (503) when the shared store cannot count it and we fail closed."""
        request = admitted.request
        user_id = request.header.request_id.originator
        decision = await self._decide(user_id, request)
        if decision.action is Action.WARN:
            self._warn(user_id, request, decision)
        elif decision.action is not Action.ALLOW:
            await self._hold(user_id, request, decision)
        return admitted

    async def _decide(self, user_id: str, request: Verified) -> Decision:
        now = self._answers.now().timestamp()  # wall clock: processes share buckets
        srv, attributes = request.srv.variant, request.facts.attributes
        store = self.counters
        if isinstance(store, MemoryThresholdStore):
            return store.check_and_count(user_id, srv, now, attributes)
        decision = store.check_and_count_nowait(user_id, srv, now, attributes)
        if decision is not None:
            return decision
        try:
            return await store.check_and_count(user_id, srv, now, attributes)
        except ThresholdStoreUnavailable as exc:
            if self._fail_open:
                log.error("thresholds store unavailable, letting request by: %s", exc)
                return Decision(Action.ALLOW)
            raise Refusal(
                503,
                "thresholds",
                "store_unavailable",
                "anomaly detection cannot count this request now; retry later",
            ) from None

    def _warn(self, user_id: str, request: Verified, decision: Decision) -> None:
        for hit in decision.warnings:
            if hit.crossed:
                self._metrics.threshold_warnings.inc()
                log_event(
                    log,
                    logging.WARNING,
                    "User Warning Threshold crossed",
                    "User Warning Threshold crossed user_id=%(user_id)s srv=%(srv)s "
                    "count=%(count)d limit=%(limit)d window=%(window_seconds)ds",
                    user_id=user_id,
                    srv=request.srv.variant,
                    count=hit.count,
                    limit=hit.rule.limit,
                    window_seconds=hit.rule.window_seconds,
                )

    async def _hold(self, user_id: str, request: Verified, decision: Decision) -> None:
        assert decision.breach is not None
        header = request.header
        event_ref = await self.quarantine.hold(
            QuarantineItem(
                user_id=user_id,
                request_id=str(header.request_id),
                srv=request.srv.variant,
                duis_version=request.route.version,
                breach=decision.breach,
                held_at=self._answers.now(),
                raw_request=request.raw,
            )
        )
        self._metrics.quarantined.labels(decision.breach).inc()
        log_event(
            log,
            logging.WARNING,
            "quarantined",
            request_id=str(header.request_id),
            breach=decision.breach,
            ref=event_ref,
        )
        content = responses.quarantined_request(decision.breach, header.request_id, event_ref)
        alert = self._answers.alert(request.route.catalogue, "AD1", content, header.request_id)
        await self._notify(user_id, f"{header.request_id}:AD1:{event_ref}", alert)
        # Received and held: its fate follows when the User releases or deletes it.
        raise Acknowledge("thresholds", "I99", f"quarantined ref={event_ref}")
