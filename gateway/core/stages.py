"""The request pipeline as one table: every stage, in order, and how each may stop.

    stage        decides                                                    stops with
    ingest       hardened XML parse, envelope, header                       400
    version      schemaVersion selects the version's catalogue and P&C      400
    schema       the version's XSD (when duis.xsd_dir is set)               400
    signature    the XMLDSig profile; digest and ECDSA verify               403
    certificate  by issuer + serial; signer EUI-64, role, validity          403
    srv          the variant exists; ServiceReference and body match       400
    body         values whose sets differ between versions                  400
    tls          the mutual-TLS identity may send for the originator        403
    replay       the RequestID counter strictly increases (durable)         E1, E12
    access       the User, its role, the device, the endpoint, the CV       E-codes
    pre_command  CV 5/6/7: the SignedPreCommand answers our Pre-Command     E12
    thresholds   per User ID; a breach holds the request                    I99 (held), 503
    dispatch     by CommandVariant (gateway/core/commands.py)               the answer

One convention: a stage returns the value the next stage takes, or raises a `Stop`
(gateway/core/outcome.py): `Refusal` for HTTP, `Acknowledge` for a DUIS code. The
first seven stages need no I/O and run as one unit here (`RequestChecks.verify`),
because recovery and a quarantine release run them again on stored bytes; the
runner (gateway/edge/pipeline.py) walks `ADMISSION` after them, renders every stop
in one place (gateway/core/answers.py) and counts it.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from typing import Final

from cryptography import x509
from lxml import etree

from gateway.core.access import AccessRequest, DccOriginated, decide
from gateway.core.certstore import (
    CertificateError,
    CertStore,
    check_signing_certificate,
    signer_certificate,
)
from gateway.core.clock import Clock
from gateway.core.ingest import (
    SIGNATURE_TAG,
    IngestError,
    RequestHeader,
    SchemaSet,
    decode_header,
    parse_xml,
    request_version,
)
from gateway.core.outcome import Acknowledge, Admitted, Refusal, Verified
from gateway.core.replay_rules import Admission
from gateway.core.signature import detach_keeping_tail, parse_signature, verify_signature
from gateway.core.signature_profile import SignatureError
from gateway.core.versions import VersionRegistry, VersionRoute
from mmc.catalogue import (
    DCC_XML_SIGNING_ROLE_CODES,
    SIGNED_PRE_COMMAND_ELEMENT,
    SIGNED_PRE_COMMAND_VARIANTS,
)
from mmc.codec import BodyError, extract_body_facts
from mmc.identifiers import Eui64

log = logging.getLogger("duisgw.pipeline")


class Stage(enum.StrEnum):
    INGEST = "ingest"
    VERSION = "version"
    SCHEMA = "schema"
    SIGNATURE = "signature"
    CERTIFICATE = "certificate"
    SRV = "srv"
    BODY = "body"
    TLS = "tls"
    REPLAY = "replay"
    ACCESS = "access"
    PRE_COMMAND = "pre_command"
    THRESHOLDS = "thresholds"
    DISPATCH = "dispatch"


# Every stage in order (the order of the enum); the checks `RequestChecks.verify` runs;
# the admission stages the runner walks after them, each `Admitted -> Admitted`.
STAGES: Final = tuple(Stage)
CHECKS: Final = STAGES[: STAGES.index(Stage.TLS)]
ADMISSION: Final = STAGES[STAGES.index(Stage.TLS) : STAGES.index(Stage.DISPATCH)]


class RequestChecks:
    """The stages that need no I/O, over the versions served and the snapshot given.

    `dcc_originator`: the DCC's own EUI-64 when DCC-originated requests are accepted
    (gateway/core/access.py): a request from it must be signed with the DCC's
    XML-signing certificate (OU 89), whatever its version's User signer rule says.
    """

    def __init__(
        self,
        versions: VersionRegistry,
        schemas: SchemaSet | None,
        clock: Clock,
        *,
        dcc_originator: Eui64 | None = None,
    ):
        self._versions = versions
        self._schemas = schemas
        self._clock = clock
        self._dcc_originator = dcc_originator

    def verify(self, raw: bytes, certstore: CertStore, *, check_signature: bool = True) -> Verified:
        """ingest, version, schema, signature, certificate, srv, body; Refusal otherwise.

        `check_signature=False` is for bytes this gateway verified before and kept in
        a journal (recovery, quarantine release): the certificate may have expired since.
        """
        try:
            root = parse_xml(raw)
            version = request_version(root)
        except IngestError as exc:
            raise Refusal(400, "ingest", exc.reason, exc.detail) from None
        now = self._clock.now()
        route = self._route(version, now)
        if self._schemas is not None:
            # Before the header decode: the XSD's message is the most precise one.
            try:
                self._schemas.validate(route.version, root)
            except IngestError as exc:
                raise Refusal(400, "schema", exc.reason, exc.detail) from None
        try:
            header = decode_header(root)
        except IngestError as exc:
            raise Refusal(400, "ingest", exc.reason, exc.detail) from None
        if check_signature:
            signer_roles = route.catalogue.signer_role_codes
            if header.request_id.originator == self._dcc_originator:
                signer_roles = DCC_XML_SIGNING_ROLE_CODES
            try:
                _check_signature(certstore, now, signer_roles, header, root)
            except Refusal as refusal:
                refusal.request_id = str(header.request_id)
                raise
            for signature in root.findall(SIGNATURE_TAG):
                detach_keeping_tail(signature)
        return _srv_and_body(route, header, root, raw)

    def _route(self, version: str, now: dt.datetime) -> VersionRoute:
        route = self._versions.route(version, now)
        if route is None:
            served = ", ".join(self._versions.served(now.date()))
            raise Refusal(
                400,
                "version",
                "unsupported_version",
                f"DUIS version {version[:16]!r} is not served here (served: {served})",
            )
        return route


def _check_signature(
    store: CertStore,
    now: dt.datetime,
    signer_roles: frozenset[str],
    header: RequestHeader,
    root: etree._Element,
) -> None:
    try:
        parts = parse_signature(root)
    except SignatureError as exc:
        raise Refusal(403, "signature", exc.reason, exc.detail) from None
    try:
        cert = signer_certificate(store, parts.issuer_name, parts.serial, parts.certificate)
    except CertificateError as exc:
        serial = parts.serial if parts.serial is not None else _serial_of(parts.certificate)
        raise Refusal(403, "certificate", exc.reason, exc.detail, serial=serial) from None
    try:
        check_signing_certificate(
            cert,
            at=now,
            signer_eui64=header.request_id.originator,
            allowed_role_codes=signer_roles,
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


def _serial_of(der: bytes | None) -> int | None:
    """The serial an untrusted embedded certificate claims, for the refusal's log line."""
    if der is None:
        return None
    try:
        return x509.load_der_x509_certificate(der).serial_number
    except ValueError:
        return None


