"""The version rules through a real gateway: tables loaded through the admin API, DUIS
requests signed by the supplier, the consultation's examples walked with an injected clock.

Every answer read here is checked to be valid under its version's XSD and signed with
the DCC's key (tests/techspec_gateway.py `Answers`).
"""

from __future__ import annotations

import base64
from pathlib import Path

from lxml import etree

from gateway.core.clock import FixedClock
from tests.harness import Gateway
from tests.techspec_data import CONSULTATION, EXTENDED
from tests.techspec_gateway import (
    SR,
    Answers,
    at,
    device,
    load,
    request,
    techspec_gateway,
)

SMETS1_METER = "00-DB-12-34-56-78-91-10"
HUB_A, METER_A = "00-DB-12-34-56-78-91-A2", "00-DB-12-34-56-78-91-A0"
HUB_B = "00-DB-12-34-56-78-92-B2"
ON_21, ON_20, DECOMMISSIONED, GAS, UNKNOWN = (
    "00-DB-12-34-56-78-92-B0",
    "00-DB-12-34-56-78-92-B1",
    "00-DB-12-34-56-78-92-B3",
    "00-DB-12-34-56-78-92-B4",
    "00-DB-12-34-56-78-99-99",
)
HUB_C, METER_3 = "00-DB-12-34-56-78-93-C2", "00-DB-12-34-56-78-93-C1"
HUB_D, METER_21 = "00-DB-12-34-56-78-94-D2", "00-DB-12-34-56-78-94-D1"
HUB = {"technical_specification": "CHTS 1.0", "gbcs_version": "1.0"}
MODEL = {"manufacturer": "AB01", "model": "ESME-1"}

INVENTORY = "\n".join(
    [
        # A SMETS1 meter, installed and waiting to be commissioned (no CHTS hub).
        device(
            SMETS1_METER,
            "ESME",
            "installed_not_commissioned",
            mpxn="1100000000001",
            technical_specification="SMETS 1.1",
        ),
        # A new SMETS2 system: hub and meter.
        device(HUB_A, "CHF", **HUB),
        device(
            METER_A,
            "ESME",
            "installed_not_commissioned",
            chf_id=HUB_A,
            mpxn="1100000000002",
            technical_specification="SMETS 2.0",
            gbcs_version="1.0",
        ),
        # A premises for the firmware update: versions from the product tables only.
        device(HUB_B, "CHF", **HUB),
        device(ON_21, "ESME", chf_id=HUB_B, firmware_version="00020100", **MODEL),
        device(ON_20, "ESME", chf_id=HUB_B, firmware_version="00020000", **MODEL),
        device(
            DECOMMISSIONED,
            "ESME",
            "decommissioned",
            chf_id=HUB_B,
            firmware_version="00020000",
            **MODEL,
        ),
        device(
            GAS,
            "GSME",
            chf_id=HUB_B,
            manufacturer="ZZ99",
            model="GAS-9",
            firmware_version="00000001",
        ),
        # Two premises where a meter is replaced: by a SMETS 3.0 meter, by a SMETS 2.1 one.
        device(HUB_C, "CHF", **HUB),
        device(
            "00-DB-12-34-56-78-93-C0",
            "ESME",
            "decommissioned",
            chf_id=HUB_C,
            technical_specification="SMETS 2.0",
            gbcs_version="1.0",
        ),
        device(
            METER_3,
            "ESME",
            "installed_not_commissioned",
            chf_id=HUB_C,
            firmware_version="00030000",
            **MODEL,
        ),
        device(HUB_D, "CHF", **HUB),
        device(
            "00-DB-12-34-56-78-94-D0",
            "ESME",
            "decommissioned",
            chf_id=HUB_D,
            technical_specification="SMETS 2.0",
            gbcs_version="1.0",
        ),
        device(
            METER_21,
            "ESME",
            "installed_not_commissioned",
            chf_id=HUB_D,
            firmware_version="00020100",
            **MODEL,
        ),
    ]
)


