"""A retired DUIS version: refused per request from its date, never a failed start, and
no longer listed as served (finding 16)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec

from gateway.core.clock import FixedClock
from gateway.core.config import Config
from gateway.core.versions import VersionRegistry
from mmc.catalogue import load_catalogue
from tests.harness import default_config, response_code, running_gateway

VERSIONS = ("5.0", "5.1", "5.3", "5.4")
RETIRED = dt.date(2026, 3, 31)
INVENTORY_REQUEST = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"


def _retiring_50(config: Config, xsd_dir: Path, on: dt.date) -> Config:
    duis = msgspec.structs.replace(config.duis, xsd_dir=str(xsd_dir), retired_from={"5.0": on})
    return msgspec.structs.replace(config, duis=duis)


def _as_version(xml: bytes, version: str) -> bytes:
    return xml.replace(b'schemaVersion="5.4"', f'schemaVersion="{version}"'.encode())


def _clock_on(day: dt.date) -> FixedClock:
    return FixedClock(dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC))


def test_the_registry_serves_lists_and_retires_by_date() -> None:
    registry = VersionRegistry.build(VERSIONS, {"5.0": RETIRED})
    before, on_the_day = RETIRED - dt.timedelta(days=1), RETIRED
    assert registry.served(before) == VERSIONS
    assert registry.retired(before) == {}
    assert registry.served(on_the_day) == ("5.1", "5.3", "5.4")
    assert registry.retired(on_the_day) == {"5.0": RETIRED}
    assert registry.route("5.0", _clock_on(before).now()) is not None
    assert registry.route("5.0", _clock_on(on_the_day).now()) is None
    # Every configured version's XSD, retired or not: start-up loads them all.
    assert registry.xsd_files() == {v: load_catalogue(v).xsd_file for v in VERSIONS}


async def test_a_start_after_the_retirement_date_with_xsds_serves_the_rest(
    tmp_path: Path, shared_dir: Path
) -> None:
    # Before the fix, this start failed with an AttributeError in gateway/assemble.py.
    # The clock starts now: the dev PKI the default generates is valid from now on.
    clock = FixedClock(dt.datetime.now(dt.UTC))
    retired = clock.now().date() - dt.timedelta(days=10)
    config = _retiring_50(default_config(tmp_path), shared_dir / "duis" / "xsd", retired)
    inventory = (shared_dir / INVENTORY_REQUEST).read_bytes()
    async with running_gateway(config, [tmp_path / "pki"], clock=clock) as gw:
        refused = await gw.send(_as_version(inventory, "5.0"))
        assert refused.status_code == 400 and "unsupported_version" in refused.text
        assert "(served: 5.1, 5.3, 5.4)" in refused.text
        for version in ("5.1", "5.3", "5.4"):  # validated against their XSDs
            ok = await gw.send(_as_version(inventory, version))
            assert ok.status_code == 200 and response_code(ok.content) == "I0", ok.text
        status = (await gw.admin.get("/admin/status")).json()
        assert status["versions"] == ["5.1", "5.3", "5.4"]
        assert status["retired_versions"] == {"5.0": retired.isoformat()}


async def test_a_version_leaves_the_served_list_on_its_date(
    tmp_path: Path, shared_dir: Path
) -> None:
    clock = FixedClock(dt.datetime.now(dt.UTC))
    tomorrow = clock.now().date() + dt.timedelta(days=1)
    config = _retiring_50(default_config(tmp_path), shared_dir / "duis" / "xsd", tomorrow)
    inventory = _as_version((shared_dir / INVENTORY_REQUEST).read_bytes(), "5.0")
    async with running_gateway(config, [tmp_path / "pki"], clock=clock) as gw:
        status = (await gw.admin.get("/admin/status")).json()
        assert status["versions"] == list(VERSIONS) and status["retired_versions"] == {}
        ok = await gw.send(inventory)
        assert ok.status_code == 200 and response_code(ok.content) == "I0", ok.text
        clock.advance(dt.timedelta(days=1).total_seconds())
        refused = await gw.send(inventory)
        assert refused.status_code == 400 and "(served: 5.1, 5.3, 5.4)" in refused.text
        status = (await gw.admin.get("/admin/status")).json()
        assert status["versions"] == ["5.1", "5.3", "5.4"]
        assert status["retired_versions"] == {"5.0": tomorrow.isoformat()}