def _srv_and_body(
    route: VersionRoute, header: RequestHeader, root: etree._Element, raw: bytes
) -> Verified:
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


# -- the admission stages' decisions (the runner supplies what needs I/O) ----------------


def check_tls_identity(admitted: Admitted) -> Admitted:
    originator = admitted.request.header.request_id.originator
    if admitted.speaks_for is not None and originator not in admitted.speaks_for:
        raise Refusal(
            403,
            "tls",
            "tls_identity_mismatch",
            f"the TLS client may not send for User ID {originator}",
        )
    return admitted


def check_replay(admitted: Admitted, admission: Admission) -> Admitted:
    """The replay store's committed verdict: E1/E12, or on with the issued Pre-Command."""
    code = admission.verdict.code
    if code is not None:
        raise Acknowledge("replay", code, admission.verdict.value)
    if admission.pre_command is None:
        return admitted
    return Admitted(
        request=admitted.request,
        snapshot=admitted.snapshot,
        endpoint=admitted.endpoint,
        speaks_for=admitted.speaks_for,
        pre_command=admission.pre_command,
    )


def check_access(
    admitted: Admitted,
    now: dt.datetime,
    dcc_eui64: Eui64,
    dcc_originated: DccOriginated | None = None,
) -> Admitted:
    """Access control (gateway/core/access.py): the DUIS error code it gives, if any."""
    request, snapshot = admitted.request, admitted.snapshot
    header = request.header
    decision = decide(
        AccessRequest(
            request_id=header.request_id,
            command_variant=header.command_variant,
            srv_variant=request.srv.variant,
            body_device_ids=request.facts.device_ids,
            body_reference_ids=request.facts.reference_ids,
        ),
        request.srv,
        snapshot.users,
        snapshot.inventory,
        now,
        admitted.endpoint,
        dcc_eui64,
        dcc_originated,
    )
    if decision.accepted:
        return admitted
    assert decision.code is not None  # refused decisions carry their code
    raise Acknowledge("access", decision.code, decision.reason)
