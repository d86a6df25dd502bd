"""Certificate and key files on disk: strict reading, the store, a signer's key pair.

`read_certificate_file` reads one PEM or DER certificate, checked by `gateway.core.der`
before `cryptography` parses it; `load_certstore` builds a `CertStore` snapshot
(`gateway.core.certstore`) from the operator's certificate directories, anchors and CRLs;
`find_signing_key` pairs a signer's certificate with the private key stored beside it;
`load_response_signer` reads the DCC's own XML-signing key pair (`[trust]`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning

from gateway.core.certstore import (
    Anchor,
    CertificateRefused,
    CertStore,
    OrgCertificate,
    anchor,
    organisation_certificate,
    revoked_serials,
)
from gateway.core.config import StartupError
from gateway.core.der import DerError, check_certificate, pem_certificate
from gateway.core.log_fields import log_event
from gateway.core.signing import ResponseSigner
from mmc.identifiers import IdentifierError, parse_eui64

# The store's logger, as before this module was split from it, so log lines and
# operators' filters still name gateway.core.certstore.
logger = logging.getLogger("gateway.certstore")

MAX_CERT_FILE_BYTES: Final = 64 * 1024

# The reasons a refused file is logged and listed with (`CertStore.skipped`).
NOT_STRICT_DER: Final = "not strict DER"
PARSER_REFUSED: Final = "not a usable X.509 certificate: the parser refused it"

_CERT_SUFFIXES: Final = (".pem", ".crt", ".cer", ".der")
_NOT_CERTIFICATES: Final = (".key.pem", ".crl.pem")  # keys and CRLs beside certificates


class SigningKeyNotFoundError(LookupError):
    """No certificate and matching private key for the requested signer."""


# --------------------------------------------------------------------------- files


def read_certificate_file(path: Path) -> x509.Certificate:
    """PEM or DER, refused for reasons of our own, whatever `cryptography` version parses.

    `gateway.core.der` checks the bytes first and names the fault (the ``mdr-*`` test
    certificates: ECDSA with NULL parameters). Whatever passes it and is still refused
    or flagged by the library gets one reason of ours too, the library's words only as
    detail: cryptography's verdict and wording on the same bytes change between releases.
    """
    data = path.read_bytes()[: MAX_CERT_FILE_BYTES + 1]
    if len(data) > MAX_CERT_FILE_BYTES:
        raise CertificateRefused(f"larger than {MAX_CERT_FILE_BYTES} bytes")
    try:
        der = pem_certificate(data) if b"-----BEGIN" in data else data
        check_certificate(der)
    except DerError as exc:
        raise CertificateRefused(f"{NOT_STRICT_DER}: {exc}") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise CertificateRefused(f"{PARSER_REFUSED} ({exc})") from None
    for warning in caught:
        if issubclass(warning.category, CryptographyDeprecationWarning):
            raise CertificateRefused(f"{NOT_STRICT_DER}: flagged by the parser ({warning.message})")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return cert


def certificate_files(cert_dirs: Sequence[Path]) -> list[Path]:
    files = []
    for directory in cert_dirs:
        for path in sorted(directory.iterdir()):
            name = path.name
            if name.endswith(_NOT_CERTIFICATES) or not name.endswith(_CERT_SUFFIXES):
                continue
            if path.is_file():
                files.append(path)
    return files


# --------------------------------------------------------------------------- the store


def load_certstore(
    cert_dirs: Sequence[Path],
    anchors: Sequence[Path] = (),
    crl_files: Sequence[Path] = (),
) -> CertStore:
    """Read every certificate file in `cert_dirs` (not ``*.key.pem``) into a snapshot.

    A file that is not a usable Organisation certificate is skipped, logged and
    listed in `skipped`; the store still loads. An anchor or CRL that cannot be
    used raises `CertificateRefused`: the operator named it, so starting with
    less (or more) trust than configured would be worse than not starting.
    """
    skipped: list[tuple[Path, str]] = []
    anchor_list = [anchor(path, _read_anchor(path)) for path in anchors]
    loaded = []
    for path in certificate_files(cert_dirs):
        try:
            loaded.append(organisation_certificate(path, read_certificate_file(path), anchor_list))
        except (ValueError, OSError) as exc:  # CertificateRefused is a ValueError
            # cryptography parses extensions lazily and reports them as ValueError.
            _log_refusal(path, str(exc))
            skipped.append((path, str(exc)))
    revoked = _load_revocations(crl_files, anchor_list)
    store = CertStore(loaded, revoked, skipped)
    logger.info(
        "certificate store: %d organisation certificates, %d refused or skipped, "
        "%d anchors, %d revoked serials",
        len(store),
        len(store.skipped),
        len(anchor_list),
        len(revoked),
    )
    return store


def _read_anchor(path: Path) -> x509.Certificate:
    try:
        return read_certificate_file(path)
    except CertificateRefused as exc:  # the file as well as the fault, or no one can find it
        raise CertificateRefused(f"anchor {path}: {exc}") from None


def _log_refusal(path: Path, reason: str) -> None:
    skipped = reason.startswith("a CA certificate")
    log_event(
        logger,
        logging.DEBUG if skipped else logging.WARNING,
        "certificate skipped" if skipped else "certificate refused",
        "certificate %(file)s skipped: %(reason)s"
        if skipped
        else "certificate %(file)s refused: %(reason)s",
        file=str(path),
        reason=reason,
    )


def _load_revocations(
    crl_files: Sequence[Path], anchors: Sequence[Anchor]
) -> frozenset[tuple[str, int]]:
    revoked: set[tuple[str, int]] = set()
    for path in crl_files:
        revoked |= revoked_serials(path, path.read_bytes(), anchors)
    return frozenset(revoked)


# --------------------------------------------------------------------------- signing keys


def find_signing_key(
    dirs: Sequence[Path], eui64: str, role_code: str
) -> tuple[OrgCertificate, ec.EllipticCurvePrivateKey]:
    """The longest-lived `<name>.cert.pem` for this signer with its `<name>.key.pem`."""
    try:
        wanted = parse_eui64(eui64)
    except IdentifierError as exc:
        raise SigningKeyNotFoundError(str(exc)) from None
    store = load_certstore(dirs)
    for cert in store.find(wanted, role_code, "digitalSignature"):
        key = _matching_private_key(cert)
        if key is not None:
            return cert, key
    raise SigningKeyNotFoundError(f"no signing certificate and key for {wanted} role {role_code}")


def _matching_private_key(cert: OrgCertificate) -> ec.EllipticCurvePrivateKey | None:
    name = cert.path.name
    if not name.endswith(".cert.pem"):
        return None
    key_path = cert.path.with_name(name.removesuffix(".cert.pem") + ".key.pem")
    if not key_path.is_file():
        return None
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key().public_numbers() != cert.public_key.public_numbers():
        logger.warning("%s does not match %s", key_path, cert.path)
        return None
    return key


def load_response_signer(cert_path: Path, key_path: Path) -> ResponseSigner:
    """The DCC XML-signing certificate and its key (`trust.dcc_signing_*`), checked to match."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise StartupError(
            f"trust.dcc_signing_*: cannot load {cert_path} / {key_path}: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StartupError(f"trust.dcc_signing_key: {key_path} is not an EC private key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise StartupError("trust.dcc_signing_key does not match trust.dcc_signing_certificate")
    # RFC 4514 order ('CN=Z1,OU=07') is how the DCC writes X509IssuerName.
    return ResponseSigner(key, cert.issuer.rfc4514_string(), cert.serial_number)
