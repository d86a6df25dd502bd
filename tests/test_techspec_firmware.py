"""Update Firmware (11.1) under the version rules, and the maintenance report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.core.ingest import SchemaSet
from gateway.core.registry import Inventory, decode_inventory
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signing import sign_canonical_document
from gateway.core.techspec.bodies import read_firmware_update
from gateway.core.techspec.firmware import firmware_update
from gateway.core.techspec.report import maintenance_report
from gateway.core.techspec.tables import Tables, decode_tables
from gateway.stores.operator_files import load_schemas
from mmc import responses
from mmc.catalogue import load_catalogue
from mmc.identifiers import parse_request_id
from tests.techspec_data import EXTENDED, day

VERSIONS = ("5.0", "5.1", "5.3", "5.4")
RID = parse_request_id("90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:7")

# The extended tables, plus: a CHTS 2.0 hub that still works with SMETS 2.0 meters but not
# with SMETS 2.1 ones; and a second ESME model whose 00020100 image carries GBCS 1.1
# (compatible with CHTS 1.0 hubs), whose Applicability Period for SMETS 2.1 ended on
# 31/12/19.
TABLES_TEXT = (
    EXTENDED.decode().replace(
        'version = "2.1"\ninstallation = { start = 2018-07-01 }\n'
        'maintenance = { start = 2018-07-01 }\ngbcs = [{ version = "1.0", start = 2016-09-30 }]',
        'version = "2.1"\ninstallation = { start = 2018-07-01 }\n'
        'maintenance = { start = 2018-07-01 }\ngbcs = [{ version = "1.0", start = 2016-09-30 },'
        ' { version = "1.1", start = 2018-07-01, end = 2019-12-31 }]',
    )
    + """
[[compatibility]]
smets = "2.0"
smets_gbcs = "1.0"
chts = "2.0"
chts_gbcs = "2.0"

[[compatibility]]
smets = "2.1"
smets_gbcs = "1.1"
chts = "1.0"
chts_gbcs = "1.0"

[[products]]
manufacturer = "EF03"
model = "H1"
firmware_version = "00020100"
device_type = "HCALCS"
technical_specification = "SMETS 2.1"
gbcs = "1.0"

[[products]]
manufacturer = "EF03"
model = "H1"
firmware_version = "00030000"
device_type = "HCALCS"
technical_specification = "SMETS 3.0"
gbcs = "2.0"

[[products]]
manufacturer = "AB01"
model = "ESME-2"
firmware_version = "00020100"
device_type = "ESME"
technical_specification = "SMETS 2.1"
gbcs = "1.1"
"""
)


def tables() -> Tables:
    return decode_tables(TABLES_TEXT.encode(), fmt="toml")


def hub(premises: str, firmware: str) -> str:
    return f"""
[[devices]]
device_id = "00-DB-00-00-00-00-{premises}-A2"
device_type = "CHF"
status = "commissioned"
manufacturer = "CD02"
model = "HUB-1"
firmware_version = "{firmware}"
"""


def esme(
    premises: str, firmware: str, *, model: str = "ESME-1", status: str = "commissioned"
) -> str:
    return f"""
[[devices]]
device_id = "00-DB-00-00-00-00-{premises}-A0"
device_type = "ESME"
status = "{status}"
chf_id = "00-DB-00-00-00-00-{premises}-A2"
manufacturer = "AB01"
model = "{model}"
firmware_version = "{firmware}"
"""


def ids(*premises: str) -> list[str]:
    return [f"00-DB-00-00-00-00-{p}-A0" for p in premises]


def estate() -> Inventory:
    text = (
        hub("0A", "00010000")
        + esme("0A", "00020000")  # SMETS 2.0 on CHTS 1.0: upgradable
        + hub("0B", "00020000")
        + esme("0B", "00030000")  # SMETS 3.0: 2.1 is a step back
        + hub("0C", "00010000")
        + esme("0C", "00020000", model="OTHER")  # no such product
        + hub("0D", "00010000")
        + esme("0D", "00020000", status="installed_not_commissioned")
        + hub("0F", "00010000")
        + esme("0F", "00020000")  # another update in progress
        + hub("01", "00020000")
        + esme("01", "00020000")  # CHTS 2.0 hub: 2.1 incompatible
        + hub("02", "00010000")
        + esme("02", "00020000", model="ESME-2")  # GBCS 1.1 expired
    )
    return decode_inventory(text.encode(), fmt="toml")


def test_a_firmware_update_to_a_mix_of_devices_warns_for_each_refused_one() -> None:
    requested = ids("0A", "0B", "0C", "0D", "0E", "0F", "01", "02")  # 0E is not in the inventory
    decision = firmware_update(
        tables(), estate(), requested, "00020100", day("01/02/20"), in_progress={ids("0F")[0]}
    )
    assert decision.proceed == tuple(ids("0A"))
    assert decision.warning_lists() == {
        "InvalidDeviceIDList": ids("0E"),
        "NotCommissionedDeviceIDList": ids("0D"),
        "NotApplicableFirmwareDeviceIDList": ids("0B", "0C", "01"),
        "OtherRequestInProgressList": ids("0F"),
        "InvalidGBCSVersionList": ids("02"),
    }
    why = {r.device_id: r.reason for r in decision.refused}
    assert why[ids("0B")[0]] == "backwards_step"
    assert why[ids("0C")[0]] == "not_for_this_model"
    assert why[ids("01")[0]] == "incompatible"
    assert why[ids("02")[0]] == "gbcs_not_applicable"


def test_a_hub_image_incompatible_with_its_meter_is_refused() -> None:
    """¶126: the DCC keeps hubs compatible with the Smart Meters they serve. CHTS 2.0
    works with SMETS 2.0 and 3.0 meters, not with this SMETS 2.1 one."""
    inventory = decode_inventory(
        (hub("0A", "00010000") + esme("0A", "00020100")).encode(), fmt="toml"
    )
    hub_id = "00-DB-00-00-00-00-0A-A2"
    decision = firmware_update(tables(), inventory, [hub_id], "00020000", day("01/02/20"))
    assert [r.reason for r in decision.refused] == ["incompatible"]
    assert decision.warning_lists() == {"NotApplicableFirmwareDeviceIDList": [hub_id]}


def hcalcs(premises: str, suffix: str, firmware: str) -> str:
    return f"""
