"""The trust report: certificates with their validity, and each User's signer per version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.certstore import CertStore
from gateway.core.registry import decode_users
from gateway.core.trust_report import (
    SignerChoice,
    certificate_rows,
    signing_readiness,
    users_without_signer,
)
from gateway.core.versions import VersionRegistry
from gateway.devkit.devpki import DevUser, build_crl, cert_path, generate_dev_pki, key_path
from gateway.stores.certfiles import load_certstore

ISSUED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = ISSUED + dt.timedelta(days=30)
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
LOAD_CONTROLLER = "90-B3-D5-1F-30-01-00-08"
NO_CERTIFICATES = "90-B3-D5-1F-30-09-00-00"
DCC = "90-B3-D5-1F-30-00-00-02"
USERS = f"""
[[users]]
user_id = "{SUPPLIER}"
party = "supplier-1"
roles = ["IS", "GS"]
status = "active"

[[users]]
user_id = "{LOAD_CONTROLLER.lower()}"
party = "load-controller"
roles = ["OU"]
status = "active"

[[users]]
user_id = "{NO_CERTIFICATES}"
party = "newcomer"
roles = ["ES"]
status = "active"

[[users]]
user_id = "{DCC}"
party = "dcc"
roles = []
status = "active"
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    users = [DevUser(SUPPLIER, "supplier", ("02",)), DevUser(LOAD_CONTROLLER, "lc", ("08",))]
    generate_dev_pki(directory, users, DCC, ISSUED)
    return directory


def by_user(
    store: CertStore, at: dt.datetime, retired: dict[str, dt.date] | None = None
) -> dict[str, dict[str, SignerChoice]]:
    registry = decode_users(USERS.encode(), fmt="toml")
    versions = VersionRegistry.build(["5.0", "5.4"], retired or {})
    return {
        u.user_id: {c.version: c for c in u.versions}
        for u in signing_readiness(store, registry, versions, at)
    }


def test_each_user_gets_the_certificate_its_version_rule_names(pki: Path) -> None:
    store = load_certstore([pki])
    report = by_user(store, NOW)
    supplier = report[SUPPLIER]
    # 5.0: the role certificate (OU 02); from 5.1 the User XML-signing one (OU 87).
    assert supplier["5.0"].usable and supplier["5.0"].role_code == "02"
    assert supplier["5.4"].usable and supplier["5.4"].role_code == "87"
    # The load controller's role (OU 08) may not sign under 5.0's rule (02, 03, 7F).
    controller = report[LOAD_CONTROLLER]  # the registry's canonical, upper-case form
    assert not controller["5.0"].usable
    assert "OU 02 or OU 03 or OU 7F" in (controller["5.0"].problem or "")
    assert controller["5.4"].usable
    newcomer = report[NO_CERTIFICATES]
    assert not newcomer["5.0"].usable and not newcomer["5.4"].usable


def test_users_without_signer_lists_exactly_the_users_some_version_refuses(pki: Path) -> None:
    store = load_certstore([pki])
    registry = decode_users(USERS.encode(), fmt="toml")
    report = signing_readiness(store, registry, VersionRegistry.build(["5.0", "5.4"], {}), NOW)
    # The DCC's own ID has no DUIS role: it sends no requests, so it is never listed.
    assert [u.user_id for u in users_without_signer(report)] == [LOAD_CONTROLLER, NO_CERTIFICATES]
    dcc = next(u for u in report if u.user_id == DCC)
    assert not dcc.versions[0].usable and not dcc.missing_signer
    # Only 5.4 served: the load controller signs with its OU 87 certificate.
    report = signing_readiness(store, registry, VersionRegistry.build(["5.4"], {}), NOW)
    assert [u.user_id for u in users_without_signer(report)] == [NO_CERTIFICATES]


def test_a_retired_version_is_not_reported(pki: Path) -> None:
    report = by_user(load_certstore([pki]), NOW, {"5.0": NOW.date()})
    assert set(report[SUPPLIER]) == {"5.4"}


def test_expired_certificates_are_named_with_their_expiry(pki: Path) -> None:
    store = load_certstore([pki])
    later = ISSUED + dt.timedelta(days=3700)  # past the dev PKI's ten years
    choice = by_user(store, later)[SUPPLIER]["5.4"]
    assert not choice.usable
    assert "expired" in (choice.problem or "")
    rows = certificate_rows(store, later)
    assert {r.validity for r in rows} == {"expired"}


def test_a_revoked_certificate_is_not_a_signer(pki: Path, tmp_path: Path) -> None:
    xml_signing = x509.load_pem_x509_certificate(
        cert_path(pki, "xml-sign-90B3D51F30010000-ds").read_bytes()
    )
    issuing = x509.load_pem_x509_certificate(cert_path(pki, "dev-issuing-ca").read_bytes())
    key = serialization.load_pem_private_key(key_path(pki, "dev-issuing-ca").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    crl = tmp_path / "revoked.crl"
    crl.write_bytes(build_crl(issuing, key, [xml_signing.serial_number], NOW))
    store = load_certstore([pki], crl_files=[crl])
    choice = by_user(store, NOW)[SUPPLIER]["5.4"]
    assert not choice.usable and "revoked" in (choice.problem or "")
    assert by_user(store, NOW)[SUPPLIER]["5.0"].usable
    row = next(
        r for r in certificate_rows(store, NOW) if r.serial == str(xml_signing.serial_number)
    )
    assert row.revoked and row.validity == "revoked" and row.role_name == "User XML signing"


def test_the_dcc_test_pki_rows_keep_every_serial_digit(shared_dir: Path) -> None:
    pki = shared_dir / "pki" / "dccboxed"
    store = load_certstore([pki], anchors=[pki / "Z1-issuing-ca.cert.pem"])
    rows = certificate_rows(store, dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert len(rows) == len(store)
    # 128-bit serials as decimal text: a JSON number would round them in the browser.
    assert "93850740595185438017946775787620281288" in {r.serial for r in rows}
    by_file = {r.file: r for r in rows}
    assert by_file["Z1-recovery-ds.cert.pem"].validity == "expired"  # October 2025
    assert by_file["xml-sign-00DB123456780004-ds.cert.pem"].validity == "valid"  # to 2118
    assert {r.trust for r in rows} == {"pinned", "chained"}
