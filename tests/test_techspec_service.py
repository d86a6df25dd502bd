"""The techspec service and its admin routes over the SQLite store, with a moved clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
from lxml import etree

from gateway.core.clock import FixedClock
from gateway.core.config import TechspecConfig
from gateway.core.registry import Inventory, decode_inventory
from gateway.core.techspec.install_leave import WanAvailableAlert
from gateway.edge.admin_params import InvalidInput
from gateway.edge.http import HttpRequest
from gateway.edge.server import PeerInfo
from gateway.edge.techspec_admin import TechspecAdmin
from gateway.edge.techspec_service import TechspecService
from gateway.stores.techspec_sqlite import FILE_NAME, open_techspec_store
from mmc.catalogue import load_catalogue
from tests.techspec_data import CONSULTATION

SR = "http://www.dccinterface.co.uk/ServiceUserGateway"
PEER = PeerInfo("127.0.0.1:50000", None)
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
HUB = "00-DB-12-34-56-78-90-A2"
START = dt.datetime(2018, 3, 1, 9, 0, tzinfo=dt.UTC)
ESTATE = decode_inventory(
    f"""
[[devices]]
device_id = "{HUB}"
device_type = "CHF"
status = "installed_not_commissioned"
technical_specification = "CHTS 1.0"
uprn = 123456789012

