"""DUIS 5.0, 5.1, 5.3 and 5.4 live side by side: each request is read under its own version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest
from lxml import etree

from gateway.core.ingest import SchemaSet, decode_header, parse_xml
from gateway.core.signing import sign_document
from gateway.core.versions import VersionRegistry, normalise_version
from gateway.devkit.client import endpoint_path, prepare
from gateway.stores.certfiles import find_signing_key
from gateway.stores.operator_files import load_schemas
from mmc.catalogue import available_versions, load_catalogue
from tests.harness import default_config, next_counter, response_code, running_gateway

VERSIONS = ("5.0", "5.1", "5.3", "5.4")
SUPPLIER = "90-B3-D5-1F-30-01-00-00"


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    return load_schemas(
        shared_dir / "duis" / "xsd", {v: load_catalogue(v).xsd_file for v in VERSIONS}
    )


def templates(shared: Path) -> list[Path]:
    # The one 5.2 sample is about version refusal, covered elsewhere.
    return [
        p
        for p in sorted((shared / "duis" / "samples" / "requests").glob("*.XML"))
        if b'schemaVersion="5.4"' in p.read_bytes()
    ]


def as_version(xml: bytes, version: str) -> bytes:
    return xml.replace(b'schemaVersion="5.4"', f'schemaVersion="{version}"'.encode())


def sign_with_role(xml: bytes, key_dirs: list[Path], role_code: str) -> tuple[bytes, str]:
    root, request_id = prepare(xml, counter=next_counter())
    cert, key = find_signing_key(key_dirs, request_id.originator, role_code)
    header = decode_header(root)
    signed = sign_document(root, key, cert.certificate.issuer.rfc4514_string(), cert.serial)
    return signed, endpoint_path(
        header.schema_version, header.service_reference_variant, header.command_variant
    )


def expected(cv: int) -> set[str]:
    if cv in (1, 3, 5, 7):
        return {"I99"}
    if cv == 8:
        return {"I0"}
    return {"I0", "E20", "E21"}


async def test_every_sample_under_every_version(
    tmp_path: Path, shared_dir: Path, schemas: SchemaSet
) -> None:
    key_dirs = [tmp_path / "pki"]
    files = templates(shared_dir)
    assert len(files) >= 26
    async with running_gateway(default_config(tmp_path), key_dirs) as gw:
        for version in VERSIONS:
            for path in files:
                xml = as_version(path.read_bytes(), version)
                response = await gw.send(xml)
                assert response.status_code == 200, (version, path.name, response.text)
                root = etree.fromstring(response.content)
                assert root.get("schemaVersion") == version, path.name
                cv = decode_header(parse_xml(xml)).command_variant
                assert response_code(response.content) in expected(cv), (version, path.name)
                error = schemas.error(version, root)
                assert error is None, (version, path.name, error)
        metrics = (await gw.client.get(gw.admin_url + "/metrics")).text
        for version in VERSIONS:
            assert f'version="{version}"' in metrics


SCHEDULE_42 = b"""<?xml version="1.0" encoding="UTF-8"?>
<sr:Request xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway" schemaVersion="VERSION">
<sr:Header><sr:RequestID>90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:1</sr:RequestID>
<sr:CommandVariant>8</sr:CommandVariant><sr:ServiceReference>5.1</sr:ServiceReference>
<sr:ServiceReferenceVariant>5.1</sr:ServiceReferenceVariant></sr:Header>
<sr:Body><sr:CreateSchedule><sr:DeviceID>00-DB-12-34-56-78-90-A0</sr:DeviceID>
<sr:CommandVariant>1</sr:CommandVariant>
<sr:DSPScheduledServiceReference>4.2</sr:DSPScheduledServiceReference>
<sr:DSPScheduledServiceReferenceVariant>4.2</sr:DSPScheduledServiceReferenceVariant>
<sr:ScheduledStartDate>2030-01-01</sr:ScheduledStartDate><sr:DSPScheduleFrequency>
<sr:Daily>1</sr:Daily></sr:DSPScheduleFrequency></sr:CreateSchedule></sr:Body></sr:Request>"""


async def test_version_specific_value_follows_the_request_version(
    tmp_path: Path, shared_dir: Path
) -> None:
    """SRV 4.2 became DCC-schedulable in 5.3: accepted under 5.3/5.4, refused under 5.0/5.1."""
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        for version in VERSIONS:
            r = await gw.send(SCHEDULE_42.replace(b"VERSION", version.encode()))
            if version in ("5.3", "5.4"):
                assert r.status_code == 200 and response_code(r.content) == "I0", r.text
            else:
                assert r.status_code == 400, (version, r.text)
                assert "DSPScheduledServiceReference" in r.text and "not defined" in r.text


async def test_signer_role_is_a_rule_of_the_version(tmp_path: Path, shared_dir: Path) -> None:
    key_dirs = [tmp_path / "pki"]
    inventory = (
        shared_dir / "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
    ).read_bytes()
    async with running_gateway(default_config(tmp_path), key_dirs) as gw:
        cases = [("5.0", "87", 403), ("5.0", "02", 200), ("5.4", "02", 403), ("5.4", "87", 200)]
        for version, role, status in cases:
            signed, path = sign_with_role(as_version(inventory, version), key_dirs, role)
            r = await gw.post(path, signed)
            assert r.status_code == status, (version, role, r.text)
            if status == 403:
                assert "wrong_role_for_version" in r.text


async def test_retired_version_is_refused(tmp_path: Path, shared_dir: Path) -> None:
    config = default_config(tmp_path)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    config = msgspec.structs.replace(
        config, duis=msgspec.structs.replace(config.duis, retired_from={"5.0": yesterday})
    )
    inventory = (
        shared_dir / "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
    ).read_bytes()
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        r = await gw.send(as_version(inventory, "5.0"))
        assert r.status_code == 400 and "unsupported_version" in r.text
        ok = await gw.send(as_version(inventory, "5.1"))
        assert ok.status_code == 200


def test_version_registry_normalises_decimal_versions() -> None:
    registry = VersionRegistry.build(available_versions(), {})
    now = dt.datetime.now(dt.UTC)
    assert normalise_version("5.40") == "5.4"
    route = registry.route("5.40", now)
    assert route is not None and route.version == "5.4"
    assert route.handlers.version == "5.4"
    for hostile in ("6.0", "4.0", "NaN", "5.4.1", "", "1e400"):
        assert registry.route(hostile, now) is None
