"""Why a TLS handshake failed, as a bounded reason for a log line and a metric label.

Read from the `ssl` exception's structured fields (the OpenSSL reason code and, for a
refused client certificate, the X.509 verification code), never from its message.
trio wraps handshake errors in BrokenResourceError; the `ssl` error is its cause.
"""

from __future__ import annotations

import enum
import ssl


class HandshakeFailure(enum.StrEnum):
    NO_CERTIFICATE = "no_certificate"
    EXPIRED = "certificate_expired"
    NOT_YET_VALID = "certificate_not_yet_valid"
    UNTRUSTED = "certificate_untrusted"  # self-signed, or an issuer we do not trust
    WRONG_PURPOSE = "certificate_wrong_purpose"  # e.g. no clientAuth extended key usage
    REVOKED = "certificate_revoked"
    BAD_CERTIFICATE = "certificate_invalid"  # any other verification failure
    NOT_TLS = "not_tls"  # plain HTTP (or other bytes) sent to the TLS port
    PROTOCOL = "protocol"  # no shared version or cipher, malformed records
    PEER_CLOSED = "peer_closed"  # the client went away mid-handshake
    TIMEOUT = "timeout"  # not finished by the request deadline


# X.509 verification result codes (OpenSSL x509_vfy.h), stable across versions.
_VERIFY_CODES = {
    9: HandshakeFailure.NOT_YET_VALID,  # X509_V_ERR_CERT_NOT_YET_VALID
    10: HandshakeFailure.EXPIRED,  # X509_V_ERR_CERT_HAS_EXPIRED
    2: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    18: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    23: HandshakeFailure.REVOKED,  # X509_V_ERR_CERT_REVOKED
    26: HandshakeFailure.WRONG_PURPOSE,  # X509_V_ERR_INVALID_PURPOSE
}
_SSL_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": HandshakeFailure.NO_CERTIFICATE,
    "HTTP_REQUEST": HandshakeFailure.NOT_TLS,
    "HTTPS_PROXY_REQUEST": HandshakeFailure.NOT_TLS,
    "WRONG_VERSION_NUMBER": HandshakeFailure.NOT_TLS,
    "UNEXPECTED_EOF_WHILE_READING": HandshakeFailure.PEER_CLOSED,
}


def handshake_failure(exc: BaseException) -> HandshakeFailure:
    """The reason for an exception raised by a server-side TLS handshake."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError | OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(cause.verify_code, HandshakeFailure.BAD_CERTIFICATE)
    if isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return HandshakeFailure.PEER_CLOSED
    if isinstance(cause, ssl.SSLError):
        return _SSL_REASONS.get(cause.reason or "", HandshakeFailure.PROTOCOL)
    if isinstance(cause, OSError):  # reset or closed underneath
        return HandshakeFailure.PEER_CLOSED
    # trio.BrokenResourceError without an ssl cause: the transport closed under it.
    return HandshakeFailure.PEER_CLOSED
