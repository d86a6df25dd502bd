"""The DUIS XMLDSig profile against the DCC's own signed samples and against signxml."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from lxml import etree

from gateway.core.signature import detach_keeping_tail, parse_signature, verify_signature
from gateway.core.signature_profile import DS_NS, SignatureError
from gateway.core.signing import sign_document

DS = f"{{{DS_NS}}}"
SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
USER_CERT = "xml-sign-90B3D51F30010000-ds"
DSP_CERT = "dsp-xml-sign-90B3D51F30000002-ds"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

# Indented on purpose: sign_document must drop the formatting whitespace.
PRETTY_REQUEST = b"""<?xml version="1.0" encoding="UTF-8"?>
<sr:Request xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" schemaVersion="5.4">
  <sr:Header>
    <sr:RequestID>90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:1000</sr:RequestID>
    <sr:CommandVariant>8</sr:CommandVariant>
    <sr:ServiceReference>8.2</sr:ServiceReference>
    <sr:ServiceReferenceVariant>8.2</sr:ServiceReferenceVariant>
  </sr:Header>
  <sr:Body>
    <sr:ReadInventory>
      <sr:DeviceID>00-DB-12-34-56-78-90-A2</sr:DeviceID>
    </sr:ReadInventory>
  </sr:Body>
</sr:Request>
"""


def load_cert(pki: Path, name: str) -> x509.Certificate:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificate((pki / f"{name}.cert.pem").read_bytes())


def load_key(pki: Path, name: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((pki / f"{name}.key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def verify_bytes(data: bytes, public_key: PublicKeyTypes) -> etree._Element:
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    root = etree.fromstring(data, PARSER)
    parts = parse_signature(root)
    # The derived SignedInfo form must be what lxml's exclusive C14N gives in place.
    assert parts.signed_info_c14n == etree.tostring(
        parts.signature[0], method="c14n", exclusive=True
    )
    verify_signature(root, parts, public_key)
    return root


@pytest.fixture(scope="module")
def pki(shared_dir: Path) -> Path:
    return shared_dir / "pki" / "dccboxed"


@pytest.fixture(scope="module")
def samples(shared_dir: Path) -> Path:
    return shared_dir / "duis" / "samples"


@pytest.fixture(scope="module")
def user_key(pki: Path) -> ec.EllipticCurvePrivateKey:
    return load_key(pki, USER_CERT)


@pytest.fixture(scope="module")
def user_cert(pki: Path) -> x509.Certificate:
    return load_cert(pki, USER_CERT)


def sign_as_user(
    data: bytes | etree._Element, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> bytes:
    return sign_document(data, key, "CN=Z1,OU=07", cert.serial_number)


# --------------------------------------------------------------------------- DCC samples


@pytest.mark.parametrize(
    "name", ["read-inventory-response-4g.xml", "read-inventory-response-5.4.xml"]
)
def test_dcc_signed_responses_verify(samples: Path, pki: Path, name: str) -> None:
    root = verify_bytes(
        (samples / "responses" / name).read_bytes(), load_cert(pki, DSP_CERT).public_key()
    )
    assert root.find(f"{DS}Signature") is None  # detached after verification
    assert root[-1].tag == f"{{{SR_NS}}}Body"


def test_dcc_sample_values_are_read(samples: Path) -> None:
    root = etree.fromstring((samples / "responses" / "read-inventory-response-4g.xml").read_bytes())
    parts = parse_signature(root)
    assert parts.issuer_name == "CN=Z1,OU=07"
    assert parts.serial == 167048897159233642262001557408276884033
    assert len(parts.digest) == 32
    assert parts.signed_info_c14n.startswith(
        b'<ds:SignedInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
    )
    assert parts.signature is root[-1]


def test_readfw_sample_is_signed_by_a_certificate_outside_the_shared_pki(
    samples: Path, pki: Path
) -> None:
    # Its KeyInfo names serial 5066...504, which the shared PKI does not hold (the
    # DCC re-signed this sample upstream as readfw-response-resigned.xml). The digest
    # is right, the DSP key from the PKI does not verify it: signxml agrees.
    root = etree.fromstring(
        (samples / "responses" / "readfw-response-signed-by-dsp.xml").read_bytes()
    )
    parts = parse_signature(root)
    assert parts.serial == 50669612984035780968362471400449834504
    dsp_key = load_cert(pki, DSP_CERT).public_key()
    assert isinstance(dsp_key, ec.EllipticCurvePublicKey)
    with pytest.raises(SignatureError) as caught:
        verify_signature(root, parts, dsp_key)
    assert caught.value.reason == "signature_invalid"  # not digest_mismatch


def test_dcc_badsignature_sample_is_refused(samples: Path, pki: Path) -> None:
    data = (samples / "hostile" / "readfw-response-badsignature.xml").read_bytes()
    with pytest.raises(SignatureError) as caught:
        verify_bytes(data, load_cert(pki, DSP_CERT).public_key())
    assert caught.value.reason == "signature_invalid"


def test_rtds_templates_with_placeholder_signatures_are_refused(samples: Path) -> None:
    # The DUIS templates carry a comment inside ds:Signature and dummy values.
    root = etree.fromstring(
        (samples / "requests" / "8.2_READ_INVENTORY_REQUEST_DUIS.XML").read_bytes()
    )
    with pytest.raises(SignatureError) as caught:
        parse_signature(root)
    assert caught.value.reason == "comment_in_signature"


# --------------------------------------------------------------------------- signing


def test_sign_produces_compact_profile_document(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    signed = sign_as_user(PRETTY_REQUEST, user_key, user_cert)
    root = etree.fromstring(signed, PARSER)
    for element in root.iter():
        if len(element):
            assert element.text is None or element.text.strip()
        assert element.tail is None or element.tail.strip()
    signature = root[-1]
    assert signature.tag == f"{DS}Signature" and signature.prefix == "ds"
    assert [etree.QName(c).localname for c in signature] == [
        "SignedInfo",
        "SignatureValue",
        "KeyInfo",
    ]
    assert signed.startswith(b'<?xml version="1.0" encoding="UTF-8"?><sr:Request ')
    verify_bytes(signed, user_cert.public_key())


def test_sign_element_compacts_in_place_without_adding_the_signature(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    root = etree.fromstring(PRETTY_REQUEST, PARSER)
    signed = sign_as_user(root, user_key, user_cert)
    assert root.find(f"{DS}Signature") is None
    assert root.text is None
    verified = verify_bytes(signed, user_cert.public_key())
    assert etree.tostring(verified, method="c14n") == etree.tostring(root, method="c14n")


def test_sign_keeps_leaf_and_mixed_whitespace(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    signed = sign_as_user(b"<a>\n <b> </b>\n <c>t<d/> </c>\n</a>", user_key, user_cert)
    assert signed.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?><a><b> </b><c>t<d></d> </c><ds:'
    )
    verify_bytes(signed, user_cert.public_key())


def test_sign_escapes_issuer_name(user_key: ec.EllipticCurvePrivateKey) -> None:
    signed = sign_document(b"<a/>", user_key, "CN=A&B <x>,OU=07", 7)
    parts = parse_signature(etree.fromstring(signed, PARSER))
    assert (parts.issuer_name, parts.serial) == ("CN=A&B <x>,OU=07", 7)


def test_sign_refuses_a_document_already_signed(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    signed = sign_as_user(b"<a/>", user_key, user_cert)
    with pytest.raises(ValueError, match="already holds"):
        sign_as_user(signed, user_key, user_cert)


def test_sign_refuses_a_non_root_element(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    root = etree.fromstring(b"<a><b/></a>")
    with pytest.raises(ValueError, match="document element"):
        sign_as_user(root[0], user_key, user_cert)


def test_verify_keeps_the_signature_tail_and_leaves_a_usable_tree() -> None:
    root = etree.fromstring(b"<a><b/>x<s/>\n</a>")
    detach_keeping_tail(root[1])
    assert etree.tostring(root) == b"<a><b/>x\n</a>"
    root = etree.fromstring(b"<a>y<s/>\n</a>")
    detach_keeping_tail(root[0])
    assert etree.tostring(root) == b"<a>y\n</a>"


def test_non_p256_key_is_refused(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    signed = sign_as_user(b"<a/>", user_key, user_cert)
    root = etree.fromstring(signed, PARSER)
    parts = parse_signature(root)
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(SignatureError) as caught:
        verify_signature(root, parts, other)
    assert caught.value.reason == "wrong_key_type"


# --------------------------------------------------------------------------- signxml interop


def test_signxml_verifies_what_we_sign(
    pki: Path, user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    from signxml.algorithms import DigestAlgorithm, SignatureMethod
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    signed = sign_as_user(PRETTY_REQUEST, user_key, user_cert)
    config = SignatureConfiguration(
        require_x509=False,
        signature_methods=frozenset([SignatureMethod.ECDSA_SHA256]),
        digest_algorithms=frozenset([DigestAlgorithm.SHA256]),
    )
    pem = (pki / f"{USER_CERT}.cert.pem").read_text()
    result = XMLVerifier().verify(signed, x509_cert=pem, expect_config=config)
    assert not isinstance(result, list) and result.signed_xml is not None
    assert etree.QName(result.signed_xml).localname == "Request"


def _signxml_sign(
    root: etree._Element, key: ec.EllipticCurvePrivateKey, serial: int, *, inclusive_digest: bool
) -> bytes:
    """Sign in the DUIS profile with signxml, KeyInfo given as X509IssuerSerial.

    signxml cannot be asked for exactly this profile: without the c14n Transform
    (exclude_c14n_transform_element) it still digests the document with the
    SignedInfo method (exclusive), while the profile digests with inclusive C14N 1.0,
    as XMLDSig prescribes when no canonicalisation transform is listed, and an
    explicit Reference URI="" fails to resolve. The adjustment overrides one
    private signxml hook to give the Reference inclusive C14N.
    """
    from signxml.algorithms import (
        CanonicalizationMethod,
        DigestAlgorithm,
        SignatureConstructionMethod,
        SignatureMethod,
    )
    from signxml.signer import XMLSigner

    class InclusiveDigestSigner(XMLSigner):
        def _unpack(self, data, references):  # type: ignore[no-untyped-def]
            sig_root, doc_root, inputs, refs = super()._unpack(data, references)
            refs = [
                dataclasses.replace(r, c14n_method=CanonicalizationMethod.CANONICAL_XML_1_0)
                for r in refs
            ]
            return sig_root, doc_root, inputs, refs

    key_info = etree.Element(f"{DS}KeyInfo")
    issuer_serial = etree.SubElement(
        etree.SubElement(key_info, f"{DS}X509Data"), f"{DS}X509IssuerSerial"
    )
    etree.SubElement(issuer_serial, f"{DS}X509IssuerName").text = "CN=Z1,OU=07"
    etree.SubElement(issuer_serial, f"{DS}X509SerialNumber").text = str(serial)
    signer_class = InclusiveDigestSigner if inclusive_digest else XMLSigner
    signer = signer_class(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(root, key=key, key_info=key_info, exclude_c14n_transform_element=True)
    return bytes(etree.tostring(signed))


def test_we_verify_signxml_with_inclusive_document_digest(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    # Pretty-printed on purpose: whitespace is content, verified exactly as sent.
    root = etree.fromstring(PRETTY_REQUEST, PARSER)
    signed = _signxml_sign(root, user_key, user_cert.serial_number, inclusive_digest=True)
    assert b"\n  <sr:Header>" in signed
    verify_bytes(signed, user_cert.public_key())


def test_we_verify_plain_signxml_when_both_c14n_forms_agree(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    # One namespace, declared and used on the root: inclusive == exclusive C14N, so
    # signxml's own (exclusive) document digest matches the profile's unadjusted.
    document = (
        f'<sr:Request xmlns:sr="{SR_NS}" schemaVersion="5.4"><sr:Header/><sr:Body/></sr:Request>'
    )
    root = etree.fromstring(document.encode())
    signed = _signxml_sign(root, user_key, user_cert.serial_number, inclusive_digest=False)
    verify_bytes(signed, user_cert.public_key())


def test_plain_signxml_digest_differs_when_namespaces_are_unused(
    user_key: ec.EllipticCurvePrivateKey, user_cert: x509.Certificate
) -> None:
    # The reason the adjustment above exists: xmlns:xsi is unused, so exclusive and
    # inclusive C14N differ and signxml's unadjusted digest is not the profile's.
    root = etree.fromstring(PRETTY_REQUEST, PARSER)
    signed = _signxml_sign(root, user_key, user_cert.serial_number, inclusive_digest=False)
    with pytest.raises(SignatureError) as caught:
        verify_bytes(signed, user_cert.public_key())
    assert caught.value.reason == "digest_mismatch"
