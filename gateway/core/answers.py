"""Every answer the gateway gives, built in one place (sans-IO).

- `render_refusal`: the HTTP 4xx/5xx text for a `Refusal` (no DUIS document: who is asking
  is not proven, or the request cannot be counted now);
- `acknowledgement`: the unsigned sr:Acknowledgement (I99, or an E-code);
- `response`: a Service Response signed with the DCC's key (the synchronous answers:
  CV 2/6 commands for local delivery, CV 4 Pre-Commands, CV 8 and other non-device
  answers), and the same documents for delivery later (`device_response`,
  `response_document`); `local_copy`: the signed I99 a CV 3/7 gets with its command;
- `alert`: a signed DCC Alert (the AD1 that names a quarantined request);
- `device_alert`: a signed Device Alert (a device's GBCS alert, for its User).

A code a version lacks is never sent under it: `mmc.responses` writes the closest
code the version has, and the outcome carries that code too, so the metric label
and the document always agree.
"""

from __future__ import annotations

import datetime as dt

from gateway.core.clock import Clock
from gateway.core.device import OUTCOME_CODES, DeviceReply
from gateway.core.outcome import Outcome, OutcomeKind, Refusal, Verified
from gateway.core.signing import ResponseSigner
from mmc import responses
from mmc.catalogue import Catalogue, Srv
from mmc.identifiers import RequestId

TEXT = b"text/plain; charset=utf-8"


def render_refusal(refused: Refusal) -> Outcome:
    text = f"{refused.stage}: {refused.reason}: {refused.detail}\n".encode()
    return Outcome(
        kind=OutcomeKind.REFUSAL,
        status=refused.status,
        body=text,
        content_type=TEXT,
        code=refused.reason,
    )


class Answers:
    """Builds acknowledgements and signed documents with the injected clock and key."""

    def __init__(self, clock: Clock, signer: ResponseSigner) -> None:
        self._clock = clock
        self._signer = signer

    def now(self) -> dt.datetime:
        return self._clock.now()

    def acknowledgement(self, request: Verified, code: str) -> Outcome:
        catalogue = request.route.catalogue
        body = responses.acknowledgement(
            catalogue,
            request.header.request_id,
            code,
            request.srv.reference,
            request.srv.variant,
            self._clock.now(),
        )
        return self._outcome(OutcomeKind.ACKNOWLEDGEMENT, request, code, body)

    def response(self, request: Verified, code: str, content: str = "") -> Outcome:
        """The signed Service Response on the HTTP exchange (a synchronous answer)."""
        document = self.response_document(
            request.route.catalogue, request.header.request_id, request.srv, code, content
        )
        return self._outcome(OutcomeKind.RESPONSE, request, code, document)

    def device_response(self, request: Verified, reply: DeviceReply) -> Outcome:
        content = responses.gbcs_payload(reply.gbcs) if reply.gbcs is not None else ""
        return self.response(request, OUTCOME_CODES[reply.outcome], content)

    def local_command(self, request: Verified, gbcs: bytes) -> Outcome:
        """A CV 2/6's answer: the command for local delivery, in a signed I0."""
        return self.response(request, "I0", responses.local_command(gbcs))

    def local_copy(self, request: Verified, gbcs: bytes) -> Outcome:
        """A CV 3/7's answer: I99 (the Service Response follows) with the local copy, signed:
        it carries a command the User delivers."""
        document = self.response_document(
            request.route.catalogue,
            request.header.request_id,
            request.srv,
            "I99",
            responses.local_command(gbcs),
        )
        return self._outcome(OutcomeKind.LOCAL_COPY, request, "I99", document)

    def pre_command(self, request: Verified, gbcs: bytes) -> Outcome:
        """A CV 4's answer: the Pre-Command for the User to sign, in a signed I0."""
        gbcs_version = request.route.catalogue.gbcs_version or "4.0"
        return self.response(request, "I0", responses.pre_command(gbcs_version, gbcs))

    def response_document(
        self, catalogue: Catalogue, request_id: RequestId, srv: Srv, code: str, content: str = ""
    ) -> bytes:
        """A signed Service Response for `request_id` (to deliver, or to answer with)."""
        document = responses.service_response(
            catalogue,
            request_id,
            code,
            srv.reference,
            srv.variant,
            self._clock.now(),
            content=content,
        )
        return self._signer.sign(document)

    def alert(
        self, catalogue: Catalogue, alert_code: str, content: str, request_id: RequestId
    ) -> bytes:
        """A signed DCC Alert about `request_id`."""
        document = responses.dcc_alert(
            catalogue, alert_code, content, self._clock.now(), request_id=request_id
        )
        return self._signer.sign(document)

    def device_alert(
        self, catalogue: Catalogue, alert_code: str, gbcs: bytes, response_id: str
    ) -> bytes:
        """A signed Device Alert (DeviceAlertMessage) carrying the device's alert as sent."""
        document = responses.device_alert(
            catalogue, alert_code, gbcs, self._clock.now(), response_id=response_id
        )
        return self._signer.sign(document)

    def _outcome(self, kind: OutcomeKind, request: Verified, code: str, body: bytes) -> Outcome:
        return Outcome(
            kind=kind,
            status=200,
            body=body,
            code=responses.response_code(request.route.catalogue, code),
            version=request.route.version,
            srv=request.srv.variant,
        )
