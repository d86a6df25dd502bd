"""Hostile and malformed input through a real gateway: each gets its documented refusal."""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest
import trio
from lxml import etree

from gateway.core.signing import sign_document
from gateway.stores.certfiles import find_signing_key
from tests.harness import default_config, next_counter, response_code, running_gateway

SAMPLES = "duis/samples/requests"
INVENTORY = "8.2_READ_INVENTORY_REQUEST_DUIS.XML"


def sample(shared: Path, name: str) -> bytes:
    return (shared / SAMPLES / name).read_bytes()


@pytest.fixture
def key_dirs(tmp_path: Path) -> list[Path]:
    return [tmp_path / "pki"]


async def test_refusals_name_their_reason(
    tmp_path: Path, shared_dir: Path, key_dirs: list[Path]
) -> None:
    config = default_config(tmp_path)
    async with running_gateway(config, key_dirs) as gw:
        xxe = (shared_dir / "duis/samples/hostile/duis-xxe.xml").read_bytes()
        r = await gw.post("/api/v1/serviceS", xxe)
        assert r.status_code == 400 and "dtd_forbidden" in r.text

        r = await gw.post("/api/v1/serviceS", b"<not xml")
        assert r.status_code == 400 and "malformed_xml" in r.text

        r = await gw.post("/api/v1/serviceS", b"<a/>", content_type="application/json")
        assert r.status_code == 415

        r = await gw.client.get(gw.url + "/api/v1/serviceS")
        assert r.status_code == 405

        r = await gw.post("/api/v1/serviceX", b"<a/>")
        assert r.status_code == 404

        r = await gw.post("/api/v1/serviceD", b"<a>" + b"x" * 2_000_000 + b"</a>")
        assert r.status_code == 413

        unsigned = sample(shared_dir, INVENTORY)  # placeholder signature
        r = await gw.post("/api/v1/serviceD", unsigned)
        assert r.status_code == 403, r.text

        future = sample(shared_dir, INVENTORY).replace(
            b'schemaVersion="5.4"', b'schemaVersion="6.0"'
        )
        r = await gw.send(future)
        assert r.status_code == 400 and "unsupported_version" in r.text
        old = sample(shared_dir, INVENTORY).replace(b'schemaVersion="5.4"', b'schemaVersion="4.0"')
        r = await gw.send(old)
        assert r.status_code == 400 and "unsupported_version" in r.text

        metrics = (await gw.client.get(gw.admin_url + "/metrics")).text
        assert 'duisgw_refusals_total{reason="dtd_forbidden",stage="ingest"} 1.0' in metrics
        for gauge in ("duisgw_replay_waiting", "duisgw_jobs_pending", "duisgw_outbox_pending"):
            assert f"\n{gauge} 0.0" in metrics, gauge


async def test_tampered_request_is_refused_for_its_digest(
    tmp_path: Path, shared_dir: Path, key_dirs: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.devkit.client import sign_request

    caplog.set_level(logging.INFO, logger="duisgw.pipeline")
    async with running_gateway(default_config(tmp_path), key_dirs) as gw:
        counter = next_counter()
        signed, path = sign_request(sample(shared_dir, INVENTORY), key_dirs, counter=counter)
        tampered = signed.replace(b"90-A2</sr:DeviceID>", b"90-A3</sr:DeviceID>")
        assert tampered != signed
        r = await gw.post(path, tampered)
        assert r.status_code == 403 and "digest_mismatch" in r.text
    # Logged once, with the RequestID, the certificate serial and the reason.
    lines = [rec.getMessage() for rec in caplog.records if "digest_mismatch" in rec.getMessage()]
    assert len(lines) == 1
    assert f"request_id=90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:{counter}" in lines[0]
    assert "serial " in lines[0]


async def test_replayed_counter_is_refused(
    tmp_path: Path, shared_dir: Path, key_dirs: list[Path]
) -> None:
    async with running_gateway(default_config(tmp_path), key_dirs) as gw:
        counter = next_counter()
        first = await gw.send(sample(shared_dir, INVENTORY), counter=counter)
        assert response_code(first.content) == "I0"
        again = await gw.send(sample(shared_dir, INVENTORY), counter=counter)
        assert response_code(again.content) == "E1"


async def test_schema_invalid_request_is_refused_when_xsds_are_configured(
    tmp_path: Path, shared_dir: Path, key_dirs: list[Path]
) -> None:
    config = default_config(tmp_path)
    config = msgspec.structs.replace(
        config, duis=msgspec.structs.replace(config.duis, xsd_dir=str(shared_dir / "duis/xsd"))
    )
    hostile = (
        shared_dir / "duis/samples/hostile/ECS17b_4.1.1_REQUEST-schema-invalid.XML"
    ).read_bytes()
    # Its RequestID is malformed ("::1000"), so sign it as it stands, not via `send`.
    root = etree.fromstring(hostile)
    for signature in root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        root.remove(signature)
    cert, key = find_signing_key(key_dirs, "90-B3-D5-1F-30-01-00-00", "87")
    signed = sign_document(root, key, cert.certificate.issuer.rfc4514_string(), cert.serial)
    async with running_gateway(config, key_dirs) as gw:
        r = await gw.post("/api/v1/serviceS", signed)
        assert r.status_code == 400 and "schema_invalid" in r.text, r.text
        ok = await gw.send(sample(shared_dir, INVENTORY))
        assert ok.status_code == 200 and response_code(ok.content) == "I0"


async def test_slow_client_is_cut_off(
    tmp_path: Path, key_dirs: list[Path], autojump_clock: trio.abc.Clock
) -> None:
    config = default_config(tmp_path)
    config = msgspec.structs.replace(
        config, limits=msgspec.structs.replace(config.limits, request_timeout_seconds=2.0)
    )
    async with running_gateway(config, key_dirs) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.addresses.duis[1])
        await stream.send_all(b"POST /api/v1/serviceS HTTP/1.1\r\nHost: x\r\nContent-Le")
        started = trio.current_time()
        data = b""
        while chunk := await stream.receive_some(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408")
        assert trio.current_time() - started >= 2.0
        await stream.aclose()
