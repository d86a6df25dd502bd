"""The Message Mapping Catalogue of one DUIS version, as typed data.

The data lives in mmc/versions/duis_<version>.json (the project's own format,
derived from the DCC's SRV matrix and XSDs by tools/derive_catalogue.py).
"""

from __future__ import annotations

import enum

import msgspec


class Endpoint(enum.StrEnum):
    """The DUIS endpoint a request must arrive on (path /api/v1/service<X>)."""

    SEND = "S"  # send command
    TRANSFORM = "T"  # CV 4: transform a critical request into a Pre-Command
    NON_DEVICE = "D"  # non-device / DCC-only


class Srv(msgspec.Struct, frozen=True):
    """One Service Reference Variant as a version's catalogue defines it."""

    variant: str  # "4.1.1"
    reference: str  # "4.1"
    name: str  # "Read Instantaneous Import Registers"
    body_element: str  # local name of the single child of sr:Body
    command_variants: frozenset[int]
    critical: bool
    on_demand: bool
    future_dated: str  # the matrix's "Future Dated Response Pattern": "Device", "DSP" or "N/A"
    dcc_scheduled: bool
    non_device: bool
    roles: frozenset[str]  # eligible DUIS User Roles: IS ES GS ED GT RSA OU

    def endpoint_for(self, command_variant: int) -> Endpoint:
        if command_variant == 4:
            return Endpoint.TRANSFORM
        if self.non_device:
            return Endpoint.NON_DEVICE
        return Endpoint.SEND


class Catalogue(msgspec.Struct, frozen=True):
    """Everything the gateway needs to interpret requests under one DUIS version."""

    version: str  # "5.4", as written in schemaVersion
    xsd_file: str  # "DUIS_Schema_V5.4.xsd"
    mmc_xsd_file: str  # "MMC_Schema_V5.4.xsd"
    srvs: dict[str, Srv]  # by variant
    by_body_element: dict[str, Srv]
    response_codes: frozenset[str]
    value_sets: dict[str, frozenset[str]]  # XSD simple type name -> enumeration
    value_set_elements: dict[str, str]  # element local name -> value set whose values differ by version
    signer_role_codes: frozenset[str]  # certificate OU codes allowed to sign User requests
