"""Install and Leave (§1.1) through a real gateway: the coverage database loaded through the
admin API, 12.1 answered from it in every version's shape, 8.14.2 recording reactive and
proactive cases, the remedy window walked to its 90th day with an injected clock, and
the supplier's DCC alert (signed, valid under its version) when coverage arrives.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.core.clock import FixedClock
from gateway.core.config import TechspecConfig
from gateway.core.techspec.alerts import WanAlertCodes
from tests.harness import Gateway
from tests.techspec_gateway import (
    SR,
    SUPPLIER,
    VERSIONS,
    Answers,
    at,
    device,
    inbox_alerts,
    load,
    request,
    techspec_gateway,
)

REACTIVE_HUB, PROACTIVE_HUB, LATE_HUB, UNMAPPED_HUB = (
    "00-DB-12-34-56-78-A1-02",
    "00-DB-12-34-56-78-A2-02",
    "00-DB-12-34-56-78-A3-02",
    "00-DB-12-34-56-78-A4-02",
)
INVENTORY = "\n".join(
    [
        device(REACTIVE_HUB, "CHF", "installed_not_commissioned", uprn=200000000001),
        device(PROACTIVE_HUB, "CHF", "installed_not_commissioned", uprn=200000000002),
        device(LATE_HUB, "CHF", "installed_not_commissioned", postcode="M22 0RR"),
        device(UNMAPPED_HUB, "CHF", "installed_not_commissioned", uprn=200000000009),
    ]
)
COVERAGE = b"""
[[premises]]
uprn = 200000000001
[[premises.regions]]
csp_region = "Central"
available = true
wan_technology = "2G/3G"
likelihood = "High"

[[premises]]
uprn = 200000000002
[[premises.regions]]
csp_region = "4G Central"
available = false
anticipated_date = 2019-06-30
wan_technology = "4G"
likelihood = "Medium"
additional_information = "New mast planned"
[[premises.regions]]
csp_region = "Central"
available = false
anticipated_date = 2019-09-30
wan_technology = "2G/3G"
likelihood = "Low"

