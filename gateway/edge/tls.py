"""Mutual TLS on the DUIS listener (DCCKI-style) and who a client certificate speaks for.

A client certificate's subject CN names a User ID (EUI-64, compact or hyphenated:
what the dev PKI issues). A party that sends for several User IDs over one TLS
identity lists them in `tls.identities` (CN -> User IDs). After the XML
signature has proved the originator, the pipeline refuses a request whose
originator the TLS identity may not speak for.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.core.config import StartupError, TlsConfig
from mmc.identifiers import Eui64, IdentifierError, parse_eui64


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.certificate, tls.private_key)
    context.load_verify_locations(tls.client_ca)
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
    return context


def load_server_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    """`server_context` for start-up: a file that cannot be used is a StartupError naming
    the files, before any port is bound (not a traceback from inside the listener)."""
    if tls is None:
        return None
    try:
        return server_context(tls)
    except OSError as exc:  # ssl.SSLError is one: a key that does not match, a bad PEM
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"tls: cannot load {tls.certificate} / {tls.private_key} / {tls.client_ca}: {reason}"
        ) from None


def client_identity(certificate_der: bytes | None) -> str | None:
    """The subject CN of a verified client certificate, or None without one."""
    if certificate_der is None:
        return None
    cert = x509.load_der_x509_certificate(certificate_der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def user_ids_for(identity: str, identities: Mapping[str, tuple[str, ...]]) -> frozenset[Eui64]:
    """The User IDs a TLS identity may send for: the configured list, else its own CN."""
    listed = identities.get(identity)
    if listed is not None:
        return frozenset(parse_eui64(u) for u in listed)
    compact = identity.replace("-", "")
    if len(compact) == 16:
        try:
            return frozenset({parse_eui64("-".join(compact[i : i + 2] for i in range(0, 16, 2)))})
        except IdentifierError:
            pass
    return frozenset()
