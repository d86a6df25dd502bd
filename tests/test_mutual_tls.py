"""Mutual TLS on the DUIS listener: the client certificate limits whom a connection speaks for."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import msgspec
import pytest

from gateway.client import sign_request
from gateway.config import TlsConfig
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
