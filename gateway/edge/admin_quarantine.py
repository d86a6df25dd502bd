"""Admin routes for quarantined requests: list, show, release, delete (with a reason).

    GET  /admin/quarantine?user_id=&srv=&min_age_seconds=&state=&after_ref=&limit=
    GET  /admin/quarantine/count?state=        how many are held (or in `state`)
    GET  /admin/quarantine/REF                 the request: header, signed XML, decisions
    POST /admin/quarantine/REF/release         body: none, or JSON {"reason": "..."}
    POST /admin/quarantine/REF/delete          body: none, or JSON {"reason": "..."}

A release or delete is audited with the admin client's address and the reason
(gateway/stores/quarantine.py writes both in the transaction that changes the state).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Final, get_args

import msgspec
from lxml import etree

from gateway.core.ingest import IngestError, decode_header, parse_xml
from gateway.edge import admin_params as check
from gateway.edge.admin_params import InvalidInput, parse_query
from gateway.edge.quarantine_ops import QuarantineOps
from gateway.stores.quarantine import (
    MAX_LIST_ROWS,
    NotHeld,
    QuarantinedRequest,
    QuarantineState,
    UnknownEventRef,
)
from gateway.stores.quarantine_audit import AuditEntry, Decision

log = logging.getLogger("duisgw.admin")

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
Answer = tuple[int, bytes, bytes]
MAX_MIN_AGE_SECONDS: Final = 100 * 366 * 86_400.0  # min_age_seconds: a century at most
MAX_REASON_CHARS: Final = 1000
MAX_DECISION_BODY_BYTES: Final = 8192
QUARANTINE_QUERY: Final = ("user_id", "srv", "min_age_seconds", "state", "after_ref", "limit")


class DecisionBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The optional body of an operator's decision (release, delete; a dead letter's
    retry or discard)."""

    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)] = ""


_DECISION = msgspec.json.Decoder(DecisionBody)


class HeaderView(msgspec.Struct, frozen=True):
    request_id: str
    command_variant: int
    service_reference: str
    service_reference_variant: str
    first_in_sequence: bool | None
    preceding_request_id: str | None


class QuarantineView(msgspec.Struct, frozen=True):
    event_ref: int
    user_id: str
    request_id: str
    srv: str
    duis_version: str
    breach: str
    held_at: dt.datetime
    state: str
    finished_at: dt.datetime | None = None
    request_xml: str | None = None
    header: HeaderView | None = None
    decisions: list[AuditEntry] | None = None


def _view(item: QuarantinedRequest) -> QuarantineView:
    return QuarantineView(
        event_ref=item.event_ref,
        user_id=item.user_id,
        request_id=item.request_id,
        srv=item.srv,
        duis_version=item.duis_version,
        breach=item.breach,
        held_at=item.held_at,
        state=item.state,
        finished_at=item.finished_at,
    )


def _detail(item: QuarantinedRequest, decisions: list[AuditEntry]) -> QuarantineView:
    return msgspec.structs.replace(
        _view(item),
        request_xml=item.raw_request.decode("utf-8", "replace"),
        header=_header(item.raw_request),
        decisions=decisions,
    )


def _header(raw: bytes) -> HeaderView | None:
    """The DUIS header of a stored request; None once its bytes are gone (deleted)."""
    if not raw:
        return None
    try:
        header = decode_header(parse_xml(raw))
    except (IngestError, etree.XMLSyntaxError):  # it passed ingest once: not expected
        log.warning("a quarantined request's header no longer decodes", exc_info=True)
        return None
    preceding = header.preceding_request_id
    return HeaderView(
        request_id=str(header.request_id),
        command_variant=header.command_variant,
        service_reference=header.service_reference,
        service_reference_variant=header.service_reference_variant,
        first_in_sequence=header.first_in_sequence,
        preceding_request_id=None if preceding is None else str(preceding),
    )


def decision_from(body: bytes, media_type: bytes, peer: str) -> Decision:
    """An operator's decision: who (the admin client's address) and the body's reason."""
    if not body.strip():
        return Decision(by=peer)
    if media_type != JSON:
        raise InvalidInput('the body of this decision is JSON: {"reason": "..."}')
    if len(body) > MAX_DECISION_BODY_BYTES:
        raise InvalidInput(f"the body is over {MAX_DECISION_BODY_BYTES} bytes")
    try:
        return Decision(by=peer, reason=_DECISION.decode(body).reason)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(f"bad body: {exc}") from None


def _json(status: int, value: object) -> Answer:
    return status, msgspec.json.encode(value), JSON


class QuarantineAdmin:
    def __init__(self, ops: QuarantineOps) -> None:
        self._ops = ops

    async def route(
        self, method: str, rest: list[str], query: str, body: bytes, media_type: bytes, peer: str
    ) -> Answer:
        """`rest`: the path after /admin/quarantine; `media_type`: the body's, lower-cased."""
        store = self._ops.screen.quarantine
        if not rest and method == "GET":
            return _json(200, [_view(i) for i in await self._list(query)])
        if rest == ["count"] and method == "GET":
            state = _state(parse_query(query, ("state",)).get("state", "held"))
            return _json(200, {"state": state, "count": await store.count(state)})
        if not rest:
            return 405, b"GET the list; POST .../REF/release or .../REF/delete\n", TEXT
        parse_query(query, ())
        ref = check.event_ref(rest[0])
        try:
            if len(rest) == 1 and method == "GET":
                item = await store.show(ref)
                if item is None:
                    return _json(404, {"error": "unknown ref"})
                return _json(200, _detail(item, await store.audit(ref)))
            if rest[1:] == ["release"] and method == "POST":
                decision = decision_from(body, media_type, peer)
                answered = await self._ops.release(ref, decision)
                return _json(200, {"released": ref, "answered": answered})
            if rest[1:] == ["delete"] and method == "POST":
                await self._ops.delete(ref, decision_from(body, media_type, peer))
                return _json(200, {"deleted": ref})
        except UnknownEventRef:
            return _json(404, {"error": f"no quarantined request {ref}"})
        except NotHeld as exc:
            return _json(409, {"error": str(exc)})
        return 404, b"unknown quarantine path\n", TEXT

    async def _list(self, query: str) -> list[QuarantinedRequest]:
        params = parse_query(query, QUARANTINE_QUERY)
        user, srv = params.get("user_id"), params.get("srv")
        min_age = params.get("min_age_seconds", "0")
        return await self._ops.screen.quarantine.list_requests(
            user_id=None if user is None else check.user_id(user),
            srv=None if srv is None else check.srv(srv),
            min_age_seconds=check.seconds(min_age, "min_age_seconds", MAX_MIN_AGE_SECONDS),
            state=_state(params.get("state", "held")),
            after_ref=check.integer(
                params.get("after_ref", "0"), "after_ref", 0, check.SQLITE_INT64_MAX
            ),
            limit=check.integer(params.get("limit", str(MAX_LIST_ROWS)), "limit", 1, MAX_LIST_ROWS),
        )


def _state(text: str) -> QuarantineState:
    states: tuple[QuarantineState, ...] = get_args(QuarantineState)
    for state in states:
        if state == text:
            return state
    raise InvalidInput(f"state must be one of {', '.join(states)}, not {text[:40]!r}")
