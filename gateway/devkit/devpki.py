"""A development PKI that follows the SMKI Organisation certificate profile.

Written in the layout of the DCC's test PKI (``<name>.cert.pem`` beside an unencrypted
PKCS#8 ``<name>.key.pem``) so `CertStore` and `find_signing_key` read it as they read
the real one. Unlike the DCC's XML-signing certificates, every leaf here carries an
Authority Key Identifier, so with the issuing CA as anchor everything chains.

Also TLS material for mutual TLS on a developer's machine, in ``tls/`` beneath: its
own CA, a server certificate for localhost/127.0.0.1 and one client certificate per
User (CN = the User's EUI-64 in compact form).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.core.certstore import SMKI_POLICY_OID
from mmc.identifiers import Eui64, eui64_compact, eui64_to_bytes, parse_eui64

VALIDITY_DAYS: Final = 3652  # ten years
BACKDATE: Final = dt.timedelta(days=1)  # tolerate clock skew on first use
USER_XML_SIGNING_ROLE: Final = "87"
DCC_XML_SIGNING_ROLE: Final = "89"

ROOT_NAME: Final = "dev-root-ca"
ISSUING_NAME: Final = "dev-issuing-ca"
TLS_CA_NAME: Final = "tls-ca"
TLS_SERVER_NAME: Final = "tls-server"
TLS_SUBDIRECTORY: Final = "tls"
_ROLE_CODE_RE: Final = re.compile(r"[0-9A-F]{2}\Z")


@dataclass(frozen=True, slots=True)
class DevUser:
    eui64: str
    label: str  # file-name friendly, e.g. "supplier"
    role_codes: tuple[str, ...]  # e.g. ("02",)


@dataclass(frozen=True, slots=True)
class DevPkiPaths:
    directory: Path
    root_ca: Path
    issuing_ca: Path
    dcc_xml_signing: Path  # certificate; the key sits beside it as .key.pem
    user_xml_signing: dict[Eui64, Path]
    tls_ca: Path
    tls_server_cert: Path
    tls_server_key: Path
    tls_client: dict[Eui64, tuple[Path, Path]]  # (cert, key) per User EUI-64


@dataclass(frozen=True, slots=True)
class _Issuer:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def cert_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.cert.pem"


def key_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.key.pem"


def generate_dev_pki(
    directory: Path, users: Sequence[DevUser], dcc_eui64: str, now: dt.datetime
) -> DevPkiPaths:
    """Create what is missing; leave every existing file (and its CA) as it is.

    Idempotent by file: the CAs are reused when present, and a leaf is issued only
    if its certificate file does not exist yet, so adding a User later keeps the
    certificates already handed out.
    """
    directory.mkdir(parents=True, exist_ok=True)
    root = _ensure_ca(directory, ROOT_NAME, "DEVROOT", "00", None, now)
    issuing = _ensure_ca(directory, ISSUING_NAME, "DEVZ1", "07", root, now)
    dcc = parse_eui64(dcc_eui64)
    dcc_name = f"dsp-xml-sign-{eui64_compact(dcc)}-ds"
    _ensure_org_leaf(directory, dcc_name, issuing, dcc, DCC_XML_SIGNING_ROLE, True, None, now)

    # TLS material lives apart so the SMKI directory holds only SMKI certificates.
    tls_dir = directory / TLS_SUBDIRECTORY
    tls_dir.mkdir(exist_ok=True)
    tls_ca = _ensure_tls_ca(tls_dir, now)
    _ensure_tls_leaf(tls_dir, TLS_SERVER_NAME, tls_ca, "localhost", server=True, now=now)
    user_xml: dict[Eui64, Path] = {}
    tls_client: dict[Eui64, tuple[Path, Path]] = {}
    for user in users:
        eui = parse_eui64(user.eui64)
        user_xml[eui] = _ensure_user(directory, user, eui, issuing, now)
        client = f"tls-client-{eui64_compact(eui)}"
        _ensure_tls_leaf(tls_dir, client, tls_ca, eui64_compact(eui), server=False, now=now)
        tls_client[eui] = (cert_path(tls_dir, client), key_path(tls_dir, client))
    return DevPkiPaths(
        directory=directory,
        root_ca=cert_path(directory, ROOT_NAME),
        issuing_ca=cert_path(directory, ISSUING_NAME),
        dcc_xml_signing=cert_path(directory, dcc_name),
        user_xml_signing=user_xml,
        tls_ca=cert_path(tls_dir, TLS_CA_NAME),
        tls_server_cert=cert_path(tls_dir, TLS_SERVER_NAME),
        tls_server_key=key_path(tls_dir, TLS_SERVER_NAME),
        tls_client=tls_client,
    )


def _ensure_user(
    directory: Path, user: DevUser, eui: Eui64, issuing: _Issuer, now: dt.datetime
) -> Path:
    """The User's XML-signing certificate, and a ds/ka pair per role code."""
    name = f"xml-sign-{eui64_compact(eui)}-ds"
    _ensure_org_leaf(directory, name, issuing, eui, USER_XML_SIGNING_ROLE, True, None, now)
    for role in user.role_codes:
        code = role.upper()
        if not _ROLE_CODE_RE.match(code):
            raise ValueError(f"role code {role!r} is not two hex digits")
        for suffix, signing in (("ds", True), ("ka", False)):
            leaf = f"{user.label}-{code}-{suffix}"
            _ensure_org_leaf(directory, leaf, issuing, eui, code, signing, user.label, now)
    return cert_path(directory, name)