[[devices]]
device_id = "00-DB-12-34-56-78-90-A0"
device_type = "ESME"
status = "commissioned"
chf_id = "{HUB}"
technical_specification = "SMETS 1.1"
""".encode(),
    fmt="toml",
)
NO_WAN = b"""
[[premises]]
uprn = 123456789012
[[premises.regions]]
csp_region = "Central"
available = false
anticipated_date = 2018-09-01
wan_technology = "2G/3G"
likelihood = "High"
"""
WAN = NO_WAN.replace(b"available = false", b"available = true")


def request(method: str, target: str, body: bytes = b"", content_type: bytes = b"") -> HttpRequest:
    headers = ((b"content-type", content_type),) if content_type else ()
    return HttpRequest(method=method, target=target, headers=headers, body=body, keep_alive=True)


async def call(
    admin: TechspecAdmin, method: str, path: str, body: bytes = b""
) -> tuple[int, object]:
    target, _, query = path.partition("?")
    rest = [p for p in target.split("/") if p]
    sent = request(method, path, body, b"application/toml" if method == "PUT" else b"")
    try:
        status, payload, _ = await admin.route(method, rest, query, sent, PEER)
    except InvalidInput as exc:  # the admin API answers it 400
        return 400, {"error": str(exc)}
    return status, msgspec.json.decode(payload) if payload.startswith((b"{", b"[")) else payload


def body(xml: str) -> etree._Element:
    return etree.fromstring(f'<sr:Body xmlns:sr="{SR}">{xml}</sr:Body>')


NO_WAN_INSTALL = body(
    f"<sr:CHFInstallSuccessNoSMWAN><sr:DeviceID>{HUB}</sr:DeviceID>"
    "<sr:CHFInstallType>CHF Install - no SM WAN</sr:CHFInstallType><sr:MPxN>1000999888</sr:MPxN>"
    "</sr:CHFInstallSuccessNoSMWAN>"
)


def estate() -> Inventory:
    return ESTATE


async def test_tables_loaded_through_the_admin_api_are_audited_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    clock = FixedClock(START)
    async with open_techspec_store(tmp_path / FILE_NAME) as store:
        service = TechspecService(store, TechspecConfig(), clock)
        await service.start()
        admin = TechspecAdmin(service, estate)
        # No tables yet: the version rules are not applied.
        notice = body(
            "<sr:DevicePrenotification><sr:DeviceID>00-DB-12-34-56-78-90-B0</sr:DeviceID>"
            "<sr:DeviceManufacturer>AB01</sr:DeviceManufacturer><sr:DeviceModel>X</sr:DeviceModel>"
            "<sr:DeviceType>ESME</sr:DeviceType>"
            "<sr:SMETSCHTSVersion>SMETS V1.1</sr:SMETSCHTSVersion>"
            "</sr:DevicePrenotification>"
        )
        assert service.pre_notification(notice).code == "I0"
        assert await call(admin, "GET", "tables") == (404, {"error": "no techspec loaded"})

        status, refused = await call(
            admin, "PUT", "tables?reason=typo", b"[[technical_specifications"
        )
        assert status == 400 and "not valid TOML" in refused["error"]  # type: ignore[index]
        assert service.tables is None

        status, loaded = await call(admin, "PUT", "tables?reason=SEC%20A3", CONSULTATION)
        assert status == 200 and loaded == {
            "revision": 1,
            "summary": "3 versions",
            "warnings": [],
            "hubs_reached": 0,
            "alerts_sent": 0,
        }
        # 2018: SMETS v1.1 has no IVP but its MVP remains, so it may be pre-notified; a
        # SMETS1 meter cannot be commissioned onto a CHTS hub (¶126).
        assert service.pre_notification(notice).code == "I0"
        answer = service.commissioning(ESTATE, "00-DB-12-34-56-78-90-A0")
        assert answer.code == "E11"
        status, report = await call(admin, "GET", "report?warn_within_days=30")
        assert (status, report) == (200, [])
        status, audit = await call(admin, "GET", "tables/audit")
        assert status == 200 and [(r["revision"], r["actor"]) for r in audit] == [(1, PEER.address)]  # type: ignore[index, union-attr]
    async with open_techspec_store(tmp_path / FILE_NAME) as store:
        restarted = TechspecService(store, TechspecConfig(), clock)
        await restarted.start()
        assert restarted.tables is not None
        status, current = await call(TechspecAdmin(restarted, estate), "GET", "tables?document=1")
        assert status == 200 and current["document"] == CONSULTATION.decode()  # type: ignore[index]


async def test_install_and_leave_through_the_service_with_the_alert_on_coverage(
    tmp_path: Path,
) -> None:
    clock = FixedClock(START)
    offered: list[WanAvailableAlert] = []
    accept = False

    async def sink(alert: WanAvailableAlert) -> bool:
        offered.append(alert)
        return accept

    async with open_techspec_store(tmp_path / FILE_NAME) as store:
        service = TechspecService(store, TechspecConfig(), clock, alert_sink=sink)
        await service.start()
        admin = TechspecAdmin(service, estate)
        assert (await call(admin, "PUT", "coverage", NO_WAN))[0] == 200
        # The database forecasts WAN for 01/09/18: proactive Install and Leave.
        answer = await service.no_wan_install(SUPPLIER, NO_WAN_INSTALL, ESTATE, duis_version="5.4")
        assert answer.code == "I0" and answer.event is not None and answer.event.kind == "proactive"
        status, rows = await call(admin, "GET", "install-leave")
        assert status == 200 and [(r["hub_id"], r["kind"]) for r in rows] == [(HUB, "proactive")]  # type: ignore[index, union-attr]

        clock.advance(200 * 86_400)
        status, loaded = await call(admin, "PUT", "coverage?reason=WAN%20live", WAN)
        assert status == 200 and loaded["hubs_reached"] == 1  # type: ignore[index]
        assert loaded["alerts_sent"] == 0  # type: ignore[index]
        assert [(a.user_id, a.hub_id) for a in offered] == [(SUPPLIER, HUB)]
        _, rows = await call(admin, "GET", "install-leave")
        assert rows[0]["state"] == "wan_available" and rows[0]["alert_sent"] is False  # type: ignore[index]

        accept = True  # the outbox takes it now
        assert await service.send_pending_alerts() == 1
        _, rows = await call(admin, "GET", "install-leave")
        assert rows[0]["alert_sent"] is True  # type: ignore[index]
        assert await service.send_pending_alerts() == 0

        assert (await call(admin, "POST", f"install-leave/{HUB}/close?reason=nope"))[0] == 400
        status, closed = await call(admin, "POST", f"install-leave/{HUB}/close?reason=commissioned")
        assert (status, closed) == (200, {"hub_id": HUB, "state": "closed"})
        assert await call(admin, "GET", "install-leave") == (200, [])
        status, _ = await call(admin, "POST", "install-leave/00-DB-00-00-00-00-00-00/close")
        assert status == 404


async def test_wan_matrix_from_the_coverage_in_force(tmp_path: Path) -> None:
    async with open_techspec_store(tmp_path / FILE_NAME) as store:
        service = TechspecService(store, TechspecConfig(), FixedClock(START))
        await service.start()
        query = body("<sr:RequestWANMatrix><sr:UPRN>123456789012</sr:UPRN></sr:RequestWANMatrix>")
        assert service.wan_matrix(load_catalogue("5.4"), query).code == "E19"
        await service.replace("coverage", WAN, "toml", actor="test", reason="")
        answer = service.wan_matrix(load_catalogue("5.4"), query)
        assert answer.code == "I0" and "<sr:CoverageAvailability>true" in answer.content


async def test_a_replacement_by_another_process_is_put_in_force_on_refresh(
    tmp_path: Path,
) -> None:
    """Workers share techspec.sqlite; each refreshes its decoded snapshot from it."""
    clock = FixedClock(START)
    async with (
        open_techspec_store(tmp_path / FILE_NAME) as first_store,
        open_techspec_store(tmp_path / FILE_NAME) as second_store,
    ):
        first = TechspecService(first_store, TechspecConfig(), clock)
        second = TechspecService(second_store, TechspecConfig(), clock)
        await first.start()
        await second.start()
        await first.replace("techspec", CONSULTATION, "toml", actor="worker-0", reason="")
        assert second.tables is None
        assert await second.refresh() is True
        assert second.tables is not None and await second.refresh() is False
