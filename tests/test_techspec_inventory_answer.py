"""Read Inventory (8.2) shows the versions the inventory records for each device."""

from __future__ import annotations

from lxml import etree

from gateway.core.dcc_services import answer_non_device
from gateway.core.registry import decode_inventory
from mmc.codec import BodyFacts

SR = "http://www.dccinterface.co.uk/ServiceUserGateway"


def test_read_inventory_shows_smets_chts_and_gbcs_versions() -> None:
    inventory = decode_inventory(
        b"""
[[devices]]
device_id = "00-DB-12-34-56-78-90-A2"
device_type = "CHF"
status = "commissioned"
technical_specification = "CHTS 1.0"
gbcs_version = "1.0"

[[devices]]
device_id = "00-DB-12-34-56-78-90-A0"
device_type = "ESME"
status = "commissioned"
chf_id = "00-DB-12-34-56-78-90-A2"
technical_specification = "smets v2.0"

[[devices]]
device_id = "00-DB-12-34-56-78-90-A3"
device_type = "GPF"
status = "commissioned"
chf_id = "00-DB-12-34-56-78-90-A2"
""",
        fmt="toml",
    )
    body = etree.fromstring(
        f'<sr:Body xmlns:sr="{SR}"><sr:ReadInventory><sr:DeviceID>00-DB-12-34-56-78-90-A0'
        "</sr:DeviceID></sr:ReadInventory></sr:Body>"
    )
    facts = BodyFacts(device_ids=("00-DB-12-34-56-78-90-A0",))
    answer = answer_non_device("8.2", body, facts, inventory)
    content = etree.fromstring(f'<x xmlns:sr="{SR}">{answer.content}</x>')
    shown = {
        d.findtext("{*}DeviceID"): (
            d.findtext("{*}SMETSCHTSVersion"),
            d.findtext("{*}DeviceGBCSVersion"),
        )
        for d in content.iter(f"{{{SR}}}Device")
    }
    assert shown == {
        "00-DB-12-34-56-78-90-A0": ("SMETS V2.0", None),
        "00-DB-12-34-56-78-90-A2": ("CHTS V1.0", "1.0"),
        "00-DB-12-34-56-78-90-A3": (None, None),
    }
