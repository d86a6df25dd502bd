"""Certificate and key files on disk: strict reading, and finding a signer's key pair.

`read_certificate_file` reads one PEM or DER certificate, checked by `gateway.der`
before `cryptography` parses it; `_certificate_files` lists the files in the store's directories
that are taken for certificates (not the keys and CRLs beside them).
`gateway.certstore` builds its snapshot from these two.
`find_signing_key` pairs a signer's certificate with the private key stored beside it.

`gateway.certstore` imports this module and re-exports the names its callers import
from it. `find_signing_key` picks the certificate through a `CertStore`, so it imports
that module inside the function: a top-level import back would be an import cycle.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning

from gateway.der import DerError, check_certificate, pem_certificate
from mmc.identifiers import IdentifierError, parse_eui64

if TYPE_CHECKING:
    from gateway.certstore import OrgCertificate

# The store's logger, as before this module was split from it, so log lines and
# operators' filters still name gateway.certstore.
logger = logging.getLogger("gateway.certstore")

MAX_CERT_FILE_BYTES: Final = 64 * 1024

# The reasons a refused file is logged and listed with (`CertStore.skipped`).
NOT_STRICT_DER: Final = "not strict DER"
PARSER_REFUSED: Final = "not a usable X.509 certificate: the parser refused it"

_CERT_SUFFIXES: Final = (".pem", ".crt", ".cer", ".der")
_NOT_CERTIFICATES: Final = (".key.pem", ".crl.pem")  # keys and CRLs beside certificates


class CertificateRefused(ValueError):
    """A file in the store's directories is not a usable Organisation certificate."""


class SigningKeyNotFoundError(LookupError):
    """No certificate and matching private key for the requested signer."""


# --------------------------------------------------------------------------- files


def read_certificate_file(path: Path) -> x509.Certificate:
    """PEM or DER, refused for reasons of our own, whatever `cryptography` version parses.

    `gateway.der` checks the bytes first and names the fault (the ``mdr-*`` test
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


def _certificate_files(cert_dirs: Sequence[Path]) -> list[Path]:
    files = []
    for directory in cert_dirs:
        for path in sorted(directory.iterdir()):
            name = path.name
            if name.endswith(_NOT_CERTIFICATES) or not name.endswith(_CERT_SUFFIXES):
                continue
            if path.is_file():
                files.append(path)
    return files


# --------------------------------------------------------------------------- signing keys


def find_signing_key(
    dirs: Sequence[Path], eui64: str, role_code: str
) -> tuple[OrgCertificate, ec.EllipticCurvePrivateKey]:
    """The longest-lived `<name>.cert.pem` for this signer with its `<name>.key.pem`."""
    from gateway.certstore import CertStore  # here, not at the top: see the module docstring

    try:
        wanted = parse_eui64(eui64)
    except IdentifierError as exc:
        raise SigningKeyNotFoundError(str(exc)) from None
    store = CertStore.load(dirs)
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
