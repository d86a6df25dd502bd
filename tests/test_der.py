"""Our own strict DER check of certificates: the refusal reads the same under any
`cryptography` release (finding 13: a new release refused the mdr-* certificates with
other words, and the store's reason changed with it)."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.der import (
    MAX_NESTING,
    DerError,
    check_certificate,
    pem_certificate,
    read_elements,
)
from gateway.devkit.devpki import organisation_name
from gateway.stores.certfiles import load_certstore

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
NULL = b"\x05\x00"


def tlv(tag: int, content: bytes) -> bytes:
    """A DER element (the test's own encoder, so faults can be built on purpose)."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    octets = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


@pytest.fixture(scope="module")
def good() -> bytes:
    """A valid SMKI-shaped certificate, DER, as `cryptography` writes it."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(organisation_name("87", SUPPLIER, "supplier"))
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Z1")]))
        .public_key(key.public_key())
        .serial_number(0x4FBC525201A1D7586C1BC1C4734DEB9F)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def rebuild(der: bytes, edit: Callable[[list[bytes], list[bytes]], None]) -> bytes:
    """Re-encode a certificate after `edit(tbs_fields, certificate_parts)` changed it."""
    (certificate,) = read_elements(der)
    parts = [e.encoded for e in read_elements(certificate.content)]
    tbs = [e.encoded for e in read_elements(read_elements(parts[0])[0].content)]
    edit(tbs, parts)
    parts[0] = tlv(0x30, b"".join(tbs))
    return tlv(0x30, b"".join(parts))


def with_null_parameters(tbs: list[bytes], parts: list[bytes]) -> None:
    # As the DCC's mdr-* test certificates are: ecdsa-with-SHA256 followed by NULL.
    (algorithm,) = read_elements(parts[1])
    with_null = tlv(0x30, algorithm.content + NULL)
    tbs[2] = parts[1] = with_null


def test_a_good_certificate_passes(good: bytes) -> None:
    check_certificate(good)
    pem = x509.load_der_x509_certificate(good).public_bytes(serialization.Encoding.PEM)
    assert pem_certificate(b"issuer notes\n" + pem) == good


def test_every_dcc_test_certificate_passes_but_the_mdr_pair(shared_dir: Path) -> None:
    pki = shared_dir / "pki" / "dccboxed"
    refused = {}
    for path in sorted(pki.glob("*.cert.pem")):
        try:
            check_certificate(pem_certificate(path.read_bytes()))
        except DerError as exc:
            refused[path.name] = str(exc)
    assert refused == {
        "mdr-ds.cert.pem": "ECDSA signature algorithm with parameters (RFC 5758: absent)",
        "mdr-ka.cert.pem": "ECDSA signature algorithm with parameters (RFC 5758: absent)",
    }


def _insert_long_form_length(der: bytes) -> bytes:
    # The serial's length (16) written as 81 10: legal BER, not DER.
    (certificate,) = read_elements(der)
    tbs_field = read_elements(certificate.content)[0]
    serial = read_elements(tbs_field.content)[1].encoded
    longer = serial[:1] + b"\x81" + serial[1:]
    return rebuild(der, lambda tbs, parts: tbs.__setitem__(1, longer))


def _deeply_nested(der: bytes) -> bytes:
    nested = NULL
    for _ in range(MAX_NESTING + 2):
        nested = tlv(0x30, nested)
    return rebuild(der, lambda tbs, parts: tbs.append(tlv(0xA3, nested)))


@pytest.mark.parametrize(
    ("name", "spoil", "fault"),
    [
        ("NULL parameters", lambda d: rebuild(d, with_null_parameters), "with parameters"),
        ("long-form short length", _insert_long_form_length, "shortest form"),
        ("indefinite length", lambda d: d[:1] + b"\x80" + d[4:] + b"\x00\x00", "indefinite"),
        ("trailing bytes", lambda d: d + NULL, "2 top-level elements"),
        ("truncated", lambda d: d[:-5], "runs past the end"),
        (
            "serial with a needless 00",
            lambda d: rebuild(d, lambda tbs, parts: tbs.__setitem__(1, tlv(0x02, b"\x00\x01\x02"))),
            "serialNumber is not in its shortest form",
        ),
        (
            "algorithms differ",
            lambda d: rebuild(
                d,
                lambda tbs, parts: tbs.__setitem__(
                    2, tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d040303")))
                ),
            ),
            "differs",
        ),
        (
            "two parts",
            lambda d: tlv(0x30, b"".join(e.encoded for e in read_elements(d[4:])[:2])),
            "2 parts, not 3",
        ),
        ("nested too deep", _deeply_nested, f"more than {MAX_NESTING} deep"),
        ("high tag number", lambda d: b"\x1f\x01\x00", "high tag number"),
    ],
)
def test_each_fault_is_named(
    good: bytes, name: str, spoil: Callable[[bytes], bytes], fault: str
) -> None:
    with pytest.raises(DerError, match=fault):
        check_certificate(spoil(good))


@pytest.mark.parametrize(
    ("pem", "fault"),
    [
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no BEGIN/END"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "not base64"),
    ],
)
def test_pem_without_a_certificate_block_is_refused(pem: bytes, fault: str) -> None:
    with pytest.raises(DerError, match=fault):
        pem_certificate(pem)


def test_the_store_names_the_fault_itself(
    good: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Whatever this cryptography release does with such a certificate (older ones took
    # it with a warning, newer ones refuse it), the store's reason is ours.
    spoilt = rebuild(good, with_null_parameters)
    pem = (
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(spoilt)
        + b"-----END CERTIFICATE-----\n"
    )
    (tmp_path / "null-params.cert.pem").write_bytes(pem)
    (tmp_path / "good.cert.der").write_bytes(good)
    with caplog.at_level(logging.WARNING, logger="gateway.certstore"):
        store = load_certstore([tmp_path])
    assert [c.path.name for c in store] == ["good.cert.der"]
    assert store.skipped == [
        (
            tmp_path / "null-params.cert.pem",
            "not strict DER: ECDSA signature algorithm with parameters (RFC 5758: absent)",
        )
    ]
    assert any("null-params.cert.pem" in r.getMessage() for r in caplog.records)
