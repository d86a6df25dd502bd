"""Mutual TLS on the DUIS listener: the client certificate limits whom a connection speaks for."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import ssl
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.core.config import TlsConfig
from gateway.devkit.client import sign_request
from tests.harness import default_config, next_counter, response_code, running_gateway

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"


def client_context(tls_dir: Path, user_compact: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls_dir / "tls-ca.cert.pem"))
    if user_compact is not None:
        context.load_cert_chain(
            str(tls_dir / f"tls-client-{user_compact}.cert.pem"),
            str(tls_dir / f"tls-client-{user_compact}.key.pem"),
        )
    return context


@pytest.fixture
def tls_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = default_config(tmp_path)
    tls_dir = tmp_path / "pki" / "tls"
    tls = TlsConfig(
        certificate=str(tls_dir / "tls-server.cert.pem"),
        private_key=str(tls_dir / "tls-server.key.pem"),
        client_ca=str(tls_dir / "tls-ca.cert.pem"),
    )
    return msgspec.structs.replace(config, tls=tls), tls_dir


async def test_client_certificate_must_speak_for_the_originator(
    tls_config,
    tmp_path: Path,
    shared_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    config, tls_dir = tls_config
    xml = (shared_dir / INVENTORY).read_bytes()  # originator 90-B3-D5-1F-30-01-00-00
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        url = f"https://localhost:{gw.addresses.duis[1]}"
        headers = {"content-type": "application/xml"}

        signed, path = sign_request(xml, [tmp_path / "pki"], counter=next_counter())
        own = client_context(tls_dir, "90B3D51F30010000")
        async with httpx.AsyncClient(verify=own) as client:
            ok = await client.post(url + path, content=signed, headers=headers)
        assert ok.status_code == 200 and response_code(ok.content) == "I0"

        signed, path = sign_request(xml, [tmp_path / "pki"], counter=next_counter())
        other = client_context(tls_dir, "90B3D51F30020000")
        async with httpx.AsyncClient(verify=other) as client:
            refused = await client.post(url + path, content=signed, headers=headers)
        assert refused.status_code == 403 and "tls_identity_mismatch" in refused.text

        anonymous = client_context(tls_dir, None)
        async with httpx.AsyncClient(verify=anonymous) as client:
            with pytest.raises(httpx.HTTPError):
                await client.post(url + path, content=signed, headers=headers)


# ------------------------------------------------------------ refused handshakes


def write_client_pair(
    directory: Path,
    name: str,
    *,
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    valid: tuple[dt.datetime, dt.datetime],
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
) -> tuple[Path, Path]:
    """A client certificate signed by `signer` (None: self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "90B3D51F30010000")])
    issuer_cert, issuer_key = signer if signer is not None else (None, key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.cert.pem", directory / f"{name}.key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def refused_clients(tls_dir: Path, tmp_path: Path) -> dict[str, ssl.SSLContext | None]:
    """reason label -> a client context the gateway must refuse (None: plain HTTP)."""
    ca_cert = x509.load_pem_x509_certificate((tls_dir / "tls-ca.cert.pem").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (tls_dir / "tls-ca.key.pem").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    day = dt.timedelta(days=1)
    pairs = {
        "certificate_expired": write_client_pair(
            tmp_path, "expired", signer=(ca_cert, ca_key), valid=(now - 10 * day, now - day)
        ),
        "certificate_untrusted": write_client_pair(
            tmp_path, "self-signed", signer=None, valid=(now - day, now + day)
        ),
        "certificate_wrong_purpose": write_client_pair(
            tmp_path,
            "server-usage",
            signer=(ca_cert, ca_key),
            valid=(now - day, now + day),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        ),
    }
    clients: dict[str, ssl.SSLContext | None] = {"no_certificate": client_context(tls_dir, None)}
    for reason, (cert_file, key_file) in pairs.items():
        context = client_context(tls_dir, None)
        context.load_cert_chain(str(cert_file), str(key_file))
        clients[reason] = context
    clients["not_tls"] = None
    return clients


async def refused_handshake(port: int, context: ssl.SSLContext | None) -> str:
    """Try a TLS handshake with `context` (None: plain HTTP) on `port`, which must refuse
    it; returns our end's address, as the gateway logs the peer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    local = f"127.0.0.1:{stream.socket.getsockname()[1]}"
    with trio.fail_after(10):
        if context is None:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
            with contextlib.suppress(trio.BrokenResourceError):
                while await stream.receive_some(4096):
                    pass
        else:
            tls = trio.SSLStream(stream, context, server_hostname="localhost")
            # TLS 1.3 clients learn of the refusal on their first read.
            with pytest.raises(trio.BrokenResourceError):
                await tls.do_handshake()
                await tls.send_all(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
                await tls.receive_some(4096)
    await trio.aclose_forcefully(stream)
    return local


async def test_refused_handshakes_are_logged_and_counted_by_reason(
    tls_config,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="duisgw.server")
    config, tls_dir = tls_config
    clients = refused_clients(tls_dir, tmp_path)
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        port = gw.addresses.duis[1]
        for reason, context in clients.items():
            local = await refused_handshake(port, context)
            with trio.fail_after(10):
                while not gw.metrics.registry.get_sample_value(
                    "duisgw_tls_handshake_failures_total", {"reason": reason}
                ):
                    await trio.sleep(0.01)
            lines = [
                r for r in caplog.records if r.levelno == logging.INFO and local in r.getMessage()
            ]
            assert len(lines) == 1 and reason in lines[0].getMessage(), reason
            assert not lines[0].exc_info
        for reason in clients:
            assert (
                gw.metrics.registry.get_sample_value(
                    "duisgw_tls_handshake_failures_total", {"reason": reason}
                )
                == 1
            ), reason


async def test_the_handshake_counts_against_the_request_deadline(
    tls_config,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that connects and never starts TLS is cut off at request_timeout_seconds."""
    caplog.set_level(logging.INFO, logger="duisgw.server")
    config, _ = tls_config
    config = msgspec.structs.replace(
        config, limits=msgspec.structs.replace(config.limits, request_timeout_seconds=0.5)
    )
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.addresses.duis[1])
        with trio.fail_after(10):
            assert await stream.receive_some(4096) == b""
        await stream.aclose()
        sample = gw.metrics.registry.get_sample_value
        assert sample("duisgw_tls_handshake_failures_total", {"reason": "timeout"}) == 1
        assert sample("duisgw_client_timeouts_total", {"kind": "tls_handshake"}) == 1
    assert any("timeout" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
