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

import datetime as dt
import logging

from gateway.core.answers import Answers
from gateway.core.certstore import CertificateError
from gateway.core.ingest import IngestError, RequestHeader, decode_header, parse_xml
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signature_profile import SignatureError
from gateway.core.snapshot import Snapshot
from gateway.core.versions import VersionRegistry
from mmc import responses

log = logging.getLogger("duisgw.version")


def authenticated_header(raw: bytes, snapshot: Snapshot, now: dt.datetime) -> RequestHeader | None:
    """The header of a request whose signature proves a registered originator, else None."""
    try:
        root = parse_xml(raw)
        header = decode_header(root)
        parts = parse_signature(root)
    except (IngestError, SignatureError):
        return None
    certstore = snapshot.certstore
    cert = certstore.lookup(parts.issuer_name, parts.serial)
    originator = header.request_id.originator
    if (
        cert is None
        or cert.eui64 != originator
        or cert.key_usage != "digitalSignature"
        or not cert.not_before <= now <= cert.not_after
        or certstore.is_revoked(cert)
        or snapshot.users.get(originator) is None
    ):
        return None
    try:
        verify_signature(root, parts, cert.public_key)
    except (SignatureError, CertificateError):
        return None
    return header


def mismatch_alert(
    header: RequestHeader, alert_code: str, versions: VersionRegistry, answers: Answers
) -> bytes | None:
    """The signed alert, under the newest served version; None if that version lacks the code."""
    now = answers.now()
    served = versions.served(now.date())
    if not served:
        return None
    route = versions.route(served[-1], now)
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
    return answers.alert(route.catalogue, alert_code, content, header.request_id)
