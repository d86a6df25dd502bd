"""Safe XML ingest: parse a DUIS request once, refuse anything hostile, decode its header.

The parser never resolves entities, loads DTDs or touches the network; a
document that so much as declares a DOCTYPE is refused, because DUIS has no use
for one and every XXE/billion-laughs trick starts there. libxml2's own limits
(depth 256, no huge text nodes) stay on.
"""

from __future__ import annotations

from typing import Any

import msgspec
from lxml import etree

from mmc.identifiers import IdentifierError, RequestId, parse_request_id

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
REQUEST_TAG = f"{{{SR_NS}}}Request"
HEADER_TAG = f"{{{SR_NS}}}Header"
BODY_TAG = f"{{{SR_NS}}}Body"
SIGNATURE_TAG = f"{{{DS_NS}}}Signature"

_HEADER_ORDER = (
    "RequestID",
    "FirstInSequence",
    "PrecedingServiceRequestID",
    "CommandVariant",
    "ServiceReference",
    "ServiceReferenceVariant",
)
_SR_PREFIX = f"{{{SR_NS}}}"
_OPTIONAL = frozenset({"FirstInSequence", "PrecedingServiceRequestID"})
MAX_TEXT_FIELD_CHARS = 128


class IngestError(Exception):
    """The request is not a well-formed, safe DUIS request: HTTP 400 with `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RequestHeader(msgspec.Struct, frozen=True):
    schema_version: str
    request_id: RequestId
    command_variant: int
    service_reference: str
    service_reference_variant: str
    body_element: str  # local name of the single sr:Body child
    first_in_sequence: bool | None = None
    preceding_request_id: RequestId | None = None


def _make_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,  # whitespace is signed content
        # URI="" references exclude comments from the digest, so they carry nothing
        # signed; dropping them keeps `.text` equal to what was signed.
        remove_comments=True,
        remove_pis=False,
        collect_ids=False,
    )


_PARSER = _make_parser()


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise IngestError."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise IngestError("malformed_xml", str(exc)[:200]) from None
    except ValueError as exc:  # e.g. a unicode string with an encoding declaration
        raise IngestError("malformed_xml", str(exc)[:200]) from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise IngestError("dtd_forbidden", "DOCTYPE declarations are not accepted")
    return root


def request_version(root: etree._Element) -> str:
    """The schemaVersion of an sr:Request: all that routing needs before the XSD check."""
    if root.tag != REQUEST_TAG:
        raise IngestError(
            "not_a_request", f"root element is {str(root.tag)[:80]!r}, expected sr:Request"
        )
    version = root.get("schemaVersion")
    if version is None:
        raise IngestError("missing_schema_version", "sr:Request has no schemaVersion attribute")
    return version


def decode_header(root: etree._Element) -> RequestHeader:
    """Check the envelope shape and decode sr:Header into a RequestHeader."""
    version = request_version(root)
    children = [c for c in root if isinstance(c.tag, str)]
    if len(children) < 2 or children[0].tag != HEADER_TAG or children[1].tag != BODY_TAG:
        raise IngestError("bad_envelope", "sr:Request must hold sr:Header then sr:Body")
    if len(children) > 3 or (len(children) == 3 and children[2].tag != SIGNATURE_TAG):
        raise IngestError("bad_envelope", "only one ds:Signature may follow sr:Body")
    fields = _header_fields(children[0])
    body_children = [c for c in children[1] if isinstance(c.tag, str)]
    if len(body_children) != 1:
        raise IngestError(
            "bad_body", f"sr:Body must hold exactly one element, not {len(body_children)}"
        )
    body = body_children[0]
    body_tag = str(body.tag)
    if not body_tag.startswith(_SR_PREFIX):
        raise IngestError("bad_body", "the sr:Body element is not in the DUIS namespace")
    try:
        return RequestHeader(
            schema_version=version.strip(),
            request_id=parse_request_id(fields["RequestID"]),
            command_variant=_command_variant(fields["CommandVariant"]),
            service_reference=fields["ServiceReference"],
            service_reference_variant=fields["ServiceReferenceVariant"],
            body_element=body_tag[len(_SR_PREFIX) :],
            first_in_sequence=_bool(fields.get("FirstInSequence")),
            preceding_request_id=(
                parse_request_id(fields["PrecedingServiceRequestID"])
                if "PrecedingServiceRequestID" in fields
                else None
            ),
        )
    except IdentifierError as exc:
        raise IngestError("bad_request_id", str(exc)) from None


_HEADER_POSITION = {f"{{{SR_NS}}}{name}": i for i, name in enumerate(_HEADER_ORDER)}


def _header_fields(header: etree._Element) -> dict[str, str]:
    fields: dict[str, str] = {}
    position = 0
    for child in header:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        index = _HEADER_POSITION.get(tag)  # a dict of full tags: no QName per child
        if index is None:
            raise IngestError("bad_header", f"unexpected header element {tag[-60:]!r}")
        name = _HEADER_ORDER[index]
        if index < position or name in fields:
            raise IngestError("bad_header", f"header element {name!r} out of order or repeated")
        position = index
        text = (child.text or "").strip()
        if not text or len(text) > MAX_TEXT_FIELD_CHARS:
            raise IngestError("bad_header", f"header element {name!r} is empty or too long")
        fields[name] = text
    missing = [n for n in _HEADER_ORDER if n not in fields and n not in _OPTIONAL]
    if missing:
        raise IngestError("bad_header", f"header lacks {', '.join(missing)}")
    return fields


def _command_variant(text: str) -> int:
    if len(text) != 1 or text not in "12345678":
        raise IngestError("bad_header", f"CommandVariant must be 1-8, not {text[:10]!r}")
    return int(text)


def _bool(text: str | None) -> bool | None:
    if text is None:
        return None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise IngestError("bad_header", f"FirstInSequence must be a boolean, not {text[:10]!r}")


class SchemaSet:
    """The DUIS XSDs of the served versions, compiled once at start-up."""

    def __init__(self, schemas: dict[str, etree.XMLSchema]) -> None:
        self._schemas = schemas

    def has(self, version: str) -> bool:
        return version in self._schemas

    def validate(self, version: str, root: etree._Element) -> None:
        schema = self._schemas.get(version)
        if schema is None:
            return
        if not schema.validate(root):
            error: Any = schema.error_log.last_error  # type: ignore[attr-defined]
            raise IngestError("schema_invalid", f"line {error.line}: {error.message}"[:300])

    def error(self, version: str, root: etree._Element) -> str | None:
        """Validation message for a document we built (tests and self-checks)."""
        schema = self._schemas.get(version)
        if schema is None or schema.validate(root):
            return None
        return str(schema.error_log.last_error)  # type: ignore[attr-defined]
