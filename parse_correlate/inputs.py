"""Reading what `duisgw pc` is given: files of GBCS in any of four forms, DUIS XML,
PEM keys and certificates. The errors say whose problem a failure is (the caller maps
BadInvocation to exit 2, BadInput to exit 1)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from mmc.identifiers import IdentifierError, RequestId, parse_request_id

# Hex doubles the largest GBCS message parse_message accepts (1 MiB); room for whitespace.
MAX_INPUT_BYTES = 4 << 20
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# Files come from anywhere: no DTD, no entity expansion, no network.
_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"


class BadInvocation(Exception):
    """The command line names something unusable (exit 2)."""


class BadInput(Exception):
    """A file's content is malformed (exit 1)."""


class GbcsInput(NamedTuple):
    gbcs: bytes
    form: str  # "hex", "base64", "binary" or "xml"
    document: etree._Element | None  # the DUIS document that carried it, if any


def read_file(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise BadInvocation(f"{what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise BadInput(f"{what} {path} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def read_gbcs(data: bytes, name: str) -> GbcsInput:
    """Find the GBCS message in a file's bytes, whichever of the four forms it takes.

    Order matters: hex before base64 (hex text is also base64 alphabet), both before raw.
    Raw GBCS starts with tag 0xDD or 0xDF, never '<' or a hex or base64 character, so
    no raw message is mistaken for another form."""
    if data.lstrip().removeprefix(b"\xef\xbb\xbf").startswith(b"<"):
        document = parse_xml(data, name)
        return GbcsInput(_payload_of(document, name), "xml", document)
    compact = b"".join(data.split())
    if not compact:
        raise BadInput(f"{name} is empty")
    if _HEX_DIGITS.issuperset(compact):
        if len(compact) % 2:
            raise BadInput(f"{name}: hex text has an odd number of digits")
        return GbcsInput(bytes.fromhex(compact.decode("ascii")), "hex", None)
    try:
        return GbcsInput(base64.b64decode(compact, validate=True), "base64", None)
    except binascii.Error:
        pass  # not base64 either: the file is the message itself
    return GbcsInput(data, "binary", None)


def parse_xml(data: bytes, name: str) -> etree._Element:
    try:
        return etree.fromstring(data, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise BadInput(f"{name}: not well-formed XML: {exc}") from None


def _payload_of(document: etree._Element, name: str) -> bytes:
    payloads = document.findall(".//{*}GBCSPayload")
    if len(payloads) != 1:
        # A refusal carries no payload; its ResponseCode says why.
        code = document.findtext("{*}Header/{*}ResponseCode")
        because = f" (ResponseCode {code.strip()})" if code else ""
        raise BadInput(f"{name}: expected one GBCSPayload, found {len(payloads)}{because}")
    text = "".join((payloads[0].text or "").split())
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise BadInput(f"{name}: GBCSPayload is not base64") from None


def load_private_key(path: Path, what: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(read_file(path, what), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadInvocation(f"{what} {path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadInvocation(f"{what} {path}: GBCS keys are EC P-256")
    return key


def load_public_key(path: Path, what: str) -> ec.EllipticCurvePublicKey:
    """A PEM certificate's key, or a PEM public key."""
    data = read_file(path, what)
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadInvocation(f"{what} {path}: no PEM certificate or public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadInvocation(f"{what} {path}: GBCS keys are EC P-256")
    return key


class DuisRequest(NamedTuple):
    root: etree._Element
    version: str  # schemaVersion
    request_id: RequestId
    command_variant: str
    srv_variant: str


def read_request(data: bytes, name: str) -> DuisRequest:
    root = parse_xml(data, name)
    if root.tag != f"{{{SR_NS}}}Request":
        raise BadInput(f"{name}: the document is not an sr:Request")
    header = f"{{{SR_NS}}}Header/{{{SR_NS}}}"
    try:
        request_id = parse_request_id((root.findtext(header + "RequestID") or "").strip())
    except IdentifierError as exc:
        raise BadInput(f"{name}: RequestID: {exc}") from None
    if root.find(header + "CommandVariant") is None or root.find(f"{{{SR_NS}}}Body") is None:
        raise BadInput(f"{name}: the request has no sr:CommandVariant or no sr:Body")
    return DuisRequest(
        root=root,
        version=(root.get("schemaVersion") or "").strip(),
        request_id=request_id,
        command_variant=(root.findtext(header + "CommandVariant") or "").strip(),
        srv_variant=(root.findtext(header + "ServiceReferenceVariant") or "").strip(),
    )