[[premises]]
postcode = "M22 0RR"
[[premises.regions]]
csp_region = "North"
available = false
anticipated_date = 2021-03-01
wan_technology = "Long Range Radio"
likelihood = "Low"
"""
# The DCC's remedy at the reactive premises, and the forecast mast built.
WAN_ARRIVED = COVERAGE.replace(
    b'likelihood = "High"', b'likelihood = "High"\nadditional_information = "Remedied"'
).replace(b"available = false\nanticipated_date = 2019-06-30", b"available = true")
ALERT_CODES = WanAlertCodes(dcc_alert_code="N999", hub_alert_code="8F3E")
DAY = 86_400


def wan_matrix(uprn: int, version: str) -> bytes:
    return request(
        "12.1",
        f"<sr:RequestWANMatrix><sr:UPRN>{uprn}</sr:UPRN></sr:RequestWANMatrix>",
        version=version,
    )


def no_wan_install(hub_id: str, version: str = "5.4") -> bytes:
    return request(
        "8.14.2",
        "<sr:CHFInstallSuccessNoSMWAN>"
        f"<sr:DeviceID>{hub_id}</sr:DeviceID>"
        "<sr:CHFInstallType>CHF Install - no SM WAN</sr:CHFInstallType>"
        "<sr:InstallDateTime>2018-03-01T09:30:00Z</sr:InstallDateTime>"
        "<sr:MPxN>1100000000011</sr:MPxN><sr:AerialInstall>false</sr:AerialInstall>"
        "<sr:CHFLocation>Deep indoors</sr:CHFLocation><sr:PremiseType>Terraced</sr:PremiseType>"
        "<sr:MetalObstructionCheck>false</sr:MetalObstructionCheck>"
        "<sr:ConnectivityObstructionCheck>false</sr:ConnectivityObstructionCheck>"
        "<sr:SharedObstructionCheck>false</sr:SharedObstructionCheck>"
        "</sr:CHFInstallSuccessNoSMWAN>",
        reference="8.14",
        version=version,
    )


async def cases(gateway: Gateway) -> dict[str, dict[str, object]]:
    response = await gateway.admin.get("/admin/techspec/install-leave")
    assert response.status_code == 200, response.text
    return {row["hub_id"]: row for row in response.json()}


def techspec(**changes: object) -> TechspecConfig:
    return msgspec.structs.replace(TechspecConfig(), **changes)


@pytest.mark.parametrize("version", VERSIONS)
async def test_wan_matrix_answers_from_the_loaded_coverage_in_each_versions_shape(
    tmp_path: Path, shared_dir: Path, version: str
) -> None:
    clock = FixedClock(at("01/03/18"))
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock) as gateway:
        answers = Answers(shared_dir, tmp_path)
        # No coverage database yet: no premises is known.
        code, _ = answers.response(await gateway.send(wan_matrix(200000000002, version)))
        assert code == "E19"
        await load(gateway, "coverage", COVERAGE, "weekly")
        code, matrix = answers.response(await gateway.send(wan_matrix(200000000002, version)))
        assert code == "I0"
        if version in ("5.0", "5.1"):  # one region: the soonest forecast, as 5.0 names it
            assert matrix.findtext(f".//{{{SR}}}DSPWANMatrix/{{{SR}}}CSPRegion") == "Central"
            assert matrix.findtext(f".//{{{SR}}}WANTechnology") == "4G"
            assert matrix.findtext(f".//{{{SR}}}AnticipatedCoverageDate") == "2019-06-30"
        else:  # one DSPWANMatrixResponse per region
            regions = [
                (r.findtext(f"{{{SR}}}CSPRegion"), r.findtext(f"{{{SR}}}CSPRegionResponseCode"))
                for r in matrix.iter(f"{{{SR}}}DSPWANMatrixResponse")
            ]
            assert regions == [("4G Central", "I0"), ("Central", "I0")]
        code, _ = answers.response(await gateway.send(wan_matrix(999999999999, version)))
        assert code == "E19"


async def test_a_reactive_install_and_leave_to_its_90th_day_then_the_alert(
    tmp_path: Path, shared_dir: Path
) -> None:
    """¶23, SEC F7.18: 90 days from the notification; ¶24-26, licence 49.8, 49.9, 49.15:
    proactive only where SM WAN is forecast before 2021; an alert when coverage arrives."""
    clock = FixedClock(at("01/03/18"))
    config = {"techspec": techspec(wan_available_alert=ALERT_CODES)}
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock, **config) as gateway:
        answers = Answers(shared_dir, tmp_path)
        await load(gateway, "coverage", COVERAGE, "weekly")

        code, _ = answers.response(await gateway.send(no_wan_install(REACTIVE_HUB)))
        assert code == "I0"
        code, _ = answers.response(await gateway.send(no_wan_install(PROACTIVE_HUB, "5.1")))
        assert code == "I0"
        code, _ = answers.response(await gateway.send(no_wan_install(LATE_HUB, "5.0")))
        assert code == "E11"  # SM WAN forecast for 2021: proactive not permitted
        listed = await cases(gateway)
        assert listed.keys() == {REACTIVE_HUB, PROACTIVE_HUB}
        reactive, proactive = listed[REACTIVE_HUB], listed[PROACTIVE_HUB]
        assert (reactive["kind"], reactive["day"], reactive["days_remaining"]) == (
            "reactive",
            1,
            89,
        )
        assert (proactive["kind"], proactive["anticipated_date"]) == ("proactive", "2019-06-30")

        # The same table loaded again is no news: it showed SM WAN there when notified.
        assert (await load(gateway, "coverage", COVERAGE, "weekly again"))["hubs_reached"] == 0

        clock.advance(89 * DAY)  # the window's 90th day
        reactive = (await cases(gateway))[REACTIVE_HUB]
        assert (reactive["day"], reactive["days_remaining"], reactive["overdue"]) == (90, 0, False)
        clock.advance(DAY)
        reactive = (await cases(gateway))[REACTIVE_HUB]
        assert (reactive["day"], reactive["overdue"]) == (91, True)

        loaded = await load(gateway, "coverage", WAN_ARRIVED, "remedied; mast live")
        assert (loaded["hubs_reached"], loaded["alerts_sent"]) == (2, 2)
        alerts = await inbox_alerts(gateway, 2)
        by_hub = {}
        for alert in alerts:
            root = answers.signed(alert["xml"].encode())
            hub = root.findtext(f".//{{{SR}}}CommsHubAlert/{{{SR}}}CommsHubDeviceID")
            assert root.findtext(f".//{{{SR}}}DCCAlertCode") == "N999"
            by_hub[hub] = root.get("schemaVersion")
        # Each alert in the version the supplier notified in.
        assert by_hub == {REACTIVE_HUB: "5.4", PROACTIVE_HUB: "5.1"}
        listed = await cases(gateway)
        assert {hub: (row["state"], row["alert_sent"]) for hub, row in listed.items()} == {
            REACTIVE_HUB: ("wan_available", True),
            PROACTIVE_HUB: ("wan_available", True),
        }

        closed = await gateway.admin.post(
            f"/admin/techspec/install-leave/{REACTIVE_HUB}/close", params={"reason": "commissioned"}
        )
        assert closed.json() == {"hub_id": REACTIVE_HUB, "state": "closed"}
        assert (await cases(gateway)).keys() == {PROACTIVE_HUB}
        history = (await gateway.admin.get(f"/admin/techspec/install-leave/{REACTIVE_HUB}")).json()
        assert [event["case"]["state"] for event in history["history"]] == [
            "awaiting_wan",
            "wan_available",
            "wan_available",  # the alert sent
            "closed",
        ]


async def test_an_alert_owed_while_its_codes_were_unset_is_sent_once_they_are(
    tmp_path: Path, shared_dir: Path
) -> None:
    """DUIS publishes no DCCAlertCode for "SM WAN available": the case records the arrival
    and the report shows the alert owed; a restart with the codes configured sends it."""
    clock = FixedClock(at("01/03/18"))
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock) as gateway:
        answers = Answers(shared_dir, tmp_path)
        await load(gateway, "coverage", COVERAGE, "weekly")
        code, _ = answers.response(await gateway.send(no_wan_install(UNMAPPED_HUB)))
        assert code == "I0"  # a premises the database does not know: reactive
        mapped = COVERAGE + (
            b'\n[[premises]]\nuprn = 200000000009\n[[premises.regions]]\ncsp_region = "South"\n'
            b'available = true\nwan_technology = "2G/3G"\nlikelihood = "High"\n'
        )
        loaded = await load(gateway, "coverage", mapped, "new premises")
        assert (loaded["hubs_reached"], loaded["alerts_sent"]) == (1, 0)
        row = (await cases(gateway))[UNMAPPED_HUB]
        assert (row["state"], row["alert_sent"]) == ("wan_available", False)

    config = {"techspec": techspec(wan_available_alert=ALERT_CODES)}
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock, **config) as gateway:
        (alert,) = await inbox_alerts(gateway, 1)
        root = Answers(shared_dir, tmp_path).signed(alert["xml"].encode())
        assert root.findtext(f".//{{{SR}}}CommsHubDeviceID") == UNMAPPED_HUB
        assert (await cases(gateway))[UNMAPPED_HUB]["alert_sent"] is True
        assert alert["user_id"] == SUPPLIER
