"""The DUIS XMLDSig profile: strict parsing and verification (sans-IO).

One profile only, the one the DCC uses: an enveloped ``ds:Signature``, last child of
the root, with ``Reference URI=""`` and the single enveloped-signature transform,
sha256 digest, ECDSA P-256 signature (``r || s``, 64 bytes), exclusive C14N for
``SignedInfo`` and ``KeyInfo/X509Data/X509IssuerSerial`` naming the certificate.

Checked against the DCC's own signed samples: the referenced document (minus the
Signature) is digested with *inclusive* C14N 1.0 (the XMLDSig default when no
canonicalisation transform follows enveloped-signature) and ``SignedInfo`` is
canonicalised with exclusive C14N where it stands in the document.

Everything outside the profile is refused with a stable ``SignatureError.reason``
rather than interpreted: a general XMLDSig engine is where wrapping attacks live.
Comments, processing instructions and entity references inside the Signature are
refused (``comment_in_signature``): no signer emits them, and they split text
nodes, so ``.text`` would see a different value from what C14N signs.

Reason codes: missing_signature, multiple_signatures, signature_not_last,
comment_in_signature, unexpected_attribute, bad_structure, bad_algorithm,
bad_reference_uri, bad_transforms, bad_digest_value, bad_signature_value,
bad_key_info, canonicalization_failed, wrong_key_type, digest_mismatch,
signature_invalid.

Signing (`sign_document`, `sign_canonical_document`) lives in `gateway.core.signing`; the
profile's identifiers and value decoders, which both share, in
`gateway.core.signature_profile`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from gateway.core.signature_profile import (
    DS_NS,
    ECDSA_SHA256,
    ECDSA_WITH_SHA256,
    ENVELOPED,
    EXC_C14N,
    SHA256,
    SIGNATURE,
    SignatureError,
    decode_digest,
    decode_issuer_name,
    decode_serial,
    decode_signature_value,
    is_blank,
)
from gateway.core.signature_refusals import explain_refusal


class SignatureParts(msgspec.Struct, frozen=True):
    """What `parse_signature` read; `verify_signature` needs nothing else."""

    issuer_name: str
    serial: int
    signed_info_c14n: bytes
    digest: bytes
    r: int
    s: int
    signature: etree._Element


# --------------------------------------------------------------------------- parse


def parse_signature(root: etree._Element) -> SignatureParts:
    """Check the profile on a parsed document and read the signature's values.

    `root` is the document element. ``SignedInfo`` is canonicalised here, while it
    still stands in the document, so `verify_signature` may then detach it.

    Acceptance is one anchored pattern over the exclusive canonical form of the
    Signature: C14N has already fixed attribute order, quoting, empty-element form
    and escaping, so the pattern is the whole profile in one place and costs about a
    microsecond. Only a refused signature takes the slower element-by-element walk
    (`gateway.core.signature_refusals`), whose job is to name the reason.
    """
    signature = _the_enveloped_signature(root)
    _refuse_non_elements(signature)
    match = _PROFILE.match(_c14n_exclusive(signature, "Signature"))
    if match is None:
        explain_refusal(signature)
        raise SignatureError("bad_structure", "ds:Signature is outside the profile's form")
    digest = decode_digest(_c14n_text(match["digest"]))
    r, s = decode_signature_value(_c14n_text(match["value"]))
    return SignatureParts(
        issuer_name=decode_issuer_name(_c14n_text(match["issuer"])),
        serial=decode_serial(_c14n_text(match["serial"])),
        signed_info_c14n=_signed_info_c14n(match),
        digest=digest,
        r=r,
        s=s,
        signature=signature,
    )


def _the_enveloped_signature(root: etree._Element) -> etree._Element:
    found = root.iter(SIGNATURE)
    signature = next(found, None)
    if signature is None:
        raise SignatureError("missing_signature", "the document holds no ds:Signature")
    if next(found, None) is not None:
        raise SignatureError("multiple_signatures", "the document holds more than one ds:Signature")
    if signature.getparent() is not root:
        raise SignatureError("signature_not_last", "ds:Signature is not a child of the root")
    # getnext() skips only text, so a comment or PI after the Signature counts too.
    if signature.getnext() is not None or not is_blank(signature.tail):
        raise SignatureError("signature_not_last", "content follows ds:Signature in the root")
    return signature


def _refuse_non_elements(signature: etree._Element) -> None:
    odd = next(signature.iter(etree.Comment, etree.ProcessingInstruction, etree.Entity), None)
    if odd is not None:
        raise SignatureError(
            "comment_in_signature",
            "comments, PIs and entity references are refused in ds:Signature",
        )


def _profile_pattern() -> re.Pattern[bytes]:
    """The profile as the exclusive canonical form of a Signature must read.

    Any one prefix (or none) for the dsig namespace, declared on Signature, used
    throughout; XML whitespace (CR appears as ``&#xD;`` after C14N) between elements.
    """
    ws = r"[ \t\n]*(?:&\#xD;[ \t\n]*)*"
    p = r"(?(p)(?P=p):)"

    def empty(local: str, attribute: str) -> str:
        return f"<{p}{local} {attribute}>{ws}</{p}{local}>{ws}"

    def algorithm(local: str, uri: str) -> str:
        return empty(local, f'Algorithm="{re.escape(uri)}"')

    def leaf(local: str, group: str) -> str:
        return f"<{p}{local}>(?P<{group}>[^<]*)</{p}{local}>{ws}"

    def open_(local: str) -> str:
        return f"<{p}{local}>{ws}"

    def close(local: str) -> str:
        return f"</{p}{local}>{ws}"

    pattern = (
        rf'<(?:(?P<p>[A-Za-z_][\w.\-]*):)?Signature xmlns(?(p):(?P=p))="{re.escape(DS_NS)}">'
        + ws
        + f"(?P<signed_info><{p}SignedInfo>{ws}"
        + algorithm("CanonicalizationMethod", EXC_C14N)
        + algorithm("SignatureMethod", ECDSA_SHA256)
        + f'<{p}Reference URI="">{ws}'
        + open_("Transforms")
        + algorithm("Transform", ENVELOPED)
        + close("Transforms")
        + algorithm("DigestMethod", SHA256)
        + leaf("DigestValue", "digest")
        + close("Reference")
        + f"</{p}SignedInfo>){ws}"
        + leaf("SignatureValue", "value")
        + open_("KeyInfo")
        + open_("X509Data")
        + open_("X509IssuerSerial")
        + leaf("X509IssuerName", "issuer")
        + leaf("X509SerialNumber", "serial")
        + close("X509IssuerSerial")
        + close("X509Data")
        + close("KeyInfo")
        + f"</{p}Signature>"
    )
    return re.compile(pattern.encode("ascii") + rb"\Z")


_PROFILE: Final = _profile_pattern()


def _signed_info_c14n(match: re.Match[bytes]) -> bytes:
    """Exclusive C14N of SignedInfo as it stands, taken from the Signature's own.

    Exact, not approximate, once the pattern has matched: the only namespace
    visibly used inside SignedInfo is the dsig prefix, which exclusive C14N renders
    on the apex. Within the Signature's canonical form it was rendered on Signature,
    so SignedInfo's start tag lacks just that declaration; everything else (text
    escaping, attribute order) does not depend on the apex. Saves a second C14N
    pass; tests compare it with lxml's C14N of SignedInfo on every accepted input.
    """
    prefix = match["p"]
    name = prefix + b":SignedInfo" if prefix else b"SignedInfo"
    declaration = b" xmlns:" + prefix if prefix else b" xmlns"
    body = match["signed_info"][len(name) + 1 :]  # after "<name"
    return b"<" + name + declaration + b'="' + DS_NS.encode("ascii") + b'"' + body


def _c14n_text(raw: bytes) -> str:
    """Undo C14N's text escaping (the only escapes it writes in text)."""
    text = raw.decode("utf-8")
    if "&" not in text:
        return text
    return (
        text.replace("&#xD;", "\r").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


def _c14n_exclusive(element: etree._Element, where: str) -> bytes:
    try:
        return etree.tostring(element, method="c14n", exclusive=True)
    except etree.C14NError:
        raise SignatureError(
            "canonicalization_failed", f"{where} cannot be canonicalised"
        ) from None


def _c14n_document(root: etree._Element) -> bytes:
    try:
        return etree.tostring(root.getroottree(), method="c14n")
    except etree.C14NError:
        # libxml2 refuses e.g. relative namespace URIs under inclusive C14N.
        raise SignatureError(
            "canonicalization_failed", "the document cannot be canonicalised"
        ) from None


# --------------------------------------------------------------------------- verify


def verify_signature(
    root: etree._Element, parts: SignatureParts, public_key: ec.EllipticCurvePublicKey
) -> None:
    """Check the digest and the ECDSA signature; raise `SignatureError` if either fails.

    Side effect, on every outcome once called: the Signature element is detached
    from the tree (its tail text stays, as the enveloped-signature transform keeps
    it), so the pipeline carries on with exactly the content that was digested.
    """
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise SignatureError("wrong_key_type", f"key is on {public_key.curve.name}, not P-256")
    if parts.signature.getparent() is not root:
        raise SignatureError("signature_not_last", "the parsed Signature is no longer in this root")
    detach_keeping_tail(parts.signature)
    digest = hashlib.sha256(_c14n_document(root)).digest()
    if not hmac.compare_digest(digest, parts.digest):
        raise SignatureError("digest_mismatch", "the document does not match DigestValue")
    try:
        public_key.verify(
            encode_dss_signature(parts.r, parts.s), parts.signed_info_c14n, ECDSA_WITH_SHA256
        )
    except InvalidSignature:
        raise SignatureError("signature_invalid", "SignatureValue does not verify") from None


def detach_keeping_tail(element: etree._Element) -> None:
    """Remove `element`; lxml would take its tail text with it, so hand that back."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    previous = element.getprevious()
    parent.remove(element)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
