"""Why a signature was refused: the slow element-by-element walk (sans-IO).

`gateway.core.signature.parse_signature` accepts or refuses in one anchored pattern over
the Signature's canonical form. Only a refused signature comes here, to be walked
element by element so that `SignatureError.reason` names the first fault in
document order. The walk never accepts anything on its own. It decodes values with
the fast path's own decoders (`gateway.core.signature_profile`), so both paths refuse a
bad value with the same reason.
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from gateway.core.signature_profile import (
    ECDSA_SHA256,
    ENVELOPED,
    EXC_C14N,
    SHA256,
    SignatureError,
    SignatureReason,
    decode_digest,
    decode_issuer_name,
    decode_serial,
    decode_signature_value,
    ds,
    is_blank,
)

_SIGNED_INFO: Final = ds("SignedInfo")
_C14N_METHOD: Final = ds("CanonicalizationMethod")
_SIGNATURE_METHOD: Final = ds("SignatureMethod")
_REFERENCE: Final = ds("Reference")
_TRANSFORMS: Final = ds("Transforms")
_TRANSFORM: Final = ds("Transform")
_DIGEST_METHOD: Final = ds("DigestMethod")
_DIGEST_VALUE: Final = ds("DigestValue")
_SIGNATURE_VALUE: Final = ds("SignatureValue")
_KEY_INFO: Final = ds("KeyInfo")
_X509_DATA: Final = ds("X509Data")
_ISSUER_SERIAL: Final = ds("X509IssuerSerial")
_ISSUER_NAME: Final = ds("X509IssuerName")
_SERIAL_NUMBER: Final = ds("X509SerialNumber")


def explain_refusal(signature: etree._Element) -> None:
    """Raise the `SignatureError` naming the first fault, in document order.

    Returns normally only if the walk finds nothing to name; the caller then
    refuses with ``bad_structure``.
    """
    _no_attributes(signature, "Signature")
    signed_info, signature_value, key_info = _expect_children(
        signature, (_SIGNED_INFO, _SIGNATURE_VALUE, _KEY_INFO), "Signature"
    )
    _explain_signed_info(signed_info)
    _no_attributes(signature_value, "SignatureValue")
    decode_signature_value(_leaf_text(signature_value, "bad_signature_value", "SignatureValue"))
    _explain_key_info(key_info)


def _explain_signed_info(signed_info: etree._Element) -> None:
    _no_attributes(signed_info, "SignedInfo")
    c14n_method, signature_method, reference = _expect_children(
        signed_info, (_C14N_METHOD, _SIGNATURE_METHOD, _REFERENCE), "SignedInfo"
    )
    _expect_algorithm(c14n_method, EXC_C14N, "CanonicalizationMethod")
    _expect_algorithm(signature_method, ECDSA_SHA256, "SignatureMethod")
    attrib = reference.attrib
    if attrib.get("URI") != "":
        raise SignatureError("bad_reference_uri", 'Reference must have URI=""')
    if len(attrib) != 1:
        raise SignatureError("unexpected_attribute", "Reference carries attributes beyond URI")
    transforms, digest_method, digest_value = _expect_children(
        reference, (_TRANSFORMS, _DIGEST_METHOD, _DIGEST_VALUE), "Reference"
    )
    _explain_transforms(transforms)
    _expect_algorithm(digest_method, SHA256, "DigestMethod")
    _no_attributes(digest_value, "DigestValue")
    decode_digest(_leaf_text(digest_value, "bad_digest_value", "DigestValue"))


def _explain_transforms(transforms: etree._Element) -> None:
    _no_attributes(transforms, "Transforms")
    children = list(transforms)
    if len(children) != 1 or children[0].tag != _TRANSFORM:
        raise SignatureError("bad_transforms", "Transforms must be exactly [enveloped-signature]")
    transform = children[0]
    if transform.get("Algorithm") != ENVELOPED or len(transform) or not is_blank(transform.text):
        raise SignatureError("bad_transforms", "the one Transform must be enveloped-signature")
    if len(transform.attrib) != 1:
        raise SignatureError("unexpected_attribute", "Transform has attributes beyond Algorithm")
    _blank_between_children(transforms, "Transforms")


def _explain_key_info(key_info: etree._Element) -> None:
    # One code for the whole KeyInfo subtree: the operator's question is "which
    # certificate?", and the detail says what was wrong.
    try:
        _no_attributes(key_info, "KeyInfo")
        (x509_data,) = _expect_children(key_info, (_X509_DATA,), "KeyInfo")
        _no_attributes(x509_data, "X509Data")
        (issuer_serial,) = _expect_children(x509_data, (_ISSUER_SERIAL,), "X509Data")
        _no_attributes(issuer_serial, "X509IssuerSerial")
        name, serial = _expect_children(
            issuer_serial, (_ISSUER_NAME, _SERIAL_NUMBER), "X509IssuerSerial"
        )
        _no_attributes(name, "X509IssuerName")
        _no_attributes(serial, "X509SerialNumber")
    except SignatureError as exc:
        raise SignatureError("bad_key_info", exc.detail) from None
    decode_issuer_name(_leaf_text(name, "bad_key_info", "X509IssuerName"))
    decode_serial(_leaf_text(serial, "bad_key_info", "X509SerialNumber"))


def _no_attributes(element: etree._Element, where: str) -> None:
    if len(element.attrib):
        raise SignatureError("unexpected_attribute", f"{where} carries attributes (Id games?)")


def _expect_children(
    element: etree._Element, tags: tuple[str, ...], where: str
) -> list[etree._Element]:
    children = list(element)
    if len(children) != len(tags) or any(c.tag != t for c, t in zip(children, tags, strict=True)):
        names = ", ".join(etree.QName(t).localname for t in tags)
        raise SignatureError("bad_structure", f"{where} must contain exactly [{names}]")
    _blank_between_children(element, where)
    return children


def _blank_between_children(element: etree._Element, where: str) -> None:
    if not is_blank(element.text) or any(not is_blank(c.tail) for c in element):
        raise SignatureError("bad_structure", f"{where} holds text between its elements")


def _expect_algorithm(element: etree._Element, algorithm: str, where: str) -> None:
    found = element.get("Algorithm")
    if found != algorithm:
        raise SignatureError("bad_algorithm", f"{where} Algorithm {str(found)[:100]!r} refused")
    if len(element.attrib) != 1:
        raise SignatureError("unexpected_attribute", f"{where} has attributes beyond Algorithm")
    if len(element) or not is_blank(element.text):
        raise SignatureError("bad_structure", f"{where} must be empty")


def _leaf_text(element: etree._Element, reason: SignatureReason, where: str) -> str:
    if len(element):
        raise SignatureError(reason, f"{where} must hold text only")
    return element.text or ""
