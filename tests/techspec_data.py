"""Tables and devices the techspec tests share (the consultation's, and extensions)."""

from __future__ import annotations

import datetime as dt

from gateway.core.techspec import example_tables_document
from gateway.core.techspec.rules import DeviceVersions
from gateway.core.techspec.tables import Tables, decode_tables
from gateway.core.techspec.versions import parse_gbcs_version, parse_ts_version

# The consultation's example tables, as shipped.
CONSULTATION = example_tables_document()

# The example tables plus what the consultation only describes: a retrospective
# Sub-Version SMETS 2.1 (¶109) that ends SMETS 2.0 after a deadline (¶111), and a
# later principal version SMETS 3.0 with GBCS 2.0, compatible only with a CHTS 2.0.
EXTENDED = (
    CONSULTATION.decode().replace(
        'version = "2.0"\ninstallation = { start = 2016-09-30 }\n'
        "maintenance = { start = 2016-09-30 }",
        'version = "2.0"\ninstallation = { start = 2016-09-30, end = 2018-06-30 }\n'
        "maintenance = { start = 2016-09-30, end = 2019-06-30 }",
    )
    + """
[[technical_specifications]]
spec = "SMETS"
version = "2.1"
installation = { start = 2018-07-01 }
maintenance = { start = 2018-07-01 }
gbcs = [{ version = "1.0", start = 2016-09-30 }]

[[technical_specifications]]
spec = "SMETS"
version = "3.0"
installation = { start = 2020-01-01 }
maintenance = { start = 2020-01-01 }
gbcs = [{ version = "2.0", start = 2020-01-01 }]

[[technical_specifications]]
spec = "CHTS"
version = "2.0"
installation = { start = 2020-01-01 }
maintenance = { start = 2020-01-01 }
gbcs = [{ version = "2.0", start = 2020-01-01 }]

[[compatibility]]
smets = "2.1"
smets_gbcs = "1.0"
chts = "1.0"
chts_gbcs = "1.0"

[[compatibility]]
smets = "3.0"
smets_gbcs = "2.0"
chts = "2.0"
chts_gbcs = "2.0"

[[products]]
manufacturer = "AB01"
model = "ESME-1"
firmware_version = "00020000"
device_type = "ESME"
technical_specification = "SMETS 2.0"
gbcs = "1.0"

[[products]]
manufacturer = "AB01"
model = "ESME-1"
firmware_version = "00020100"
device_type = "ESME"
technical_specification = "SMETS 2.1"
gbcs = "1.0"

[[products]]
manufacturer = "AB01"
model = "ESME-1"
firmware_version = "00030000"
device_type = "ESME"
technical_specification = "SMETS 3.0"
gbcs = "2.0"

[[products]]
manufacturer = "CD02"
model = "HUB-1"
firmware_version = "00010000"
device_type = "CHF"
technical_specification = "CHTS 1.0"
gbcs = "1.0"

[[products]]
manufacturer = "CD02"
model = "HUB-1"
firmware_version = "00020000"
device_type = "CHF"
technical_specification = "CHTS 2.0"
gbcs = "2.0"
"""
).encode()


def consultation() -> Tables:
    return decode_tables(CONSULTATION, fmt="toml", source="consultation")


def extended() -> Tables:
    return decode_tables(EXTENDED, fmt="toml", source="extended")


def device(
    device_type: str, version: str, gbcs: str | None = None, device_id: str | None = None
) -> DeviceVersions:
    return DeviceVersions(
        device_type=device_type,
        version=parse_ts_version(version),
        gbcs=None if gbcs is None else parse_gbcs_version(gbcs),
        device_id=device_id,
    )


def day(text: str) -> dt.date:
    """'12/12/17' as the consultation writes dates."""
    return dt.datetime.strptime(text, "%d/%m/%y").date()
