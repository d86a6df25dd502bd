"""A request in a DUIS version this gateway does not serve: tell the User, if we know who.

The HTTP answer is always the 400 `unsupported_version` naming the served
versions. When the request's signature proves its originator (the profile and
the signature check out with that User's certificate, valid now; no version's
signer rule can apply, since the version is unknown) and the User is
registered, the User also gets a signed DCC Alert with DUISVersionMismatch /
ServiceResponseVersionMismatch, built under the newest version served here,
naming the version the request used. DUIS publishes no DCCAlertCode for this
alert that we could verify, so the code comes from config
(`duis.version_mismatch_alert_code`) and the alert is off until it is set.
"""

from __future__ import annotations

import logging

from gateway.core.certstore import CertificateError
from gateway.core.ingest import IngestError, RequestHeader, decode_header, parse_xml
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signature_profile import SignatureError
from gateway.core.state import GatewayState
from mmc import responses

log = logging.getLogger("duisgw.version")


def authenticated_header(state: GatewayState, raw: bytes) -> RequestHeader | None:
    """The header of a request whose signature proves a registered originator, else None."""
    try:
        root = parse_xml(raw)
        header = decode_header(root)
        parts = parse_signature(root)
    except (IngestError, SignatureError):
        return None
    cert = state.certstore.lookup(parts.issuer_name, parts.serial)
    originator = header.request_id.originator
    now = state.clock.now()
    if (
        cert is None
        or cert.eui64 != originator
        or cert.key_usage != "digitalSignature"
        or not cert.not_before <= now <= cert.not_after
        or state.certstore.is_revoked(cert)
        or state.registry.get(originator) is None
    ):
        return None
    try:
        verify_signature(root, parts, cert.public_key)
    except (SignatureError, CertificateError):
        return None
    return header


def mismatch_alert(state: GatewayState, header: RequestHeader, alert_code: str) -> bytes | None:
    """The signed alert, under the newest served version; None if that version lacks the code."""
    served = state.versions.served(state.clock.now().date())
    if not served:
        return None
    route = state.versions.route(served[-1], state.clock.now())
    if route is None:
        return None
    codes = route.catalogue.value_sets.get("DCCAlertCode")
    if codes is not None and alert_code not in codes:
        log.error(
            "duis.version_mismatch_alert_code %s is not defined in DUIS %s",
            alert_code,
            route.version,
        )
        return None
    content = responses.version_mismatch(
        header.request_id,
        header.service_reference,
        header.service_reference_variant,
        header.schema_version,
        header.schema_version,
    )
    document = responses.dcc_alert(
        route.catalogue, alert_code, content, state.clock.now(), request_id=header.request_id
    )
    return state.signer.sign(document)
