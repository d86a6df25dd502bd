"""SMKI Organisation certificates: an immutable store, lookups and the signer checks.

The store is a snapshot built at start-up (or on reload, by building a new one and
swapping the reference): lookups on the request path are two dict reads.

Trust has two forms, because the DCC's own estate has both. Role certificates chain
to an issuing CA named by their Authority Key Identifier. The XML-signing
certificates (OU 87/89) carry the issuer *name* ``CN=Z1,OU=07`` but no AKI and are not
signed by that CA: the DCC's tools trust them because the operator lists them
(pinning). An anchor is therefore chosen by key identifier only, never by name.

This module works on parsed certificates and CRLs only. Reading them from files,
building a store from the operator's directories (`load_certstore`) and
`find_signing_key` (a signer's certificate with its private key) live in
`gateway.stores.certfiles`, which builds on this one.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from gateway.core.dn import normalise_dn
from gateway.core.log_fields import log_event
from mmc.identifiers import Eui64, eui64_from_bytes

# Named, not __name__: operators' log filters (and the tests) know it by this name.
logger = logging.getLogger("gateway.certstore")

SMKI_POLICY_OID: Final = x509.ObjectIdentifier("1.2.826.0.1.8641679.1.2.1.4")
ISSUING_CA_ROLE: Final = "07"
ROOT_CA_ROLE: Final = "00"

KeyUsageName = Literal["digitalSignature", "keyAgreement"]
Trust = Literal["pinned", "chained"]
CertificateReason = Literal[
    "unknown_certificate",
    "embedded_certificate_mismatch",
    "expired",
    "not_yet_valid",
    "revoked",
    "key_agreement_certificate",
    "wrong_key_usage",
    "wrong_role_for_version",
    "eui_mismatch",
    "missing_policy",
    "not_p256",
]

_ROLE_CODE_RE: Final = re.compile(r"[0-9A-Fa-f]{2}\Z")


class CertificateRefused(ValueError):
    """A certificate, anchor or CRL the operator listed cannot be used as one."""


class CertificateError(Exception):
    """The signer's certificate may not sign this request."""

    def __init__(self, reason: CertificateReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: CertificateReason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, eq=False)
class OrgCertificate:
    path: Path
    serial: int
    issuer: str  # normalised issuer DN, see gateway.core.dn.normalise_dn
    eui64: Eui64
    role_code: str  # two upper-case hex digits, the subject OU
    key_usage: KeyUsageName
    not_before: dt.datetime
    not_after: dt.datetime
    public_key: ec.EllipticCurvePublicKey
    trust: Trust
    has_policy: bool
    certificate: x509.Certificate = field(repr=False)


# --------------------------------------------------------------------------- one certificate


def _organisation_fields(cert: x509.Certificate) -> tuple[Eui64, str, KeyUsageName]:
    role_code = _role_code(cert)
    if role_code in (ISSUING_CA_ROLE, ROOT_CA_ROLE) or _is_ca(cert):
        raise CertificateRefused("a CA certificate, not an Organisation certificate")
    return _eui64(cert), role_code, _key_usage(cert)


def _role_code(cert: x509.Certificate) -> str:
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(units) != 1 or not isinstance(units[0].value, str):
        raise CertificateRefused("subject needs exactly one OU (the role code)")
    if not _ROLE_CODE_RE.match(units[0].value):
        raise CertificateRefused(f"subject OU {units[0].value[:20]!r} is not two hex digits")
    return units[0].value.upper()


def _eui64(cert: x509.Certificate) -> Eui64:
    ids = cert.subject.get_attributes_for_oid(NameOID.X500_UNIQUE_IDENTIFIER)
    if len(ids) != 1 or not isinstance(ids[0].value, bytes):
        raise CertificateRefused("subject needs exactly one x500UniqueIdentifier")
    raw = ids[0].value
    # cryptography hands back the BIT STRING content: the unused-bits octet, then the
    # EUI-64. Anything but 00 + 8 bytes is not an SMKI identifier.
    if len(raw) != 9 or raw[0] != 0:
        raise CertificateRefused(f"x500UniqueIdentifier is not 00 + EUI-64: {raw.hex()[:40]}")
    return eui64_from_bytes(raw[1:])


def _key_usage(cert: x509.Certificate) -> KeyUsageName:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateRefused("no key usage extension") from None
    if usage.digital_signature == usage.key_agreement:
        raise CertificateRefused("key usage must be digitalSignature xor keyAgreement")
    return "digitalSignature" if usage.digital_signature else "keyAgreement"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _has_policy(cert: x509.Certificate) -> bool:
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return False
    return any(p.policy_identifier == SMKI_POLICY_OID for p in policies)