def build_crl(
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    revoked_serials: Sequence[int],
    now: dt.datetime,
) -> bytes:
    """A PEM CRL from a dev CA (tests and operators rehearsing revocation)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + dt.timedelta(days=30))
        .add_extension(_aki(issuer_cert.public_key()), critical=False)
    )
    for serial in revoked_serials:
        entry = (
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - BACKDATE)
        )
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(issuer_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------- SMKI


def ca_name(role_code: str, common_name: str) -> x509.Name:
    """OU then CN, as the DCC's CA names are encoded (RFC 4514 text "CN=Z1,OU=07")."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role_code),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def organisation_name(role_code: str, eui64: Eui64, common_name: str | None = None) -> x509.Name:
    """[CN,] OU, x500UniqueIdentifier: the order of the DCC's Organisation certificates."""
    attributes: list[x509.NameAttribute[str] | x509.NameAttribute[bytes]] = []
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role_code))
    attributes.append(x500_unique_identifier(eui64))
    return x509.Name(attributes)


def x500_unique_identifier(eui64: Eui64) -> x509.NameAttribute[bytes]:
    # cryptography writes a BitString value verbatim as the BIT STRING content, so
    # the unused-bits octet (00) must lead; the bare 8 bytes make a certificate
    # OpenSSL cannot read. _ASN1Type is private but is the documented way in.
    return x509.NameAttribute(
        NameOID.X500_UNIQUE_IDENTIFIER, b"\x00" + eui64_to_bytes(eui64), _type=_ASN1Type.BitString
    )


def _ensure_ca(
    directory: Path,
    name: str,
    common_name: str,
    role_code: str,
    parent: _Issuer | None,
    now: dt.datetime,
) -> _Issuer:
    existing = _read_pair(directory, name)
    if existing is not None:
        return existing
    key = ec.generate_private_key(ec.SECP256R1())
    subject = ca_name(role_code, common_name)
    # A root is its own issuer.
    issuer_name = parent.certificate.subject if parent is not None else subject
    signing_key = parent.key if parent is not None else key
    builder = (
        _base_builder(subject, issuer_name, key, now)
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=0 if parent else None), critical=True
        )
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(_policies(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if parent is not None:
        builder = builder.add_extension(_aki(parent.key.public_key()), critical=False)
    cert = builder.sign(signing_key, hashes.SHA256())
    _write_pair(directory, name, cert, key)
    return _Issuer(cert, key)


def _ensure_org_leaf(
    directory: Path,
    name: str,
    issuer: _Issuer,
    eui64: Eui64,
    role_code: str,
    signing: bool,
    common_name: str | None,
    now: dt.datetime,
) -> None:
    if cert_path(directory, name).exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _base_builder(
            organisation_name(role_code, eui64, common_name), issuer.certificate.subject, key, now
        )
        .add_extension(_usage(digital_signature=signing, key_agreement=not signing), critical=True)
        .add_extension(_policies(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_aki(issuer.key.public_key()), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    _write_pair(directory, name, cert, key)


def _base_builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
    )


def _usage(
    *, digital_signature: bool = False, key_agreement: bool = False, cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _policies() -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(SMKI_POLICY_OID, None)])


def _aki(issuer_public_key: object) -> x509.AuthorityKeyIdentifier:
    assert isinstance(issuer_public_key, ec.EllipticCurvePublicKey)
    ski = x509.SubjectKeyIdentifier.from_public_key(issuer_public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


# --------------------------------------------------------------------------- TLS


def _ensure_tls_ca(directory: Path, now: dt.datetime) -> _Issuer:
    existing = _read_pair(directory, TLS_CA_NAME)
    if existing is not None:
        return existing
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duis-gateway dev TLS CA")])
    cert = (
        _base_builder(subject, subject, key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(directory, TLS_CA_NAME, cert, key)
    return _Issuer(cert, key)


def _ensure_tls_leaf(
    directory: Path, name: str, ca: _Issuer, common_name: str, *, server: bool, now: dt.datetime
) -> None:
    if cert_path(directory, name).exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _base_builder(subject, ca.certificate.subject, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(_aki(ca.key.public_key()), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    _write_pair(directory, name, builder.sign(ca.key, hashes.SHA256()), key)


# --------------------------------------------------------------------------- files


def _write_pair(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Key first and owner-only: a certificate without its key is an unusable leaf,
    # a key readable by others is a leak even on a dev box.
    fd = os.open(key_path(directory, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    cert_path(directory, name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _read_pair(directory: Path, name: str) -> _Issuer | None:
    if not cert_path(directory, name).exists():
        return None
    cert = x509.load_pem_x509_certificate(cert_path(directory, name).read_bytes())
    key = serialization.load_pem_private_key(key_path(directory, name).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path(directory, name)} is not an EC private key")
    return _Issuer(cert, key)
