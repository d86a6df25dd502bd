"""The values that pass between pipeline stages, how a stage stops, and the answer.

A stage (gateway/core/stages.py) returns the value the next one takes, or raises a
`Stop`: a `Refusal` (HTTP 4xx/5xx with a reason, before a DUIS answer can be built
or when we cannot count the request) or an `Acknowledge` (a DUIS acknowledgement
with a response code: an E-code once the signature proves who is asking, I99 when
a threshold holds the request). The runner renders both in one place
(gateway/core/answers.py), as an `Outcome`.
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec
from lxml import etree

from gateway.core.ingest import RequestHeader
from gateway.core.snapshot import Snapshot
from gateway.core.versions import VersionRoute
from mmc.catalogue import Endpoint, Srv
from mmc.codec import BodyFacts

# The stages that refuse with HTTP (the label of duisgw_refusals_total).
RefusingStage = Literal[
    "ingest",
    "version",
    "schema",
    "signature",
    "certificate",
    "srv",
    "body",
    "tls",
    "thresholds",
    "jobs",  # the jobs journal could not store an accepted request (503)
    "store",  # a store the decision needs (replay, quarantine, local commands) failed (503)
]
# The stages that answer with a DUIS acknowledgement and stop.
AcknowledgingStage = Literal["replay", "access", "pre_command", "thresholds", "dispatch"]


class OutcomeKind(enum.StrEnum):
    REFUSAL = "refusal"  # HTTP 4xx/5xx, text: no DUIS answer
    ACKNOWLEDGEMENT = "acknowledgement"  # unsigned sr:Acknowledgement (I99 or an E-code)
    RESPONSE = "response"  # a signed Service Response: the synchronous answer
    # CV 3/7: a signed I99 carrying the command for local delivery; the Service Response
    # follows from the life cycle (so a released one is delivered under its own id).
    LOCAL_COPY = "local_copy"


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What goes back on the HTTP exchange, plus the facts the log and metrics need."""

    kind: OutcomeKind
    status: int
    body: bytes
    content_type: bytes = b"application/xml"
    code: str = ""  # DUIS response code, or the refusal reason
    version: str = ""
    srv: str = ""


class Stop(Exception):
    """A stage ends the request here; the runner renders the answer."""


class Refusal(Stop):
    """A request refused before a DUIS response can be built: HTTP 4xx with a reason."""

    def __init__(
        self,
        status: int,
        stage: RefusingStage,
        reason: str,
        detail: str,
        *,
        serial: int | None = None,
    ) -> None:
        super().__init__(f"{stage}/{reason}: {detail}")
        self.status = status
        self.stage: RefusingStage = stage
        self.reason = reason
        self.detail = detail
        self.request_id: str | None = None  # when the header could be read
        self.serial = serial  # the signing certificate's serial, when the signature named one


class Acknowledge(Stop):
    """Answer now with a DUIS acknowledgement carrying `code` (logged with `reason`)."""

    def __init__(self, stage: AcknowledgingStage, code: str, reason: str) -> None:
        super().__init__(f"{stage}/{code}: {reason}")
        self.stage: AcknowledgingStage = stage
        self.code = code
        self.reason = reason


class Verified(msgspec.Struct, frozen=True):
    """A request whose signature, certificate and SRV have been checked."""

    header: RequestHeader
    route: VersionRoute
    srv: Srv
    facts: BodyFacts
    raw: bytes
    body: etree._Element  # the sr:Body child, signature removed from its tree


class Admitted(msgspec.Struct, frozen=True):
    """A verified request on its way through the admission stages."""

    request: Verified
    snapshot: Snapshot  # taken once, when the request arrived: one view of trust and estate
    endpoint: Endpoint
    speaks_for: frozenset[str] | None  # User IDs its mutual-TLS identity may send for
    pre_command: bytes | None = None  # CV 5/6/7: the Pre-Command issued for its CV 4
