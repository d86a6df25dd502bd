"""A real gateway for the techspec tests, and the DUIS requests they send it.

The dev PKI is issued on 1 January 2016, so an injected clock can walk the consultation's
dates (2016-2020) and the gateway still accepts the Users' signatures. Every request is
checked against its version's XSD (`duis.xsd_dir`), and every answer the tests read is
checked to be valid under that XSD and signed with the DCC's key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import trio
from cryptography import x509
from lxml import etree

from gateway.core.clock import FixedClock
from gateway.core.ingest import SchemaSet
from gateway.core.signature import parse_signature, verify_signature
from gateway.devkit.default import ensure_default_state
from gateway.stores.operator_files import load_schemas
from mmc.catalogue import load_catalogue
from tests.harness import Gateway, default_config, running_gateway

SR = "http://www.dccinterface.co.uk/ServiceUserGateway"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
DCC = "90-B3-D5-1F-30-00-00-02"
VERSIONS = ("5.0", "5.1", "5.3", "5.4")
PKI_ISSUED = dt.datetime(2016, 1, 1, tzinfo=dt.UTC)
DSP_CERT = "pki/dsp-xml-sign-90B3D51F30000002-ds.cert.pem"
TOML = {"content-type": "application/toml"}
DELIVERY_WAIT_SECONDS = 10.0  # the dev inbox receives a stored alert well within this


def at(text: str) -> dt.datetime:
    """Noon (UTC) on a day written as the consultation writes it: '12/12/17'."""
    day = dt.datetime.strptime(text, "%d/%m/%y")
    return day.replace(hour=12, tzinfo=dt.UTC)


def device(device_id: str, device_type: str, status: str = "commissioned", **fields: object) -> str:
    """One [[devices]] entry, the supplier eligible for it (IS, or GS for gas)."""
    role = "GS" if device_type in ("GSME", "GPF") else "IS"
    lines = [
        "[[devices]]",
        f'device_id = "{device_id}"',
        f'device_type = "{device_type}"',
        f'status = "{status}"',
    ]
    lines += [f"{name} = {_toml(value)}" for name, value in fields.items()]
    lines.append(
        f'eligibility = [{{ role = "{role}", user_id = "{SUPPLIER}", '
        "effective_from = 2015-01-01T00:00:00Z }]"
    )
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


def schemas(shared: Path) -> SchemaSet:
    return load_schemas(shared / "duis" / "xsd", {v: load_catalogue(v).xsd_file for v in VERSIONS})


class Answers:
    """Reads a gateway's answers, checking each is valid under its version and signed."""

    def __init__(self, shared: Path, state_dir: Path) -> None:
        self._schemas = schemas(shared)
        pem = (state_dir / DSP_CERT).read_bytes()
        self._dcc_key = x509.load_pem_x509_certificate(pem).public_key()

    def signed(self, document: bytes) -> etree._Element:
        root = etree.fromstring(document)
        error = self._schemas.error(str(root.get("schemaVersion")), root)
        assert error is None, (error, document)
        verify_signature(root, parse_signature(root), self._dcc_key)  # type: ignore[arg-type]
        return root

    def response(self, response: httpx.Response) -> tuple[str, etree._Element]:
        """(ResponseCode, document) of a signed Service Response on the HTTP exchange."""
        assert response.status_code == 200, response.text
        root = self.signed(response.content)
        return str(root.findtext(f"{{{SR}}}Header/{{{SR}}}ResponseCode")), root


def request(
    variant: str,
    body: str,
    *,
    reference: str | None = None,
    version: str = "5.4",
    command_variant: int = 8,
    target: str = DCC,
) -> bytes:
    """An unsigned DUIS request (the harness signs it as the supplier)."""
    return (
        f'<sr:Request xmlns:sr="{SR}" schemaVersion="{version}"><sr:Header>'
        f"<sr:RequestID>{SUPPLIER}:{target}:1</sr:RequestID>"
        f"<sr:CommandVariant>{command_variant}</sr:CommandVariant>"
        f"<sr:ServiceReference>{reference or variant}</sr:ServiceReference>"
        f"<sr:ServiceReferenceVariant>{variant}</sr:ServiceReferenceVariant>"
        f"</sr:Header><sr:Body>{body}</sr:Body></sr:Request>"
    ).encode()


@asynccontextmanager
async def techspec_gateway(
    state_dir: Path, shared: Path, inventory: str, clock: FixedClock, **changes: object
) -> AsyncIterator[Gateway]:
    ensure_default_state(state_dir, PKI_ISSUED)
    (state_dir / "inventory.toml").write_text(inventory)
    config = default_config(state_dir, **changes)
    duis = msgspec.structs.replace(config.duis, xsd_dir=str(shared / "duis" / "xsd"))
    config = msgspec.structs.replace(config, duis=duis)
    async with running_gateway(config, [state_dir / "pki"], clock=clock) as gateway:
        yield gateway


async def load(gateway: Gateway, kind: str, document: bytes, reason: str) -> dict[str, object]:
    """PUT tables or coverage through the admin API, as an operator does."""
    response = await gateway.admin.put(
        f"/admin/techspec/{kind}", content=document, params={"reason": reason}, headers=TOML
    )
    assert response.status_code == 200, response.text
    loaded: dict[str, object] = response.json()
    return loaded


async def inbox_alerts(gateway: Gateway, count: int) -> list[dict[str, str]]:
    """The supplier's DCC alerts in the dev inbox, once `count` have arrived."""
    with trio.fail_after(DELIVERY_WAIT_SECONDS):
        while True:
            messages = (await gateway.admin.get("/inbox", params={"user_id": SUPPLIER})).json()
            alerts: list[dict[str, str]] = [m for m in messages if m["kind"] == "alert"]
            if len(alerts) >= count:
                return alerts
            await trio.sleep(0.02)
