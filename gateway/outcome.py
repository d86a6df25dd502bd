"""The values that pass between pipeline stages and back to the HTTP edge."""

from __future__ import annotations

from typing import Literal

import msgspec
from lxml import etree

from gateway.ingest import RequestHeader
from gateway.versions import VersionRoute
from mmc.catalogue import Srv
from mmc.codec import BodyFacts

Stage = Literal[
    "ingest", "version", "schema", "signature", "certificate", "srv", "body", "tls", "thresholds"
]


class Outcome(msgspec.Struct, frozen=True):
    """What goes back on the HTTP exchange, plus the facts the log and metrics need."""

    status: int
    body: bytes
    content_type: bytes = b"application/xml"
    code: str = ""  # DUIS response code, or the refusal reason
    version: str = ""
    srv: str = ""


class Refusal(Exception):
    """A request refused before a DUIS response can be built: HTTP 4xx with a reason."""

    def __init__(
        self, status: int, stage: Stage, reason: str, detail: str, *, serial: int | None = None
    ) -> None:
        super().__init__(f"{stage}/{reason}: {detail}")
        self.status = status
        self.stage = stage
        self.reason = reason
        self.detail = detail
        self.request_id: str | None = None  # when the header could be read
        self.serial = serial  # the signing certificate's serial, when the signature named one


class Verified(msgspec.Struct, frozen=True):
    """A request whose signature, certificate and SRV have been checked."""

    header: RequestHeader
    route: VersionRoute
    srv: Srv
    facts: BodyFacts
    raw: bytes
    body: etree._Element  # the sr:Body child, signature removed from its tree
