"""Which Users hold a certificate the pipeline would accept, per served version (pure)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.certstore import CertStore
from gateway.devpki import VALIDITY_DAYS, DevUser, build_crl, generate_dev_pki
from gateway.registry import User
from gateway.signing_readiness import UserReadiness, signing_readiness

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DCC = "90-B3-D5-1F-30-00-00-02"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
LOAD_CONTROLLER = "90-B3-D5-1F-30-01-00-08"
NOBODY = "90-B3-D5-1F-30-09-00-00"  # a User the PKI has no certificate for
RULES = {"5.0": frozenset({"02", "03", "7F"}), "5.1": frozenset({"87"})}


def user(user_id: str, party: str, roles: set[str], status: str = "active") -> User:
    return User(user_id=user_id, party=party, roles=frozenset(roles), status=status)  # type: ignore[arg-type]


USERS = [
    user(SUPPLIER, "supplier", {"IS"}),
    user(LOAD_CONTROLLER, "load-controller", {"OU"}),
    user(NOBODY, "nobody", {"GS"}),
    user(DCC, "dcc", set()),  # the DCC's own ID: sends no requests
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    generate_dev_pki(
        directory,
        [DevUser(SUPPLIER, "supplier", ("02",)), DevUser(LOAD_CONTROLLER, "lc", ("08",))],
        DCC,
        NOW,
    )
    return directory


def by_user(readiness: list[UserReadiness]) -> dict[str, dict[str, str]]:
    """User -> version -> 'OU nn' when usable, else the problem."""
    return {
        r.user_id: {
            v.version: f"OU {v.role_code}" if v.usable else f"no: {v.problem}" for v in r.versions
        }
        for r in readiness
    }


def test_each_user_gets_the_certificate_its_versions_rule_accepts(pki: Path) -> None:
    found = by_user(signing_readiness(CertStore.load([pki]), USERS, RULES, NOW))
    assert found[SUPPLIER] == {"5.0": "OU 02", "5.1": "OU 87"}
    assert found[LOAD_CONTROLLER]["5.1"] == "OU 87"
    # OU 08 signs nothing under 5.0's rule; what the User holds is named.
    assert found[LOAD_CONTROLLER]["5.0"].startswith(
        "no: no digital-signing certificate with OU 02, 03, 7F (holds: "
    )
    assert "08 digitalSignature" in found[LOAD_CONTROLLER]["5.0"]
    assert found[NOBODY] == {
        "5.0": f"no: no certificate for {NOBODY} (needs OU 02, 03, 7F)",
        "5.1": f"no: no certificate for {NOBODY} (needs OU 87)",
    }
    assert DCC not in found  # no roles: nothing to sign


def test_withdrawn_users_are_left_out(pki: Path) -> None:
    withdrawn = [user(SUPPLIER, "supplier", {"IS"}, status="withdrawn")]
    assert signing_readiness(CertStore.load([pki]), withdrawn, RULES, NOW) == []


def test_expired_and_not_yet_valid_certificates_are_named(pki: Path) -> None:
    store = CertStore.load([pki])
    later = NOW + dt.timedelta(days=VALIDITY_DAYS + 10)
    verdict = by_user(signing_readiness(store, USERS[:1], RULES, later))[SUPPLIER]
    assert verdict["5.1"].startswith("no: expired: expired ")
    earlier = NOW - dt.timedelta(days=30)
    verdict = by_user(signing_readiness(store, USERS[:1], RULES, earlier))[SUPPLIER]
    assert verdict["5.1"].startswith("no: not_yet_valid: valid from ")


def test_a_revoked_certificate_is_not_usable(pki: Path, tmp_path: Path) -> None:
    issuing = pki / "dev-issuing-ca.cert.pem"
    ca = x509.load_pem_x509_certificate(issuing.read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "dev-issuing-ca.key.pem").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    xml_signing = x509.load_pem_x509_certificate(
        (pki / f"xml-sign-{SUPPLIER.replace('-', '')}-ds.cert.pem").read_bytes()
    )
    crl = tmp_path / "revoked.crl.pem"
    crl.write_bytes(build_crl(ca, ca_key, [xml_signing.serial_number], NOW))
    store = CertStore.load([pki], anchors=[issuing], crl_files=[crl])
    verdict = by_user(signing_readiness(store, USERS[:1], RULES, NOW))[SUPPLIER]
    assert verdict == {
        "5.0": "OU 02",
        "5.1": f"no: revoked: serial {xml_signing.serial_number} is on a loaded CRL",
    }


def test_the_longest_lived_usable_certificate_is_reported(pki: Path, tmp_path: Path) -> None:
    store = CertStore.load([pki])
    ready = signing_readiness(store, USERS[:1], {"5.1": frozenset({"87"})}, NOW)[0]
    (verdict,) = ready.versions
    assert verdict.usable and verdict.not_after is not None
    assert verdict.not_after == max(
        c.not_after for c in store.find(SUPPLIER, "87", "digitalSignature")
    )
    assert ready.ready_everywhere
