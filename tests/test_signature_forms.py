"""The signature forms standard signers emit, both directions, against signxml and xmlsec.

Accepted (gateway/core/signature.py says why each means well-defined bytes): the DUIS
profile; an explicit C14N 1.0/1.1 Transform after enveloped-signature (the profile's
own digest input); an exclusive C14N Transform (digested as exclusive C14N); SignedInfo
in inclusive C14N 1.0/1.1; an embedded X509Certificate that is byte for byte a trusted
certificate. What signxml and python-xmlsec emit by default is each of these. Refused
with its reason: a signature whose declared Transforms do not describe its digest,
and every other form (tests/test_signature_hostile.py has the hostile table).

The other direction: what the gateway signs verifies with both libraries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.core.certstore import (
    CertificateError,
    CertStore,
    check_signing_certificate,
    signer_certificate,
)
from gateway.core.ingest import SIGNATURE_TAG, parse_xml
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signature_profile import SignatureError
from gateway.devkit.devpki import DevUser, generate_dev_pki
from gateway.stores.certfiles import load_certstore
from tests.harness import default_config, next_counter, response_code, running_gateway

xmlsec = pytest.importorskip("xmlsec", reason="python-xmlsec is a test extra (pyproject)")

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
DCC = "90-B3-D5-1F-30-00-00-02"
NOW = dt.datetime.now(dt.UTC)
DS = "{http://www.w3.org/2000/09/xmldsig#}"
SAMPLES = "duis/samples/requests"
# A CV 8 read (short) and a request with a comment in its Header (CS07: URI="" leaves
# comments out of the digest, whatever the transform says about them).
DOCUMENTS = ("8.2_READ_INVENTORY_REQUEST_DUIS.XML", "CCS07_8.9_SUCCESS_REQUEST_DUIS.XML")


class Pki:
    def __init__(self, directory: Path) -> None:
        name = f"xml-sign-{SUPPLIER.replace('-', '')}-ds"
        self.cert_path = directory / f"{name}.cert.pem"
        self.key_path = directory / f"{name}.key.pem"
        self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.key = key
        self.store: CertStore = load_certstore([directory])
        self.dcc_cert_path = directory / f"dsp-xml-sign-{DCC.replace('-', '')}-ds.cert.pem"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    generate_dev_pki(directory, [DevUser(SUPPLIER, "supplier", ("02",))], DCC, NOW)
    return Pki(directory)


def unsigned(shared: Path, name: str) -> etree._Element:
    """The template as its own tree (comments kept, as a User's signer sees them)."""
    root = etree.fromstring((shared / SAMPLES / name).read_bytes())
    for signature in root.findall(SIGNATURE_TAG):
        root.remove(signature)
    return root


def verdict(signed: bytes, pki: Pki) -> str:
    """The gateway's signature stages on the bytes as received: 'ok' or the reason."""
    root = parse_xml(signed)  # the hardened ingest parse (comments dropped)
    try:
        parts = parse_signature(root)
        cert = signer_certificate(pki.store, parts.issuer_name, parts.serial, parts.certificate)
        check_signing_certificate(
            cert,
            at=NOW,
            signer_eui64=SUPPLIER,
            allowed_role_codes=frozenset({"87"}),
            store=pki.store,
        )
        verify_signature(root, parts, cert.public_key)
    except (SignatureError, CertificateError) as exc:
        return exc.reason
    return "ok"


def issuer_serial_key_info(pki: Pki) -> etree._Element:
    key_info = etree.Element(f"{DS}KeyInfo")
    issuer_serial = etree.SubElement(
        etree.SubElement(key_info, f"{DS}X509Data"), f"{DS}X509IssuerSerial"
    )
    etree.SubElement(issuer_serial, f"{DS}X509IssuerName").text = "CN=DEVZ1,OU=07"
    etree.SubElement(issuer_serial, f"{DS}X509SerialNumber").text = str(pki.cert.serial_number)
    return key_info


# --------------------------------------------------------------------------- signxml


def signxml_signed(
    root: etree._Element,
    pki: Pki,
    c14n: str | None = None,
    *,
    issuer_serial: bool = False,
    exclude_transform: bool = False,
) -> bytes:
    from signxml.algorithms import SignatureMethod
    from signxml.signer import XMLSigner

    signer = (
        XMLSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256, c14n_algorithm=c14n)
        if c14n is not None
        else XMLSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256)  # its defaults
    )
    signed = signer.sign(
        root,
        key=pki.key,
        cert=pki.cert_path.read_text(),
        key_info=issuer_serial_key_info(pki) if issuer_serial else None,
        exclude_c14n_transform_element=exclude_transform,
    )
    return bytes(etree.tostring(signed))


