"""Requests the DCC itself originates: signed with its XML-signing key (OU 89), the User
checks skipped, the device checks kept, CV 1 and the configured SRVs only, answered to
the DCC's own response_url (the dev inbox in the embedded default)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio

from gateway.core.ingest import SIGNATURE_TAG, parse_xml
from gateway.core.signing import sign_document
from gateway.devkit.client import prepare, sign_request
from gateway.devkit.estate import DCC_EUI64
from gateway.stores.certfiles import find_signing_key
from tests.harness import Gateway, default_config, next_counter, response_code, running_gateway

REQUESTS = "duis/samples/requests"
READ_FIRMWARE = "ECS52_11.2_SUCCESS_REQUEST_DUIS.XML"  # 11.2 to the ESME, CV 1
READ_REGISTERS = "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"  # 4.1.1, not the DCC's


async def as_dcc(gw: Gateway, xml: bytes, role: str | None = None) -> tuple[int, str, str]:
    """Post `xml` as the DCC (signed with its OU 89 key, or `role`): status, code, text."""
    if role is None:
        signed, path = sign_request(xml, gw.key_dirs, counter=next_counter(), as_user=DCC_EUI64)
    else:
        root, _ = prepare(xml, counter=next_counter(), originator=DCC_EUI64)
        cert, key = find_signing_key(gw.key_dirs, DCC_EUI64, role)
        signed = sign_document(root, key, cert.certificate.issuer.rfc4514_string(), cert.serial)
        path = "/api/v1/serviceS"
    response = await gw.post(path, signed)
    code = response_code(response.content) if response.status_code == 200 else ""
    return response.status_code, code, response.text


async def test_a_dcc_originated_read_is_answered_to_the_dcc(
    tmp_path: Path, shared_dir: Path
) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        xml = (shared_dir / REQUESTS / READ_FIRMWARE).read_bytes()
        signed, path = sign_request(xml, gw.key_dirs, counter=next_counter(), as_user=DCC_EUI64)
        serial = parse_xml(signed).findtext(f"{SIGNATURE_TAG}//{{*}}X509SerialNumber")
        dsp, _ = find_signing_key(gw.key_dirs, DCC_EUI64, "89")
        assert serial == str(dsp.serial)  # `duisgw send` signs as the DCC's tool does
        response = await gw.post(path, signed)
        assert response.status_code == 200 and response_code(response.content) == "I99"
        with trio.fail_after(20):
            while True:
                inbox = (await gw.admin.get("/inbox", params={"user_id": DCC_EUI64})).json()
                if inbox:
                    break
                await trio.sleep(0.02)
        [message] = inbox
        assert message["response_code"] == "I0"
        assert message["request_id"].startswith(f"{DCC_EUI64}:00-DB-12-34-56-78-90-A0:")

        # Not an SRV the DCC may originate (default: 6.24.1, 11.2, 8.12.2): E2.
        registers = (shared_dir / REQUESTS / READ_REGISTERS).read_bytes()
        assert (await as_dcc(gw, registers))[:2] == (200, "E2")
        # Only its XML-signing certificate speaks for the DCC: not its OU 87 one.
        status, _, text = await as_dcc(gw, xml, role="87")
        assert status == 403 and "wrong_role_for_version" in text
        # The device checks stay: an 11.2 to a device not in the inventory is E19.
        unknown = xml.replace(b"00-DB-12-34-56-78-90-A0", b"00-DB-12-34-56-78-90-FE")
        assert (await as_dcc(gw, unknown))[:2] == (200, "E19")
        # CV 1 only by default.
        cv3 = xml.replace(b"<sr:CommandVariant>1<", b"<sr:CommandVariant>3<")
        assert (await as_dcc(gw, cv3))[:2] == (200, "E12")


async def test_with_the_rule_off_the_dcc_is_no_originator(tmp_path: Path, shared_dir: Path) -> None:
    config = default_config(tmp_path)
    duis = msgspec.structs.replace(
        config.duis,
        dcc_originated=msgspec.structs.replace(config.duis.dcc_originated, enabled=False),
    )
    config = msgspec.structs.replace(config, duis=duis)
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        xml = (shared_dir / REQUESTS / READ_FIRMWARE).read_bytes()
        status, _, text = await as_dcc(gw, xml)  # OU 89: a User signer rule refuses it
        assert status == 403 and "wrong_role_for_version" in text
        assert (await as_dcc(gw, xml, role="87"))[:2] == (200, "E1")  # no User Role
