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
from gateway.devkit.client import endpoint_path
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


# The 8.13 sample returns the device's response to a CV 6 local command (RTDS CS06,
# counter 1000): it is accepted once that command is open, in a gateway of its own
# (tests/test_local_delivery_e2e.py); here, alone, it matches no open local command.
RETURN_LOCAL = "8.13_RETURN_LOCAL_COMMAND_RESPONSE_CS06_REQUEST_DUIS.XML"


def expected_codes(xml: bytes, name: str) -> set[str]:
    header = decode_header(parse_xml(xml))
    cv = header.command_variant
    if header.schema_version == "5.2":
        return set()  # not served: HTTP 400
    if name == RETURN_LOCAL:
        return {"E081301"}
    if cv in (1, 3, 5, 7):
        return {"I99"}
    return {"I0"}  # CV 2/6 (the command for local delivery), 4 (Pre-Command), 8


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
            expected = expected_codes(xml, path.name)
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
            if code == "I0":
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


# Where the DCC's own tooling posts each CommandVariant (duis-parser cv.ts "webService",
# dccboxed-nodered-nodes: Non-Device Service -> serviceD, Send Command -> serviceS,
# Transform -> serviceT): `duisgw send` and the test above post there too.
DCC_TOOLING_ENDPOINT = {1: "S", 2: "D", 3: "S", 4: "T", 5: "S", 6: "D", 7: "S", 8: "D"}


def test_samples_go_where_the_dcc_tooling_sends_them(shared_dir: Path) -> None:
    for path in sample_files(shared_dir):
        header = decode_header(parse_xml(path.read_bytes()))
        cv = header.command_variant
        chosen = endpoint_path(header.schema_version, header.service_reference_variant, cv)
        assert chosen == f"/api/v1/service{DCC_TOOLING_ENDPOINT[cv]}", path.name
    for cv in range(1, 9):  # every CV, on an SRV that allows it
        variant = "8.2" if cv == 8 else ("1.1.1" if cv in (4, 5, 6, 7) else "4.1.1")
        assert endpoint_path("5.4", variant, cv) == f"/api/v1/service{DCC_TOOLING_ENDPOINT[cv]}"
