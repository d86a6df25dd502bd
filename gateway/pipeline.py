"""The request pipeline: the ordered stages every DUIS request passes, in one place.

    parse -> envelope/header -> version route -> XSD -> signature + certificate
    -> SRV/body match -> replay -> access control -> SignedPreCommand correlation
    (CV 5/6/7) -> thresholds -> dispatch

Each stage either hands the request on or produces the answer. "The peer sent
something wrong" becomes an HTTP 4xx with a reason (malformed, unsigned,
unknown version) or a DUIS error acknowledgement (E-codes, once the signature
proves who is asking); "we broke" is the server's 500 with a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from lxml import etree

from gateway.access import AccessRequest, decide
from gateway.certstore import CertificateError, check_signing_certificate
from gateway.dispatch import Dispatcher
from gateway.ingest import (
    SIGNATURE_TAG,
    IngestError,
    RequestHeader,
    decode_header,
    parse_xml,
    request_version,
)
from gateway.log_fields import log_event
from gateway.outcome import Outcome, Refusal, Verified
from gateway.replay import ReplayStore
from gateway.screen import ThresholdScreen
from gateway.signature import (
    SignatureError,
    detach_keeping_tail,
    parse_signature,
    verify_signature,
)
from gateway.state import GatewayState
from gateway.versions import VersionRoute
from mmc import responses
from mmc.catalogue import SIGNED_PRE_COMMAND_ELEMENT, Endpoint
from mmc.codec import BodyError, extract_body_facts

log = logging.getLogger("duisgw.pipeline")

SIGNED_PRE_COMMAND_VARIANTS = frozenset({5, 6, 7})
# Told about a request in a version not served (gateway/version_mismatch.py).
VersionMismatchAlert = Callable[[bytes], Awaitable[None]]


def refusal_outcome(refusal: Refusal) -> Outcome:
    text = f"{refusal.stage}: {refusal.reason}: {refusal.detail}\n".encode()
    return Outcome(refusal.status, text, b"text/plain; charset=utf-8", refusal.reason)


def verify_request(
    state: GatewayState, endpoint: Endpoint, raw: bytes, *, check_signature: bool = True
) -> Verified:
    """Every check up to (not including) replay, access control and thresholds.

    Pure with respect to I/O: it reads the state's current snapshots only.
    `check_signature=False` is for bytes this gateway verified before and kept in
    a journal (recovery, quarantine release): the certificate may have expired since.
    """
    try:
        root = parse_xml(raw)
        version = request_version(root)
    except IngestError as exc:
        raise Refusal(400, "ingest", exc.reason, exc.detail) from None
    now = state.clock.now()
    route = state.versions.route(version, now)
    if route is None:
        served = ", ".join(state.versions.served(now.date()))
        raise Refusal(
            400,
            "version",
            "unsupported_version",
            f"DUIS version {version[:16]!r} is not served here (served: {served})",
        )
    if state.schemas is not None:
        # Before the header decode: the XSD's message is the most precise one.
        try:
            state.schemas.validate(route.version, root)
        except IngestError as exc:
            raise Refusal(400, "schema", exc.reason, exc.detail) from None
    try:
        header = decode_header(root)
    except IngestError as exc:
        raise Refusal(400, "ingest", exc.reason, exc.detail) from None
    if check_signature:
        try:
            _check_signature(state, route, header, root)
        except Refusal as refusal:
            refusal.request_id = str(header.request_id)
            raise
        for signature in root.findall(SIGNATURE_TAG):
            detach_keeping_tail(signature)
    srv = route.catalogue.srvs.get(header.service_reference_variant)
    if srv is None:
        variant = header.service_reference_variant[:20]
        raise Refusal(400, "srv", "unknown_srv", f"no SRV {variant!r} in DUIS {route.version}")
    expected_body = (
        SIGNED_PRE_COMMAND_ELEMENT
        if header.command_variant in SIGNED_PRE_COMMAND_VARIANTS
        else srv.body_element
    )
    if srv.reference != header.service_reference or header.body_element != expected_body:
        raise Refusal(
            400,
            "srv",
            "srv_body_mismatch",
            f"SRV {srv.variant} CV {header.command_variant} needs ServiceReference"
            f" {srv.reference} and body {expected_body}",
        )
    body = _body_element(root)
    try:
        catalogue = route.catalogue
        facts = extract_body_facts(body, catalogue.value_set_elements, catalogue.value_sets)
    except BodyError as exc:
        raise Refusal(400, "body", "bad_body_value", str(exc)) from None
    return Verified(header=header, route=route, srv=srv, facts=facts, raw=raw, body=body)


def _body_element(root: etree._Element) -> etree._Element:
    for child in root[1]:  # decode_header checked: Header, Body, then the Signature
        if isinstance(child.tag, str):
            return child
    raise AssertionError("decode_header checked the body")


def _check_signature(
    state: GatewayState, route: VersionRoute, header: RequestHeader, root: etree._Element
) -> None:
    store = state.certstore
    try:
        parts = parse_signature(root)
    except SignatureError as exc:
        raise Refusal(403, "signature", exc.reason, exc.detail) from None
    cert = store.lookup(parts.issuer_name, parts.serial)
    if cert is None:
        raise Refusal(
            403,
            "certificate",
            "unknown_certificate",
            f"no trusted certificate with issuer {parts.issuer_name[:80]!r} serial {parts.serial}",
            serial=parts.serial,
        )
    try:
        check_signing_certificate(
            cert,
            at=state.clock.now(),
            signer_eui64=header.request_id.originator,
            allowed_role_codes=route.catalogue.signer_role_codes,
            store=store,
        )
    except CertificateError as exc:
        detail = f"serial {cert.serial}: {exc.detail}"
        raise Refusal(403, "certificate", exc.reason, detail, serial=cert.serial) from None
    try:
        verify_signature(root, parts, cert.public_key)
    except SignatureError as exc:
        raise Refusal(
            403, "signature", exc.reason, f"serial {cert.serial}: {exc.detail}", serial=cert.serial
        ) from None


def access_decision(state: GatewayState, endpoint: Endpoint, request: Verified) -> str | None:
    """The DUIS error code access control gives, or None if the request may proceed."""
    header = request.header
    decision = decide(
        AccessRequest(
            request_id=header.request_id,
            command_variant=header.command_variant,
            srv_variant=request.srv.variant,
            body_device_ids=request.facts.device_ids,
        ),
        request.srv,
        state.registry,
        state.inventory,
        state.clock.now(),
        endpoint,
        state.dcc_eui64,
    )
    if decision.accepted:
        return None
    log_event(
        log,
        logging.INFO,
        "refused",
        request_id=str(header.request_id),
        version=request.route.version,
        srv=request.srv.variant,
        code=decision.code,
        reason=decision.reason,
    )
    return decision.code


def error_acknowledgement(state: GatewayState, request: Verified, code: str) -> Outcome:
    header = request.header
    catalogue = request.route.catalogue
    body = responses.acknowledgement(
        catalogue,
        header.request_id,
        code,
        request.srv.reference,
        request.srv.variant,
        state.clock.now(),
    )
    return Outcome(
        200,
        body,
        code=responses.response_code(catalogue, code),
        version=request.route.version,
        srv=request.srv.variant,
    )


class RequestPipeline:
    """Runs the stages in order for one request and returns what goes back to the User."""

    def __init__(
        self,
        state: GatewayState,
        replay: ReplayStore,
        dispatcher: Dispatcher,
        screen: ThresholdScreen | None = None,
        *,
        version_mismatch_alert: VersionMismatchAlert | None = None,
    ) -> None:
        self._state = state
        self._replay = replay
        self._dispatcher = dispatcher
        self._screen = screen
        self._version_mismatch_alert = version_mismatch_alert

    async def handle(
        self, endpoint: Endpoint, raw: bytes, speaks_for: frozenset[str] | None = None
    ) -> Outcome:
        """`speaks_for`: the User IDs the mutual-TLS identity may send for (None: no TLS)."""
        state = self._state
        try:
            request = verify_request(state, endpoint, raw)
            originator = request.header.request_id.originator
            if speaks_for is not None and originator not in speaks_for:
                raise Refusal(
                    403,
                    "tls",
                    "tls_identity_mismatch",
                    f"the TLS client may not send for User ID {originator}",
                )
        except Refusal as refusal:
            state.metrics.refusals.labels(refusal.stage, refusal.reason).inc()
            log_event(
                log,
                logging.INFO,
                "refused",
                "refused request_id=%(request_id)s stage=%(stage)s reason=%(reason)s "
                "detail=%(detail)s",
                request_id=refusal.request_id,
                stage=refusal.stage,
                reason=refusal.reason,
                detail=refusal.detail,
                serial=None if refusal.serial is None else str(refusal.serial),
            )
            if refusal.reason == "unsupported_version" and self._version_mismatch_alert:
                await self._version_mismatch_alert(raw)
            return refusal_outcome(refusal)
        header = request.header
        # Returns once the decision is committed to the replay file every worker shares:
        # the counter is spent, durably, before anything is acknowledged.
        admission = await self._replay.admit(header.request_id, header.command_variant)
        code = admission.verdict.code
        if code is None:
            code = access_decision(state, endpoint, request)
            if code is None and header.command_variant in SIGNED_PRE_COMMAND_VARIANTS:
                # Before thresholds: only a correlated SignedPreCommand is ever held,
                # released or journaled (dispatch sends it as signed).
                code = self._dispatcher.check_signed_pre_command(request, admission.pre_command)
        else:
            log_event(
                log,
                logging.INFO,
                "refused",
                request_id=str(header.request_id),
                code=code,
                reason=admission.verdict.value,
            )
        if code is not None:
            return self._count(error_acknowledgement(state, request, code))
        if self._screen is not None:
            try:
                held = await self._screen.screen(request)
            except Refusal as refusal:
                state.metrics.refusals.labels(refusal.stage, refusal.reason).inc()
                return refusal_outcome(refusal)
            if held is not None:
                return self._count(held)
        return self._count(await self._dispatcher.dispatch(request))

    def _count(self, outcome: Outcome) -> Outcome:
        self._state.metrics.requests.labels(outcome.version, outcome.srv, outcome.code).inc()
        return outcome