def _key_id(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    if isinstance(value, x509.SubjectKeyIdentifier):
        return value.digest
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return value.key_identifier
    return None


def _ec_public_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertificateRefused(f"not an EC key ({type(key).__name__})")
    return key


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True, slots=True)
class Anchor:
    """An issuing CA the operator listed: role certificates chain to it by key id."""

    path: Path
    certificate: x509.Certificate
    key_id: bytes


class CertStore:
    """An immutable snapshot of Organisation certificates and revocations."""

    def __init__(
        self,
        certificates: Iterable[OrgCertificate],
        revoked: frozenset[tuple[str, int]],
        skipped: list[tuple[Path, str]],
    ) -> None:
        self._by_issuer_serial: dict[tuple[str, int], OrgCertificate] = {}
        self._by_der: dict[bytes, OrgCertificate] = {}
        self._by_identity: dict[tuple[Eui64, str, str], list[OrgCertificate]] = {}
        self._revoked = revoked
        self.skipped = skipped
        for cert in certificates:
            key = (cert.issuer, cert.serial)
            if key in self._by_issuer_serial:
                self._skip(
                    cert.path, f"duplicate issuer and serial of {self._by_issuer_serial[key].path}"
                )
                continue
            self._by_issuer_serial[key] = cert
            self._by_der[cert.certificate.public_bytes(Encoding.DER)] = cert
            self._by_identity.setdefault((cert.eui64, cert.role_code, cert.key_usage), []).append(
                cert
            )
        for group in self._by_identity.values():
            group.sort(key=lambda c: c.not_after, reverse=True)

    def _skip(self, path: Path, reason: str) -> None:
        log_event(
            logger,
            logging.WARNING,
            "certificate refused",
            "certificate %(file)s refused: %(reason)s",
            file=str(path),
            reason=reason,
        )
        self.skipped.append((path, reason))

    def __len__(self) -> int:
        return len(self._by_issuer_serial)

    def __iter__(self) -> Iterator[OrgCertificate]:
        return iter(self._by_issuer_serial.values())

    def lookup(self, issuer_name: str, serial: int) -> OrgCertificate | None:
        """The certificate a signature's X509IssuerSerial names, if the store has it."""
        try:
            issuer = normalise_dn(issuer_name)
        except ValueError:
            return None
        return self._by_issuer_serial.get((issuer, serial))

    def lookup_der(self, der: bytes) -> OrgCertificate | None:
        """The trusted certificate whose DER encoding is exactly `der`, if any."""
        return self._by_der.get(der)

    def find(self, eui64: Eui64, role_code: str, key_usage: KeyUsageName) -> list[OrgCertificate]:
        """Certificates for one party, role and usage, longest-lived first."""
        return list(self._by_identity.get((eui64.upper(), role_code.upper(), key_usage), ()))

    def is_revoked(self, cert: OrgCertificate) -> bool:
        return (cert.issuer, cert.serial) in self._revoked


