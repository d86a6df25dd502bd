"""The development PKI reads back through CertStore, OpenSSL and TLS as the real one does."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import stat
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from gateway.core.certstore import check_signing_certificate
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signing import sign_document
from gateway.devkit.devpki import DevPkiPaths, DevUser, generate_dev_pki
from gateway.stores.certfiles import find_signing_key, load_certstore

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
DCC = "90-B3-D5-1F-30-00-00-02"
SUPPLIER = DevUser("90-B3-D5-1F-30-01-00-00", "supplier", ("02",))
NETWORK = DevUser("90-b3-d5-1f-30-02-00-00", "network", ("03", "7f"))


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devpki")


@pytest.fixture(scope="module")
def paths(pki_dir: Path) -> DevPkiPaths:
    return generate_dev_pki(pki_dir, [SUPPLIER, NETWORK], DCC, NOW)


def test_certificates_read_back_through_the_store(paths: DevPkiPaths) -> None:
    store = load_certstore([paths.directory], anchors=[paths.issuing_ca])
    assert {c.trust for c in store} == {"chained"}
    assert [p.name for p, _ in store.skipped] == ["dev-issuing-ca.cert.pem", "dev-root-ca.cert.pem"]
    identities = Counter((c.eui64, c.role_code, c.key_usage) for c in store)
    assert identities == {
        (DCC, "89", "digitalSignature"): 1,
        ("90-B3-D5-1F-30-01-00-00", "87", "digitalSignature"): 1,
        ("90-B3-D5-1F-30-01-00-00", "02", "digitalSignature"): 1,
        ("90-B3-D5-1F-30-01-00-00", "02", "keyAgreement"): 1,
        ("90-B3-D5-1F-30-02-00-00", "87", "digitalSignature"): 1,
        ("90-B3-D5-1F-30-02-00-00", "03", "digitalSignature"): 1,
        ("90-B3-D5-1F-30-02-00-00", "03", "keyAgreement"): 1,
        ("90-B3-D5-1F-30-02-00-00", "7F", "digitalSignature"): 1,
        ("90-B3-D5-1F-30-02-00-00", "7F", "keyAgreement"): 1,
    }
    for cert in store:
        assert cert.has_policy and cert.issuer == "cn=devz1,ou=07"
        assert cert.not_before == NOW - dt.timedelta(days=1)
        assert cert.not_after == NOW + dt.timedelta(days=3652)
        raw = cert.certificate.subject.get_attributes_for_oid(NameOID.X500_UNIQUE_IDENTIFIER)[
            0
        ].value
        assert raw == b"\x00" + bytes.fromhex(cert.eui64.replace("-", ""))


def test_layout_matches_the_dcc_test_pki(paths: DevPkiPaths) -> None:
    names = sorted(p.name for p in paths.directory.glob("*.pem"))
    assert "dsp-xml-sign-90B3D51F30000002-ds.cert.pem" in names
    assert "xml-sign-90B3D51F30010000-ds.key.pem" in names
    assert "supplier-02-ds.cert.pem" in names and "network-7F-ka.key.pem" in names
    assert paths.dcc_xml_signing.name == "dsp-xml-sign-90B3D51F30000002-ds.cert.pem"
    for key in paths.directory.glob("*.key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, clear


def test_a_user_signs_and_the_gateway_verifies(paths: DevPkiPaths) -> None:
    store = load_certstore([paths.directory], anchors=[paths.issuing_ca])
    cert, key = find_signing_key([paths.directory], SUPPLIER.eui64, "87")
    signed = sign_document(
        b"<r><a>1</a></r>", key, cert.certificate.issuer.rfc4514_string(), cert.serial
    )
    root = etree.fromstring(signed)
    parts = parse_signature(root)
    found = store.lookup(parts.issuer_name, parts.serial)
    assert found is not None
    check_signing_certificate(
        found,
        at=NOW,
        signer_eui64=SUPPLIER.eui64,
        allowed_role_codes=frozenset({"87"}),
        store=store,
    )
    verify_signature(root, parts, found.public_key)


def test_openssl_parses_every_certificate(paths: DevPkiPaths) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    certificates = sorted(paths.directory.glob("*.cert.pem")) + sorted(
        paths.tls_ca.parent.glob("*.cert.pem")
    )
    for path in certificates:
        text = subprocess.run(
            [openssl, "x509", "-noout", "-text", "-in", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        if path.name.startswith("xml-sign-90B3D51F30010000"):
            assert "x500UniqueIdentifier = #03090090B3D51F30010000" in text
            assert "Policy: 1.2.826.0.1.8641679.1.2.1.4" in text
            assert "Digital Signature" in text


def test_tls_material(paths: DevPkiPaths) -> None:
    ca = x509.load_pem_x509_certificate(paths.tls_ca.read_bytes())
    server = x509.load_pem_x509_certificate(paths.tls_server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    client_cert, client_key = paths.tls_client["90-B3-D5-1F-30-02-00-00"]
    client = x509.load_pem_x509_certificate(client_cert.read_bytes())
    client.verify_directly_issued_by(ca)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "90B3D51F30020000"
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # The files load as the gateway's and a client's TLS contexts would load them.
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(paths.tls_ca))
    server_context.load_cert_chain(str(paths.tls_server_cert), str(paths.tls_server_key))
    client_context = ssl.create_default_context(cafile=str(paths.tls_ca))
    client_context.load_cert_chain(str(client_cert), str(client_key))


def test_generation_is_idempotent_and_adds_only_what_is_missing(tmp_path: Path) -> None:
    first = generate_dev_pki(tmp_path, [SUPPLIER], DCC, NOW)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.pem")}
    again = generate_dev_pki(tmp_path, [SUPPLIER], DCC, NOW + dt.timedelta(days=5))
    assert again == first
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.pem")} == before
    generate_dev_pki(tmp_path, [SUPPLIER, NETWORK], DCC, NOW)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*.pem")}
    assert all(after[p] == content for p, content in before.items())
    added = sorted(p.name for p in set(after) - set(before))
    assert len(added) == 12  # xml-sign, 2 roles x (ds, ka), TLS client: 6 cert+key pairs
    # The new User's certificates chain to the CA that was already there.
    store = load_certstore([tmp_path], anchors=[first.issuing_ca])
    assert len(store.find("90-B3-D5-1F-30-02-00-00", "87", "digitalSignature")) == 1