[[devices]]
device_id = "00-DB-00-00-00-00-{premises}-{suffix}"
device_type = "HCALCS"
status = "commissioned"
chf_id = "00-DB-00-00-00-00-{premises}-A2"
manufacturer = "EF03"
model = "H1"
firmware_version = "{firmware}"
"""


def test_compatibility_is_judged_as_the_premises_will_be_after_the_update() -> None:
    """¶126 "after being maintained": two switches of one model updated together are
    compatible afterwards; updating one alone would leave a pair that is not."""
    inventory = decode_inventory(
        (
            hub("0A", "00020000") + hcalcs("0A", "B1", "00020100") + hcalcs("0A", "B2", "00020100")
        ).encode(),
        fmt="toml",
    )
    pair = ["00-DB-00-00-00-00-0A-B1", "00-DB-00-00-00-00-0A-B2"]
    both = firmware_update(tables(), inventory, pair, "00030000", day("01/02/20"))
    assert both.proceed == tuple(pair)
    alone = firmware_update(tables(), inventory, pair[:1], "00030000", day("01/02/20"))
    assert [r.reason for r in alone.refused] == ["incompatible"]


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    return load_schemas(
        shared_dir / "duis" / "xsd", {v: load_catalogue(v).xsd_file for v in VERSIONS}
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_the_warning_validates_and_signs_under_every_version(
    version: str, schemas: SchemaSet
) -> None:
    decision = firmware_update(
        tables(), estate(), ids("0A", "0B", "0E", "02"), "00020100", day("01/02/20")
    )
    document = responses.service_response(
        load_catalogue(version),
        RID,
        "I0",
        "11.1",
        "11.1",
        dt.datetime(2020, 2, 1, tzinfo=dt.UTC),
        content=responses.firmware_warning(decision.warning_lists()),
    )
    root = etree.fromstring(document)
    assert schemas.error(version, root) is None
    key = ec.generate_private_key(ec.SECP256R1())
    signed = etree.fromstring(sign_canonical_document(document, key, "CN=Z1,OU=07", 5))
    verify_signature(signed, parse_signature(signed), key.public_key())
    lists = {etree.QName(e).localname: e.text for e in root.iter("{*}*") if "List" in e.tag}
    assert lists["InvalidDeviceIDList"] == ids("0E")[0]
    assert lists["NotApplicableFirmwareDeviceIDList"] == ids("0B")[0]
    assert lists["InvalidGBCSVersionList"] == ids("02")[0]


def test_the_rtds_update_firmware_request_reads(shared_dir: Path) -> None:
    raw = (shared_dir / "duis/samples/requests/11.1_UPDATE_FIRMWARE_REQUEST_DUIS.XML").read_bytes()
    body = etree.fromstring(raw).find("{*}Body")
    assert body is not None
    facts = read_firmware_update(body)
    assert facts.firmware_version == "00000000"
    assert facts.device_ids == ("00-DB-12-34-56-78-90-A0",)


def test_a_retrospective_sub_version_deadline_passing() -> None:
    """¶109, ¶111: SMETS 2.1 applies retrospectively; SMETS 2.0 stops being valid for
    maintenance after 30/06/19. Before then its devices are reported as nearing the
    deadline; after it they have lost their MVP, may not be maintained to SMETS 2.0 (a
    reinstalled 2.0 image is refused) and must be upgraded to 2.1."""
    t, inventory = tables(), estate()
    a0 = ids("0A")[0]
    near = [r for r in maintenance_report(t, inventory, day("15/05/19")) if r.device_id == a0]
    assert len(near) == 1
    assert near[0].standing == "deadline_near"
    assert near[0].days_left == 46 and near[0].maintenance_end == dt.date(2019, 6, 30)
    assert near[0].superseded_by == "SMETS v2.1"
    # Months before the deadline nothing is reported; on its last day it is still near.
    assert all(r.device_id != a0 for r in maintenance_report(t, inventory, day("01/01/19")))
    last = [r for r in maintenance_report(t, inventory, day("30/06/19")) if r.device_id == a0]
    assert last[0].standing == "deadline_near" and last[0].days_left == 0

    lost = [r for r in maintenance_report(t, inventory, day("01/07/19")) if r.device_id == a0]
    assert lost[0].standing == "no_maintenance_validity"
    # Listed before the devices that are only nearing a deadline.
    assert (
        maintenance_report(t, inventory, day("01/07/19"))[0].standing == "no_maintenance_validity"
    )

    reinstall = firmware_update(t, inventory, [a0], "00020000", day("01/07/19"))
    assert [r.reason for r in reinstall.refused] == ["no_maintenance_validity"]
    assert "superseded by Sub-Version SMETS v2.1" in reinstall.refused[0].detail
    assert firmware_update(t, inventory, [a0], "00020000", day("30/06/19")).proceed == (a0,)
    assert firmware_update(t, inventory, [a0], "00020100", day("01/07/19")).proceed == (a0,)
