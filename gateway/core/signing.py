"""Compact signing in the DUIS XMLDSig profile (sans-IO): the writer's side.

`sign_document` takes any document, drops the whitespace-only text between
elements, canonicalises it and splices in an enveloped ``ds:Signature``;
`sign_canonical_document` signs bytes the gateway's response builders already wrote
in inclusive canonical, compact form. `gateway.core.signature` parses and verifies;
the identifiers both use are in `gateway.core.signature_profile`.
"""

from __future__ import annotations

import hashlib
from base64 import b64encode
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from gateway.core.signature_profile import (
    DS_NS,
    ECDSA_SHA256,
    ECDSA_WITH_SHA256,
    ENVELOPED,
    EXC_C14N,
    P256_SCALAR_BYTES,
    SHA256,
    SIGNATURE,
)

# Exclusive C14N of the SignedInfo that sign_document writes: it is fixed apart from
# the digest, so it is formatted, not computed. test_signature checks it equals what
# parse_signature canonicalises from the emitted document.
_SIGNED_INFO_C14N: Final = (
    f'<ds:SignedInfo xmlns:ds="{DS_NS}">'
    f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"></ds:CanonicalizationMethod>'
    f'<ds:SignatureMethod Algorithm="{ECDSA_SHA256}"></ds:SignatureMethod>'
    '<ds:Reference URI=""><ds:Transforms>'
    f'<ds:Transform Algorithm="{ENVELOPED}"></ds:Transform></ds:Transforms>'
    f'<ds:DigestMethod Algorithm="{SHA256}"></ds:DigestMethod>'
    "<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
)
_SIGNATURE_XML: Final = (
    f'<ds:Signature xmlns:ds="{DS_NS}"><ds:SignedInfo>'
    f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>'
    f'<ds:SignatureMethod Algorithm="{ECDSA_SHA256}"/>'
    f'<ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="{ENVELOPED}"/></ds:Transforms>'
    f'<ds:DigestMethod Algorithm="{SHA256}"/>'
    "<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
    "<ds:SignatureValue>{value}</ds:SignatureValue>"
    "<ds:KeyInfo><ds:X509Data><ds:X509IssuerSerial>"
    "<ds:X509IssuerName>{issuer}</ds:X509IssuerName>"
    "<ds:X509SerialNumber>{serial}</ds:X509SerialNumber>"
    "</ds:X509IssuerSerial></ds:X509Data></ds:KeyInfo></ds:Signature>"
)
_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>'

# Whitespace-only text in elements whose content is elements only: what the DCC's
# XSD-driven Java tool drops before digesting. Mixed content is left alone.
_BLANK_BETWEEN_ELEMENTS: Final = etree.XPath("//*[*][not(text()[normalize-space(.) != ''])]/text()")
# Signing parses only our own documents, but stays as closed as the ingest parser.
# One module-level parser: lxml parsers are not for concurrent use across threads,
# and signing runs on the trio thread.
_SIGNING_PARSER: Final = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


def sign_document(
    xml: bytes | etree._Element,
    private_key: ec.EllipticCurvePrivateKey,
    issuer_name: str,
    serial: int,
) -> bytes:
    """Return the document, compacted, with an enveloped signature as its last child.

    An element argument must be the document element; it is compacted in place
    (whitespace-only text between elements dropped) but the Signature is not added
    to it. The output is the inclusive canonical form of the document (what was
    digested), so any verifier re-canonicalises it to the same bytes, with the
    Signature spliced in before the root's end tag.
    """
    root = _compact_root(xml)
    document = _c14n_document_for_signing(root)
    return _sign_canonical(document, _end_tag(root), private_key, issuer_name, serial)


def sign_canonical_document(
    document: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    issuer_name: str,
    serial: int,
) -> bytes:
    """Sign bytes the caller built in inclusive canonical, compact form (no parse).

    For the gateway's own response builders, which write canonical XML directly
    (tests check c14n(parse(x)) == x for every builder): it skips the parse and
    the canonicalisation that `sign_document` needs for arbitrary input.
    """
    start = document.rfind(b"</")
    if start <= 0 or not document.endswith(b">"):
        raise ValueError("not a document: no end tag")
    return _sign_canonical(document, document[start:], private_key, issuer_name, serial)


def _sign_canonical(
    document: bytes,
    end_tag: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    issuer_name: str,
    serial: int,
) -> bytes:
    digest = b64encode(hashlib.sha256(document).digest()).decode("ascii")
    signed_info = _SIGNED_INFO_C14N.format(digest=digest).encode("ascii")
    r, s = decode_dss_signature(private_key.sign(signed_info, ECDSA_WITH_SHA256))
    value = b64encode(r.to_bytes(P256_SCALAR_BYTES) + s.to_bytes(P256_SCALAR_BYTES))
    signature = _SIGNATURE_XML.format(
        digest=digest,
        value=value.decode("ascii"),
        issuer=_escape_text(issuer_name),
        serial=serial,
    ).encode("utf-8")
    if not document.endswith(end_tag):
        raise ValueError("the canonical form does not end with the root's end tag")
    return b"".join((_XML_DECLARATION, document[: -len(end_tag)], signature, end_tag))


def _compact_root(xml: bytes | etree._Element) -> etree._Element:
    root = etree.fromstring(xml, _SIGNING_PARSER) if isinstance(xml, bytes) else xml
    if root.getparent() is not None:
        raise ValueError("sign_document needs the document element")
    if next(root.iter(SIGNATURE), None) is not None:
        raise ValueError("the document already holds a ds:Signature")
    found = _BLANK_BETWEEN_ELEMENTS(root)
    for text in found if isinstance(found, list) else ():
        if not isinstance(text, etree._ElementUnicodeResult):
            continue
        owner = text.getparent()
        if owner is None:
            continue
        if text.is_tail:
            owner.tail = None
        else:
            owner.text = None
    return root


def _c14n_document_for_signing(root: etree._Element) -> bytes:
    if root.getnext() is not None:
        # Trailing PIs would follow the root's end tag in the canonical form.
        raise ValueError("nodes after the document element are not signed")
    try:
        return etree.tostring(root.getroottree(), method="c14n")
    except etree.C14NError as exc:
        raise ValueError("the document cannot be canonicalised") from exc


def _end_tag(root: etree._Element) -> bytes:
    local = etree.QName(root).localname
    name = f"{root.prefix}:{local}" if root.prefix else local
    return f"</{name}>".encode()


def _escape_text(text: str) -> str:
    # C14N text escaping, so the issuer name reads back exactly.
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")
    )


@dataclass(frozen=True)
class ResponseSigner:
    """The DCC XML-signing key (OU 89), loaded once at start-up, and its certificate's name."""

    private_key: ec.EllipticCurvePrivateKey
    issuer_name: str
    serial: int

    def sign(self, document: bytes) -> bytes:
        """Sign a document from mmc.responses (already canonical and compact)."""
        return sign_canonical_document(document, self.private_key, self.issuer_name, self.serial)