def pre_notification(version: str, device_id: str = "00-DB-12-34-56-78-95-00") -> bytes:
    return request(
        "12.2",
        "<sr:DevicePrenotification>"
        f"<sr:DeviceID>{device_id}</sr:DeviceID>"
        "<sr:DeviceManufacturer>AB01</sr:DeviceManufacturer>"
        "<sr:DeviceModel>ESME-1</sr:DeviceModel><sr:DeviceType>ESME</sr:DeviceType>"
        f"<sr:SMETSCHTSVersion>{version}</sr:SMETSCHTSVersion>"
        "</sr:DevicePrenotification>",
    )


def commission(device_id: str) -> bytes:
    """8.1.1 Commission Device, CV 4: the Pre-Command is asked for."""
    return request(
        "8.1.1",
        "<sr:CommissionDeviceSynchroniseClock>"
        "<sr:CurrentDateTime>2016-09-30T12:00:00Z</sr:CurrentDateTime>"
        "<sr:TolerancePeriod>60</sr:TolerancePeriod>"
        "</sr:CommissionDeviceSynchroniseClock>",
        reference="8.1",
        command_variant=4,
        target=device_id,
    )


def update_firmware(version: str, *device_ids: str) -> bytes:
    image = base64.b64encode(b"firmware image " + version.encode()).decode()
    return request(
        "11.1",
        f"<sr:UpdateFirmware><sr:FirmwareImage>{image}</sr:FirmwareImage>"
        f"<sr:FirmwareVersion>{version}</sr:FirmwareVersion>"
        f"<sr:DeviceIDList>{','.join(device_ids)}</sr:DeviceIDList></sr:UpdateFirmware>",
    )


def warning_lists(response: etree._Element) -> dict[str, str | None]:
    warning = response.find(f".//{{{SR}}}DSPUpdateFirmwareWarning")
    assert warning is not None
    return {etree.QName(child).localname: child.text for child in warning}


async def code_of(gateway: Gateway, answers: Answers, xml: bytes) -> str:
    code, _ = answers.response(await gateway.send(xml))
    return code


async def report(gateway: Gateway, **params: int) -> dict[str, tuple[str, int | None]]:
    response = await gateway.admin.get("/admin/techspec/report", params=params)
    assert response.status_code == 200, response.text
    return {r["device_id"]: (r["standing"], r["days_left"]) for r in response.json()}


async def test_the_consultations_example_tables_walked_with_the_clock(
    tmp_path: Path, shared_dir: Path
) -> None:
    """SMETS v2.0 with GBCS v1.0 installable from 30/09/16 (¶119-121, Example Table 1);
    SMETS v1.1 installable until 12/12/17 and maintainable after (footnote 18, ¶124)."""
    clock = FixedClock(at("29/09/16"))
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock) as gateway:
        answers = Answers(shared_dir, tmp_path)
        # No tables in force: the version rules are not applied (as the RTDS 12.2 template),
        # and Update Firmware names only the devices the inventory rules out.
        assert await code_of(gateway, answers, pre_notification("SMETS V1.58")) == "I0"
        code, warned = answers.response(await gateway.send(update_firmware("1", UNKNOWN, METER_A)))
        assert code == "I0" and warning_lists(warned) == {
            "InvalidDeviceIDList": UNKNOWN,
            "NotCommissionedDeviceIDList": METER_A,
        }
        loaded = await load(gateway, "tables", CONSULTATION, "consultation 2016")
        assert (loaded["revision"], loaded["summary"]) == (1, "3 versions")
        assert await code_of(gateway, answers, pre_notification("SMETS V1.58")) == "E11"

        # The day before SMETS v2.0's Installation Validity Period starts.
        assert await code_of(gateway, answers, pre_notification("SMETS V2.0")) == "E11"
        code, refused = answers.response(await gateway.send(commission(METER_A)))
        assert code == "E11" and refused.find(f".//{{{SR}}}PreCommand") is None

        clock.advance(86_400)  # 30/09/16
        assert await code_of(gateway, answers, pre_notification("SMETS V2.0")) == "I0"
        code, issued = answers.response(await gateway.send(commission(METER_A)))
        assert code == "I0" and issued.find(f".//{{{SR}}}PreCommand") is not None

        clock.advance((at("12/12/17") - at("30/09/16")).total_seconds())
        assert await code_of(gateway, answers, commission(SMETS1_METER)) == "I0"
        clock.advance(86_400)  # 13/12/17: SMETS v1.1's IVP has ended, its MVP has not
        assert await code_of(gateway, answers, commission(SMETS1_METER)) == "E11"
        assert await code_of(gateway, answers, pre_notification("SMETS V1.1")) == "I0"
        assert await code_of(gateway, answers, pre_notification("SMETS V3.0")) == "E11"


