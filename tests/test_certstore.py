"""The SMKI certificate store over the DCC's test PKI and over generated certificates."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.certstore import (
    CertificateError,
    CertificateRefused,
    CertStore,
    check_signing_certificate,
)
from gateway.core.dn import normalise_dn
from gateway.devkit.devpki import DevUser, build_crl, generate_dev_pki, organisation_name
from gateway.stores.certfiles import SigningKeyNotFoundError, find_signing_key, load_certstore

UTC = dt.UTC
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
Z1_SKI = bytes.fromhex("4f5688d7ec933be2")
NOW = dt.datetime(2024, 6, 1, tzinfo=UTC)
ROLE_CERTS_50 = frozenset({"01", "02", "03", "04", "05", "06", "08", "7F"})
XML_SIGNING_51 = frozenset({"87"})


@pytest.fixture(scope="module")
def pki(shared_dir: Path) -> Path:
    return shared_dir / "pki" / "dccboxed"


@pytest.fixture(scope="module")
def store(pki: Path) -> CertStore:
    return load_certstore([pki])


@pytest.fixture(scope="module")
def anchored(pki: Path) -> CertStore:
    return load_certstore([pki], anchors=[pki / "Z1-issuing-ca.cert.pem"])


# --------------------------------------------------------------------------- loading the DCC PKI


def test_loads_the_dcc_test_pki(store: CertStore, pki: Path) -> None:
    assert len(store) == 31
    assert {c.trust for c in store} == {"pinned"}  # no anchors: the operator's list
    skipped = {path.name: reason for path, reason in store.skipped}
    assert set(skipped) == {"mdr-ds.cert.pem", "mdr-ka.cert.pem", "Z1-issuing-ca.cert.pem"}
    assert skipped["mdr-ds.cert.pem"].startswith("not strict DER")
    assert skipped["Z1-issuing-ca.cert.pem"].startswith("a CA certificate")
    usage = Counter(c.key_usage for c in store)
    assert usage == {"digitalSignature": 19, "keyAgreement": 12}  # as index.csv lists


def test_non_der_certificates_are_refused_with_a_warning_naming_the_file(
    pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.certstore"):
        load_certstore([pki])
    refused = [r.getMessage() for r in caplog.records if "mdr-" in r.getMessage()]
    assert len(refused) == 2
    assert all("not strict DER" in message for message in refused)


def test_organisation_fields(store: CertStore) -> None:
    cert = store.lookup("CN=Z1,OU=07", 105986833131214866166891566273223584671)
    assert cert is not None and cert.path.name == "Z1-supplier-ds.cert.pem"
    assert (cert.eui64, cert.role_code, cert.key_usage) == (SUPPLIER, "02", "digitalSignature")
    assert cert.has_policy and cert.issuer == "cn=z1,ou=07"
    assert cert.not_after == dt.datetime(2025, 10, 29, 23, 59, 59, tzinfo=UTC)
    other = store.lookup("CN=OB,OU=07", 90325540810335457430706996363193666853)
    assert other is not None and (other.eui64, other.role_code) == ("00-DB-12-34-56-78-00-04", "7F")


@pytest.mark.parametrize(
    "spelling", ["CN=Z1,OU=07", "CN=Z1, OU=07", "cn=z1 ,  ou=07", "2.5.4.3=Z1,OU=07"]
)
def test_lookup_by_either_issuer_spelling_and_string_type(store: CertStore, spelling: str) -> None:
    # xml-sign certificates encode the issuer as UTF8String, role certificates as
    # PrintableString: the same text finds both.
    xml_sign = store.lookup(spelling, 27572613927499351639968579586655397031)
    role = store.lookup(spelling, 105986833131214866166891566273223584671)
    assert xml_sign is not None and xml_sign.role_code == "87"
    assert role is not None and role.role_code == "02"


def test_lookup_misses(store: CertStore) -> None:
    assert store.lookup("CN=Z1,OU=07", 1) is None
    assert store.lookup("CN=Z2,OU=07", 27572613927499351639968579586655397031) is None
    assert store.lookup("OU=07,CN=Z1", 27572613927499351639968579586655397031) is None  # order kept
    assert store.lookup("not a DN", 1) is None


def test_find_by_identity_longest_lived_first(store: CertStore) -> None:
    found = store.find(SUPPLIER, "02", "digitalSignature")
    assert [c.path.name for c in found] == ["Z1b-supplier-ds.cert.pem", "Z1-supplier-ds.cert.pem"]
    assert len(store.find(SUPPLIER, "02", "keyAgreement")) == 4
    assert [c.path.name for c in store.find(SUPPLIER, "87", "digitalSignature")] == [
        "xml-sign-90B3D51F30010000-ds.cert.pem"
    ]


def test_z1_role_certificates_chain_and_xml_signing_stays_pinned(anchored: CertStore) -> None:
    chained = sorted(c.path.name for c in anchored if c.trust == "chained")
    pinned = sorted(c.path.name for c in anchored if c.trust == "pinned")
    assert len(chained) == 25
    assert all(name.startswith(("Z1-", "Z1b-")) for name in chained)
    assert pinned == [
        "dsp-xml-sign-90B3D51F30000002-ds.cert.pem",
        "xml-sign-00DB123456780004-ds.cert.pem",
        "xml-sign-90B3D51F30010000-ds.cert.pem",
        "xml-sign-90B3D51F30020000-ds.cert.pem",
    ]
    refused = {path.name: reason for path, reason in anchored.skipped}
    assert refused["otherUser-ds.cert.pem"].startswith("unknown issuer")


def test_an_anchor_is_never_chosen_by_issuer_name(pki: Path, tmp_path: Path) -> None:
    # Issuer "CN=Z1,OU=07" and the real CA's key id in the AKI, signed by someone else.
    forger = ec.generate_private_key(ec.SECP256R1())
    z1 = x509.load_pem_x509_certificate((pki / "Z1-issuing-ca.cert.pem").read_bytes())
    cert = (
        _leaf_builder(forger, organisation_name("02", SUPPLIER, "FORGED"), issuer=z1.subject)
        .add_extension(x509.AuthorityKeyIdentifier(Z1_SKI, None, None), critical=False)
        .sign(forger, hashes.SHA256())
    )
    _write(tmp_path / "forged.cert.pem", cert)
    loaded = load_certstore([tmp_path], anchors=[pki / "Z1-issuing-ca.cert.pem"])
    assert len(loaded) == 0
    assert "does not chain to anchor" in loaded.skipped[0][1]


def test_an_unusable_anchor_is_a_configuration_error(pki: Path) -> None:
    with pytest.raises(CertificateRefused):
        load_certstore([pki], anchors=[pki / "Z1-supplier-ds.cert.pem"])


# --------------------------------------------------------------------------- the signer checks


def _check(cert_store: CertStore, issuer: str, serial: int, **overrides: object) -> None:
    cert = cert_store.lookup(issuer, serial)
    assert cert is not None
    arguments: dict[str, object] = {
        "at": NOW,
        "signer_eui64": SUPPLIER,
        "allowed_role_codes": XML_SIGNING_51,
        "store": cert_store,
    }
    arguments.update(overrides)
    check_signing_certificate(cert, **arguments)  # type: ignore[arg-type]


def test_xml_signing_certificate_passes_under_51(store: CertStore) -> None:
    _check(store, "CN=Z1,OU=07", 27572613927499351639968579586655397031)


def test_role_certificate_passes_under_50_while_valid(store: CertStore) -> None:
    _check(
        store,
        "CN=Z1,OU=07",
        105986833131214866166891566273223584671,
        allowed_role_codes=ROLE_CERTS_50,
    )


@pytest.mark.parametrize(
    ("serial", "overrides", "reason"),
    [
        (
            105986833131214866166891566273223584671,
            {"at": dt.datetime(2026, 1, 1, tzinfo=UTC)},
            "expired",
        ),
        (
            105986833131214866166891566273223584671,
            {"at": dt.datetime(2015, 1, 1, tzinfo=UTC)},
            "not_yet_valid",
        ),
        (78705613441713544701898588866012598037, {}, "key_agreement_certificate"),
        (105986833131214866166891566273223584671, {}, "wrong_role_for_version"),
        (
            27572613927499351639968579586655397031,
            {"allowed_role_codes": ROLE_CERTS_50},
            "wrong_role_for_version",
        ),
        (
            27572613927499351639968579586655397031,
            {"signer_eui64": "90-B3-D5-1F-30-02-00-00"},
            "eui_mismatch",
        ),
    ],
)
def test_signer_check_reasons(
    store: CertStore, serial: int, overrides: dict[str, object], reason: str
) -> None:
    if reason in {"expired", "not_yet_valid"}:
        overrides = {"allowed_role_codes": ROLE_CERTS_50, **overrides}
    with pytest.raises(CertificateError) as caught:
        _check(store, "CN=Z1,OU=07", serial, **overrides)
    assert caught.value.reason == reason


def test_missing_policy_and_not_p256(tmp_path: Path) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    p256 = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "T")])
    no_policy = _leaf_builder(p256, organisation_name("87", SUPPLIER), issuer).sign(
        p256, hashes.SHA256()
    )
    on_p384 = (
        _leaf_builder(p384, organisation_name("87", SUPPLIER), issuer)
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier("1.2.826.0.1.8641679.1.2.1.4"), None)]
            ),
            critical=True,
        )
        .sign(p384, hashes.SHA256())
    )
    _write(tmp_path / "no-policy.cert.pem", no_policy)
    _write(tmp_path / "p384.cert.pem", on_p384)
    loaded = load_certstore([tmp_path])
    for cert, reason in ((no_policy, "missing_policy"), (on_p384, "not_p256")):
        with pytest.raises(CertificateError) as caught:
            _check(loaded, "CN=T", cert.serial_number)
        assert caught.value.reason == reason


def test_revocation_from_a_crl_signed_by_the_anchor(tmp_path: Path) -> None:
    paths = generate_dev_pki(
        tmp_path, [DevUser(SUPPLIER, "supplier", ("02",))], "90-B3-D5-1F-30-00-00-02", NOW
    )
    issuing = x509.load_pem_x509_certificate(paths.issuing_ca.read_bytes())
    issuing_key = serialization.load_pem_private_key(
        paths.issuing_ca.with_name("dev-issuing-ca.key.pem").read_bytes(), None
    )
    assert isinstance(issuing_key, ec.EllipticCurvePrivateKey)
    user = x509.load_pem_x509_certificate(paths.user_xml_signing[SUPPLIER].read_bytes())
    crl = tmp_path / "revoked.crl.pem"
    crl.write_bytes(build_crl(issuing, issuing_key, [user.serial_number], NOW))
    loaded = load_certstore([tmp_path], anchors=[paths.issuing_ca], crl_files=[crl])
    with pytest.raises(CertificateError) as caught:
        _check(loaded, "CN=DEVZ1,OU=07", user.serial_number, at=NOW + dt.timedelta(days=1))
    assert caught.value.reason == "revoked"
    # A DER CRL reads the same.
    der = tmp_path / "revoked.crl"
    der.write_bytes(
        x509.load_pem_x509_crl(crl.read_bytes()).public_bytes(serialization.Encoding.DER)
    )
    assert load_certstore([tmp_path], crl_files=[der]).is_revoked(
        loaded.lookup("CN=DEVZ1,OU=07", user.serial_number)  # type: ignore[arg-type]
    )


def test_a_crl_claiming_the_anchor_but_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    paths = generate_dev_pki(tmp_path, [], "90-B3-D5-1F-30-00-00-02", NOW)
    issuing = x509.load_pem_x509_certificate(paths.issuing_ca.read_bytes())
    forged = tmp_path / "forged.crl.pem"
    forged.write_bytes(build_crl(issuing, ec.generate_private_key(ec.SECP256R1()), [1], NOW))
    # build_crl writes the AKI of issuing's key, so the anchor is the one named.
    with pytest.raises(CertificateRefused, match="not signed by anchor"):
        load_certstore([tmp_path], anchors=[paths.issuing_ca], crl_files=[forged])


# --------------------------------------------------------------------------- names and keys


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("CN=Z1,OU=07", "cn=z1,ou=07"),
        (" CN = Z1 ,  OU = 07 ", "cn=z1,ou=07"),
        ("OID.2.5.4.11=07+CN=Z1", "cn=z1+ou=07"),
        ("CN=A\\,B,OU=07", "cn=a\\,b,ou=07"),
        ("CN=A\\2CB", "cn=a\\,b"),
        ("CN=Big   Name", "cn=big name"),
        ("CN=Ünï", "cn=ünï"),
    ],
)
def test_normalise_dn(text: str, key: str) -> None:
    assert normalise_dn(text) == key


@pytest.mark.parametrize("text", ["", "CN", "=x", "CN=a\\"])
def test_normalise_dn_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        normalise_dn(text)


def test_find_signing_key_in_the_dcc_layout(pki: Path) -> None:
    cert, key = find_signing_key([pki], SUPPLIER, "87")
    assert cert.path.name == "xml-sign-90B3D51F30010000-ds.cert.pem"
    assert key.public_key().public_numbers() == cert.public_key.public_numbers()
    cert, _ = find_signing_key([pki], SUPPLIER.lower(), "02")
    assert cert.path.name == "Z1b-supplier-ds.cert.pem"  # the longer-lived of two
    with pytest.raises(SigningKeyNotFoundError):
        find_signing_key([pki], SUPPLIER, "03")
    with pytest.raises(SigningKeyNotFoundError):
        find_signing_key([pki], "not-an-eui", "02")


def test_der_certificates_load(pki: Path, tmp_path: Path) -> None:
    cert = x509.load_pem_x509_certificate(
        (pki / "xml-sign-90B3D51F30010000-ds.cert.pem").read_bytes()
    )
    (tmp_path / "user.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    loaded = load_certstore([tmp_path])
    assert [c.role_code for c in loaded] == ["87"]


def _leaf_builder(
    key: ec.EllipticCurvePrivateKey, subject: x509.Name, issuer: x509.Name
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
    )


def _write(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