SIGNXML_ACCEPTED: dict[str, Callable[[etree._Element, Pki], bytes]] = {
    "defaults (C14N 1.1, X509Certificate)": lambda r, p: signxml_signed(r, p),
    "C14N 1.0": lambda r, p: signxml_signed(
        r, p, "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    ),
    "exclusive C14N": lambda r, p: signxml_signed(r, p, "http://www.w3.org/2001/10/xml-exc-c14n#"),
    "defaults, X509IssuerSerial": lambda r, p: signxml_signed(r, p, issuer_serial=True),
}


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("form", list(SIGNXML_ACCEPTED))
def test_signxml_forms_are_accepted(shared_dir: Path, pki: Pki, form: str, document: str) -> None:
    signed = SIGNXML_ACCEPTED[form](unsigned(shared_dir, document), pki)
    assert verdict(signed, pki) == "ok"


def test_signxml_exclusive_digest_without_its_transform_is_refused(
    shared_dir: Path, pki: Pki
) -> None:
    """The one signxml form that lies: it digests exclusive C14N but declares no
    transform, so the declared (inclusive) digest input is other bytes."""
    root = unsigned(shared_dir, DOCUMENTS[0])
    exc = "http://www.w3.org/2001/10/xml-exc-c14n#"
    signed = signxml_signed(root, pki, exc, exclude_transform=True)
    assert verdict(signed, pki) == "digest_mismatch"


def test_a_stranger_certificate_embedded_by_signxml_is_not_trusted(
    shared_dir: Path, pki: Pki, tmp_path: Path
) -> None:
    """A valid signature with a certificate nobody listed: refused, never trusted as sent."""
    other = tmp_path / "other"
    generate_dev_pki(other, [DevUser(SUPPLIER, "supplier", ("02",))], DCC, NOW)
    stranger = Pki(other)  # same subject, same issuer name, another key and serial
    signed = signxml_signed(unsigned(shared_dir, DOCUMENTS[0]), stranger)
    assert verdict(signed, pki) == "unknown_certificate"


# --------------------------------------------------------------------------- python-xmlsec


def xmlsec_signed(
    root: etree._Element, pki: Pki, transform: object = None, *, issuer_serial: bool = False
) -> bytes:
    consts = xmlsec.constants
    signature = xmlsec.template.create(root, consts.TransformExclC14N, consts.TransformEcdsaSha256)
    root.append(signature)
    reference = xmlsec.template.add_reference(signature, consts.TransformSha256, uri="")
    xmlsec.template.add_transform(reference, consts.TransformEnveloped)
    if transform is not None:
        xmlsec.template.add_transform(reference, transform)
    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    if issuer_serial:
        xmlsec.template.x509_data_add_issuer_serial(x509_data)
    context = xmlsec.SignatureContext()
    key = xmlsec.Key.from_file(str(pki.key_path), consts.KeyDataFormatPem)
    key.load_cert_from_file(str(pki.cert_path), consts.KeyDataFormatPem)
    context.key = key
    context.sign(signature)
    return bytes(etree.tostring(root))


XMLSEC_ACCEPTED: dict[str, Callable[[etree._Element, Pki], bytes]] = {
    "the usual template (X509Certificate)": lambda r, p: xmlsec_signed(r, p),
    "X509IssuerSerial": lambda r, p: xmlsec_signed(r, p, issuer_serial=True),
    "with a C14N 1.0 transform": lambda r, p: xmlsec_signed(
        r, p, xmlsec.constants.TransformInclC14N
    ),
    "with a C14N 1.1 transform": lambda r, p: xmlsec_signed(
        r, p, xmlsec.constants.TransformInclC14N11
    ),
    "with a C14N 1.0 transform with comments": lambda r, p: xmlsec_signed(
        r, p, xmlsec.constants.TransformInclC14NWithComments
    ),
    "with an exclusive C14N transform": lambda r, p: xmlsec_signed(
        r, p, xmlsec.constants.TransformExclC14N
    ),
}


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("form", list(XMLSEC_ACCEPTED))
def test_xmlsec_forms_are_accepted(shared_dir: Path, pki: Pki, form: str, document: str) -> None:
    signed = XMLSEC_ACCEPTED[form](unsigned(shared_dir, document), pki)
    assert verdict(signed, pki) == "ok"


def test_xmlsec_with_an_xpath_transform_is_refused(shared_dir: Path, pki: Pki) -> None:
    """XPath filtering after enveloped-signature: a valid XMLDSig, outside the profile."""
    root = unsigned(shared_dir, DOCUMENTS[0])
    consts = xmlsec.constants
    signature = xmlsec.template.create(root, consts.TransformExclC14N, consts.TransformEcdsaSha256)
    root.append(signature)
    reference = xmlsec.template.add_reference(signature, consts.TransformSha256, uri="")
    xmlsec.template.add_transform(reference, consts.TransformEnveloped)
    xpath = xmlsec.template.add_transform(reference, consts.TransformXPath)
    etree.SubElement(xpath, f"{DS}XPath").text = "not(self::comment())"
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    context = xmlsec.SignatureContext()
    key = xmlsec.Key.from_file(str(pki.key_path), consts.KeyDataFormatPem)
    key.load_cert_from_file(str(pki.cert_path), consts.KeyDataFormatPem)
    context.key = key
    context.sign(signature)
    assert verdict(bytes(etree.tostring(root)), pki) == "bad_transforms"


def test_xmlsec_with_a_second_reference_is_refused(shared_dir: Path, pki: Pki) -> None:
    root = unsigned(shared_dir, DOCUMENTS[0])
    body = root.find("{*}Body")
    assert body is not None
    body.set("Id", "body")
    consts = xmlsec.constants
    signature = xmlsec.template.create(root, consts.TransformExclC14N, consts.TransformEcdsaSha256)
    root.append(signature)
    for uri in ("", "#body"):
        reference = xmlsec.template.add_reference(signature, consts.TransformSha256, uri=uri)
        xmlsec.template.add_transform(reference, consts.TransformEnveloped)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    context = xmlsec.SignatureContext()
    key = xmlsec.Key.from_file(str(pki.key_path), consts.KeyDataFormatPem)
    key.load_cert_from_file(str(pki.cert_path), consts.KeyDataFormatPem)
    context.key = key
    context.register_id(body, "Id")
    context.sign(signature)
    assert verdict(bytes(etree.tostring(root)), pki) == "bad_structure"


# --------------------------------------------------------------------------- end to end


async def test_standard_signers_get_through_the_gateway(tmp_path: Path, shared_dir: Path) -> None:
    """signxml's and xmlsec's default output, posted as a User would: answered I0."""
    config = default_config(tmp_path)
    state_pki = Pki(tmp_path / "pki")
    xml = (shared_dir / SAMPLES / DOCUMENTS[0]).read_bytes()
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        for sign in (SIGNXML_ACCEPTED, XMLSEC_ACCEPTED):
            for form, signer in sign.items():
                root = etree.fromstring(xml)
                for signature in root.findall(SIGNATURE_TAG):
                    root.remove(signature)
                request_id = root.find("{*}Header/{*}RequestID")
                assert request_id is not None and request_id.text
                originator, target, _ = request_id.text.split(":")
                request_id.text = f"{originator}:{target}:{next_counter()}"
                response = await gw.post("/api/v1/serviceD", signer(root, state_pki))
                assert response.status_code == 200, (form, response.text)
                assert response_code(response.content) == "I0", form


# --------------------------------------------------------------------------- the other way


async def test_what_the_gateway_signs_verifies_with_xmlsec(
    tmp_path: Path, shared_dir: Path
) -> None:
    config = default_config(tmp_path)
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        response = await gw.send((shared_dir / SAMPLES / DOCUMENTS[0]).read_bytes())
    assert response_code(response.content) == "I0"
    root = etree.fromstring(response.content)
    signature = root.find(SIGNATURE_TAG)
    assert signature is not None
    dcc_cert = Pki(tmp_path / "pki").dcc_cert_path

    def verify(signature: etree._Element) -> None:
        context = xmlsec.SignatureContext()  # one verification per context
        context.key = xmlsec.Key.from_file(str(dcc_cert), xmlsec.constants.KeyDataFormatCertPem)
        context.verify(signature)

    verify(signature)  # raises xmlsec.VerificationError otherwise
    tampered = etree.fromstring(
        response.content.replace(b"<sr:ResponseCode>I0", b"<sr:ResponseCode>E1")
    )
    signature = tampered.find(SIGNATURE_TAG)
    assert signature is not None
    with pytest.raises(xmlsec.VerificationError):
        verify(signature)