async def test_a_sec_modification_its_sub_version_deadline_firmware_and_replacements(
    tmp_path: Path, shared_dir: Path
) -> None:
    """SMETS 2.1 applies retrospectively and SMETS 2.0 stops after 30/06/19 (¶109, ¶111);
    Update Firmware names the devices it is not applied to and proceeds for the rest;
    a downgrade (¶127) and an incompatible replacement (¶126) are refused."""
    clock = FixedClock(at("01/08/18"))
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock) as gateway:
        answers = Answers(shared_dir, tmp_path)
        await load(gateway, "tables", CONSULTATION, "consultation 2016")
        loaded = await load(gateway, "tables", EXTENDED, "MP999: SMETS 2.1")
        assert loaded["revision"] == 2
        audit = (await gateway.admin.get("/admin/techspec/tables/audit")).json()
        assert [(r["revision"], r["reason"]) for r in audit] == [
            (2, "MP999: SMETS 2.1"),
            (1, "consultation 2016"),
        ]

        # 8.2 shows the version the product tables give for the firmware a meter runs.
        inventory = request(
            "8.2", f"<sr:ReadInventory><sr:DeviceID>{ON_21}</sr:DeviceID></sr:ReadInventory>"
        )
        code, shown = answers.response(await gateway.send(inventory))
        versions = {
            entry.findtext(f"{{{SR}}}DeviceID"): entry.findtext(f"{{{SR}}}SMETSCHTSVersion")
            for entry in shown.iter(f"{{{SR}}}Device")
        }
        assert code == "I0" and versions[ON_21] == "SMETS V2.1" and versions[HUB_B] == "CHTS V1.0"

        # One image (SMETS 2.0) for a mix of devices.
        mix = update_firmware("00020000", UNKNOWN, ON_21, ON_20, DECOMMISSIONED, GAS)
        code, warned = answers.response(await gateway.send(mix))
        assert code == "I0" and warning_lists(warned) == {
            "InvalidDeviceIDList": UNKNOWN,
            "NotCommissionedDeviceIDList": DECOMMISSIONED,
            "NotApplicableFirmwareDeviceIDList": f"{ON_21},{GAS}",  # a downgrade; no product
        }
        code, clean = answers.response(await gateway.send(update_firmware("00020100", ON_20)))
        assert code == "I0" and clean.find(f".//{{{SR}}}DSPUpdateFirmwareWarning") is None

        # The retrospective Sub-Version's deadline nears, then passes. (The SMETS 3.0
        # meter waiting in premises C has no valid version before 2020 all along.)
        waiting = {METER_3: ("no_maintenance_validity", 0)}
        assert await report(gateway) == waiting
        clock.advance((at("01/04/19") - at("01/08/18")).total_seconds())
        assert await report(gateway) == {
            **waiting,
            METER_A: ("deadline_near", 90),
            ON_20: ("deadline_near", 90),
        }
        assert await report(gateway, warn_within_days=30) == waiting
        clock.advance((at("01/07/19") - at("01/04/19")).total_seconds())
        assert await report(gateway) == {
            **waiting,
            METER_A: ("no_maintenance_validity", 0),
            ON_20: ("no_maintenance_validity", 0),
        }
        code, late = answers.response(await gateway.send(update_firmware("00020000", ON_20)))
        assert late.findtext(f".//{{{SR}}}NotApplicableFirmwareDeviceIDList") == ON_20

        # Meters replaced in 2020: a SMETS 3.0 one cannot work with the CHTS 1.0 hub.
        clock.advance((at("01/02/20") - at("01/07/19")).total_seconds())
        assert await code_of(gateway, answers, commission(METER_3)) == "E11"
        assert await code_of(gateway, answers, commission(METER_21)) == "I0"