def anchor(path: Path, cert: x509.Certificate) -> Anchor:
    """The operator's anchor read from `path`: a CA with a Subject Key Identifier."""
    key_id = _key_id(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if not _is_ca(cert) or key_id is None:
        raise CertificateRefused(f"anchor {path} needs basicConstraints CA and an SKI")
    return Anchor(path, cert, key_id)


def organisation_certificate(
    path: Path, cert: x509.Certificate, anchors: Sequence[Anchor]
) -> OrgCertificate:
    """An SMKI Organisation certificate read from `path`, or CertificateRefused."""
    eui64, role_code, key_usage = _organisation_fields(cert)
    public_key = _ec_public_key(cert)
    return OrgCertificate(
        path=path,
        serial=cert.serial_number,
        issuer=normalise_dn(cert.issuer.rfc4514_string()),
        eui64=eui64,
        role_code=role_code,
        key_usage=key_usage,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        public_key=public_key,
        trust=_trust(cert, anchors),
        has_policy=_has_policy(cert),
        certificate=cert,
    )


def _trust(cert: x509.Certificate, anchors: Sequence[Anchor]) -> Trust:
    if not anchors:
        return "pinned"  # the operator's list is the trust decision
    authority = _key_id(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if authority is None:
        return "pinned"  # as the DCC's XML-signing certificates are
    anchor = next((a for a in anchors if a.key_id == authority), None)
    if anchor is None:
        raise CertificateRefused(f"unknown issuer: no anchor has key id {authority.hex()}")
    try:
        cert.verify_directly_issued_by(anchor.certificate)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateRefused(f"does not chain to anchor {anchor.path.name}: {exc}") from None
    return "chained"


def revoked_serials(path: Path, data: bytes, anchors: Sequence[Anchor]) -> set[tuple[str, int]]:
    """(issuer, serial) of every certificate the CRL read from `path` revokes."""
    try:
        if b"-----BEGIN" in data:
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CertificateRefused(f"CRL {path} unreadable: {exc}") from None
    _check_crl_signature(path, crl, anchors)
    issuer = normalise_dn(crl.issuer.rfc4514_string())
    return {(issuer, entry.serial_number) for entry in crl}


def _check_crl_signature(
    path: Path, crl: x509.CertificateRevocationList, anchors: Sequence[Anchor]
) -> None:
    # A CRL can only take trust away, so one from the operator's files is taken as
    # listed; when its AKI names a configured anchor, that anchor must have signed it.
    try:
        authority = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return
    anchor = next((a for a in anchors if a.key_id == authority.key_identifier), None)
    if anchor is None:
        return
    anchor_key = anchor.certificate.public_key()
    if not isinstance(anchor_key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(
        anchor_key
    ):
        raise CertificateRefused(f"CRL {path} is not signed by anchor {anchor.path.name}")


# --------------------------------------------------------------------------- checks


def signer_certificate(
    store: CertStore, issuer_name: str | None, serial: int | None, embedded: bytes | None
) -> OrgCertificate:
    """The trusted certificate a signature's KeyInfo names (X509IssuerSerial, an embedded
    X509Certificate, or both), or CertificateError.

    An embedded certificate is never trusted for itself: it must be, byte for byte, one
    the store holds (with X509IssuerSerial, the one that names), so it names a
    certificate exactly as issuer and serial do and adds nothing else.
    """
    if issuer_name is not None and serial is not None:
        cert = store.lookup(issuer_name, serial)
        if cert is None:
            raise CertificateError(
                "unknown_certificate",
                f"no trusted certificate with issuer {issuer_name[:80]!r} serial {serial}",
            )
        if embedded is not None and store.lookup_der(embedded) is not cert:
            raise CertificateError(
                "embedded_certificate_mismatch",
                f"X509Certificate is not the trusted certificate serial {serial}",
            )
        return cert
    found = store.lookup_der(embedded) if embedded is not None else None
    if found is None:
        raise CertificateError(
            "unknown_certificate", "the embedded X509Certificate is not a trusted certificate"
        )
    return found


def check_signing_certificate(
    cert: OrgCertificate,
    *,
    at: dt.datetime,
    signer_eui64: str,
    allowed_role_codes: frozenset[str],
    store: CertStore,
) -> None:
    """May `cert` sign a request from `signer_eui64` under a version's role rule?

    Ordered from "wrong certificate altogether" to "right certificate, wrong time",
    so the reason names the most fundamental fault.
    """
    if cert.key_usage == "keyAgreement":
        raise CertificateError(
            "key_agreement_certificate", f"{cert.path.name} is a key agreement certificate"
        )
    if cert.key_usage != "digitalSignature":
        raise CertificateError("wrong_key_usage", f"{cert.path.name} is not for digital signature")
    if cert.role_code not in allowed_role_codes:
        allowed = ",".join(sorted(allowed_role_codes))
        raise CertificateError(
            "wrong_role_for_version",
            f"role {cert.role_code} may not sign here (allowed: {allowed})",
        )
    if cert.eui64 != signer_eui64.upper():
        raise CertificateError(
            "eui_mismatch", f"certificate belongs to {cert.eui64}, not {signer_eui64}"
        )
    if not cert.has_policy:
        raise CertificateError("missing_policy", "the SMKI certificate policy is absent")
    if not isinstance(cert.public_key.curve, ec.SECP256R1):
        raise CertificateError("not_p256", f"key is on {cert.public_key.curve.name}")
    if at < cert.not_before:
        raise CertificateError("not_yet_valid", f"valid from {cert.not_before.isoformat()}")
    if at > cert.not_after:
        raise CertificateError("expired", f"expired {cert.not_after.isoformat()}")
    if store.is_revoked(cert):
        raise CertificateError("revoked", f"serial {cert.serial} is on a loaded CRL")
