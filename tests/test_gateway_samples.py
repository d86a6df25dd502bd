"""Every public sample request, signed with the DCC's test keys, through a real gateway.

The gateway trusts ../shared/pki/dccboxed and signs with the DSP key there; each
response must carry the right code and validate against the request version's XSD,
and every signed response must verify with the DSP certificate.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from gateway.core.ingest import SchemaSet, decode_header, parse_xml
from gateway.core.signature import parse_signature, verify_signature
from gateway.stores.operator_files import load_schemas
from mmc.catalogue import load_catalogue
from tests.harness import dccboxed_config, response_code, running_gateway

DSP_CERT = "dsp-xml-sign-90B3D51F30000002-ds.cert.pem"


def sample_files(shared: Path) -> list[Path]:
    return sorted((shared / "duis" / "samples" / "requests").glob("*.XML"))


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    files = {v: load_catalogue(v).xsd_file for v in ("5.0", "5.1", "5.3", "5.4")}
    return load_schemas(shared_dir / "duis" / "xsd", files)


def expected_codes(xml: bytes) -> set[str]:
    header = decode_header(parse_xml(xml))
    cv = header.command_variant
    if header.schema_version == "5.2":
        return set()  # not served: HTTP 400
    if cv in (1, 3, 5, 7):
        return {"I99"}
    if cv == 8:
        return {"I0"}
    return {"I0", "E20", "E21"}  # a device may be unreachable in the simulator


def assert_dsp_signature(body: bytes, shared: Path) -> None:
    cert = x509.load_pem_x509_certificate((shared / "pki" / "dccboxed" / DSP_CERT).read_bytes())
    root = etree.fromstring(body)
    parts = parse_signature(root)
    assert parts.serial == cert.serial_number
    verify_signature(root, parts, cert.public_key())  # type: ignore[arg-type]


async def test_every_sample_request_gets_its_answer(
    tmp_path: Path, shared_dir: Path, schemas: SchemaSet
) -> None:
    config = dccboxed_config(tmp_path, shared_dir)
    files = sample_files(shared_dir)
    assert len(files) >= 27
    async with running_gateway(config, [shared_dir / "pki" / "dccboxed"]) as gateway:
        for path in files:
            xml = path.read_bytes()
            response = await gateway.send(xml)
            expected = expected_codes(xml)
            if not expected:
                assert response.status_code == 400, path.name
                assert "unsupported_version" in response.text
                continue
            assert response.status_code == 200, (path.name, response.text)
            code = response_code(response.content)
            assert code in expected, (path.name, code)
            version = etree.fromstring(response.content).get("schemaVersion")
            error = schemas.error(str(version), etree.fromstring(response.content))
            assert error is None, (path.name, error)
            if code != "I99":
                assert_dsp_signature(response.content, shared_dir)


async def test_signed_inventory_response_verifies_with_signxml(
    tmp_path: Path, shared_dir: Path
) -> None:
    """An independent XMLDSig implementation accepts what the gateway signs."""
    from signxml.algorithms import DigestAlgorithm, SignatureMethod
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    config = dccboxed_config(tmp_path, shared_dir)
    xml = (shared_dir / "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML").read_bytes()
    async with running_gateway(config, [shared_dir / "pki" / "dccboxed"]) as gateway:
        response = await gateway.send(xml)
    assert response_code(response.content) == "I0"
    pem = (shared_dir / "pki" / "dccboxed" / DSP_CERT).read_text()
    expect = SignatureConfiguration(
        require_x509=False,
        signature_methods=frozenset([SignatureMethod.ECDSA_SHA256]),
        digest_algorithms=frozenset([DigestAlgorithm.SHA256]),
    )
    result = XMLVerifier().verify(response.content, x509_cert=pem, expect_config=expect)
    assert not isinstance(result, list)
    inventory = result.signed_xml.find(".//{*}DSPInventory")
    assert inventory is not None and len(inventory) >= 1
