"""What `duisgw send` does, as functions: prepare, sign and post a DUIS request.

A User's integration engineer points this at a template (an RTDS request, say):
any placeholder signature is replaced, the RequestID gets a fresh counter, the
document is signed with the originator's key under the request version's rule
(role certificate for 5.0, User XML-signing OU 87 from 5.1), and it is posted
to the endpoint its CommandVariant belongs on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.core.certstore import OrgCertificate
from gateway.core.ingest import SIGNATURE_TAG, SR_NS, decode_header, parse_xml
from gateway.core.signing import sign_document
from gateway.core.versions import normalise_version
from gateway.stores.certfiles import SigningKeyNotFoundError, find_signing_key
from mmc.catalogue import USER_XML_SIGNING_ROLE_CODE, UnknownVersion, load_catalogue
from mmc.identifiers import RequestId, parse_request_id

ROLE_CERTIFICATE_CODES = ("02", "03", "7F", "08", "04")


class ClientError(Exception):
    """The file cannot be prepared or signed; the message says why."""


def fresh_counter() -> int:
    """Microseconds since the epoch: increases across runs without any saved state."""
    return time.time_ns() // 1000


def prepare(
    xml: bytes, *, counter: int | None, originator: str | None = None
) -> tuple[etree._Element, RequestId]:
    """Parse the template, drop any signature, rewrite the RequestID counter/originator."""
    root = parse_xml(xml)
    for signature in root.findall(SIGNATURE_TAG):
        root.remove(signature)
    element = root.find(f"{{{SR_NS}}}Header/{{{SR_NS}}}RequestID")
    if element is None or element.text is None:
        raise ClientError("the document has no sr:Header/sr:RequestID")
    request_id = parse_request_id(element.text.strip())
    request_id = RequestId(
        originator or request_id.originator,
        request_id.target,
        request_id.counter if counter is None else counter,
    )
    element.text = str(request_id)
    return root, request_id


def signing_key(
    key_dirs: Sequence[Path], eui64: str, version: str
) -> tuple[OrgCertificate, ec.EllipticCurvePrivateKey]:
    """The key the version's rule wants for this User: OU 87 from 5.1, a role key for 5.0."""
    normal = normalise_version(version) or version
    try:
        allowed = load_catalogue(normal).signer_role_codes
    except UnknownVersion:
        allowed = frozenset({USER_XML_SIGNING_ROLE_CODE})
    candidates = [USER_XML_SIGNING_ROLE_CODE, *list(ROLE_CERTIFICATE_CODES)]
    for role in [r for r in candidates if r in allowed] or candidates:
        try:
            return find_signing_key(key_dirs, eui64, role)
        except SigningKeyNotFoundError:
            continue
    dirs = ", ".join(str(d) for d in key_dirs)
    raise ClientError(f"no signing key for {eui64} under DUIS {version} in {dirs}")


def sign_request(
    xml: bytes,
    key_dirs: Sequence[Path],
    *,
    counter: int | None,
    as_user: str | None = None,
) -> tuple[bytes, str]:
    """The signed request and the endpoint path it belongs on."""
    root, request_id = prepare(xml, counter=counter, originator=as_user)
    header = decode_header(root)
    cert, key = signing_key(key_dirs, request_id.originator, header.schema_version)
    signed = sign_document(root, key, cert.certificate.issuer.rfc4514_string(), cert.serial)
    return signed, endpoint_path(
        header.schema_version, header.service_reference_variant, header.command_variant
    )


def endpoint_path(version: str, variant: str, command_variant: int) -> str:
    try:
        srv = load_catalogue(normalise_version(version) or version).srvs.get(variant)
    except UnknownVersion:
        srv = load_catalogue("5.4").srvs.get(variant)
    letter = srv.endpoint_for(command_variant).value if srv is not None else "S"
    return f"/api/v1/service{letter}"


def post(url: str, body: bytes, timeout_seconds: float = 30.0) -> httpx.Response:
    return httpx.post(
        url, content=body, headers={"content-type": "application/xml"}, timeout=timeout_seconds
    )
