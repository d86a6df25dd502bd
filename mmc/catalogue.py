"""The Message Mapping Catalogue of one DUIS version, as typed data.

The data lives in mmc/versions/duis_<version>.json (the project's own format,
derived from the DCC's SRV matrix and XSDs by tools/derive_catalogue.py; run it
with --check to prove the files still match the schemas). Each file decodes
straight into `CatalogueFile`; `load_catalogue` adds the lookup tables.
"""

from __future__ import annotations

import enum
import functools
from importlib import resources
from typing import Final

import msgspec

# Bump when the shape of CatalogueFile changes, so a stale data file fails loudly
# instead of decoding into something subtly different.
CATALOGUE_FORMAT = 1

# The DUIS versions this build serves, oldest first. Each has a data file.
SERVED_VERSIONS: tuple[str, ...] = ("5.0", "5.1", "5.3", "5.4")

# SMKI Organisation Certificate subject OU (remote party role code) that a User
# holding each DUIS User Role signs with, while Users sign with their role
# certificates (DUIS 5.0). Suppliers share 02, network operators share 03, and
# Registered Supplier Agents and Other Users hold "other" (7F) certificates.
ORGANISATION_ROLE_CODES: dict[str, str] = {
    "IS": "02",
    "ES": "02",
    "GS": "02",
    "ED": "03",
    "GT": "03",
    "RSA": "7F",
    "OU": "7F",
}

# The OU of the dedicated User XML-signing certificates used from DUIS 5.1 on.
USER_XML_SIGNING_ROLE_CODE = "87"

# sr:Body child of a Signed Pre-Command (CV 5/6/7): it belongs to no SRV.
SIGNED_PRE_COMMAND_ELEMENT = "SignedPreCommand"
# The CommandVariants that carry a Signed Pre-Command: send (5), local (6), both (7).
SIGNED_PRE_COMMAND_VARIANTS: Final = frozenset({5, 6, 7})


class UnknownVersion(LookupError):
    """The gateway holds no catalogue for this DUIS version (the peer's problem)."""

    def __init__(self, version: str) -> None:
        super().__init__(f"DUIS version {version[:16]!r} is not served")
        self.version = version


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
    # The matrix's "Future Dated Response Pattern", verbatim: "No", "DSP", "Device"
    # or "DSP & Device".
    future_dated: str
    dcc_scheduled: bool
    non_device: bool
    roles: frozenset[str]  # eligible DUIS User Roles: IS ES GS ED GT RSA OU (may be empty)

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
    value_set_elements: dict[str, str]  # element local name -> its version-dependent value set
    signer_role_codes: frozenset[str]  # certificate OU codes allowed to sign User requests
    gbcs_version: str = ""  # the GBCS version the XSD says it is aligned with, e.g. "4.3"


class CatalogueFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The on-disk form of one version's catalogue (mmc/versions/duis_<v>.json).

    Sets are written sorted and SRVs in XSD order, so the files are byte-for-byte
    reproducible. Anonymous XSD enumerations are keyed in value_sets by the local
    name of the element that declares them (they have no type name of their own).
    """

    format: int
    version: str
    xsd_file: str
    mmc_xsd_file: str
    gbcs_version: str
    srvs: tuple[Srv, ...]
    response_codes: frozenset[str]
    value_sets: dict[str, frozenset[str]]
    value_set_elements: dict[str, str]
    signer_role_codes: frozenset[str]


_FILE_DECODER = msgspec.json.Decoder(CatalogueFile)


def available_versions() -> tuple[str, ...]:
    """The DUIS versions with a catalogue, oldest first."""
    return SERVED_VERSIONS


def data_file_name(version: str) -> str:
    return f"duis_{version}.json"


def decode_catalogue_file(data: bytes) -> CatalogueFile:
    """Decode one data file; raises msgspec.ValidationError/DecodeError if malformed."""
    file = _FILE_DECODER.decode(data)
    if file.format != CATALOGUE_FORMAT:
        raise msgspec.ValidationError(
            f"catalogue format {file.format}, this code reads {CATALOGUE_FORMAT}"
        )
    return file


def build_catalogue(file: CatalogueFile) -> Catalogue:
    """Add the lookup tables the hot path needs to a decoded data file."""
    return Catalogue(
        version=file.version,
        xsd_file=file.xsd_file,
        mmc_xsd_file=file.mmc_xsd_file,
        srvs={srv.variant: srv for srv in file.srvs},
        by_body_element={srv.body_element: srv for srv in file.srvs},
        response_codes=file.response_codes,
        value_sets=file.value_sets,
        value_set_elements=file.value_set_elements,
        signer_role_codes=file.signer_role_codes,
        gbcs_version=file.gbcs_version,
    )


@functools.cache
def load_catalogue(version: str) -> Catalogue:
    """The catalogue for a schemaVersion value; raises UnknownVersion if not served.

    The version is checked against the served list before any file is touched, so
    a hostile schemaVersion can never name a path.
    """
    if version not in SERVED_VERSIONS:
        raise UnknownVersion(version)
    data = resources.files(__package__).joinpath("versions", data_file_name(version)).read_bytes()
    file = decode_catalogue_file(data)
    if file.version != version:
        raise ValueError(f"{data_file_name(version)} holds version {file.version!r}")
    return build_catalogue(file)


def srv_for(catalogue: Catalogue, variant: str) -> Srv | None:
    return catalogue.srvs.get(variant)


def srv_for_body(catalogue: Catalogue, body_element: str) -> Srv | None:
    return catalogue.by_body_element.get(body_element)


def value_allowed(catalogue: Catalogue, element: str, value: str) -> bool:
    """False only if `element` carries a version-dependent value set lacking `value`.

    Elements whose values do not vary by version are left to XSD validation.
    """
    value_set = catalogue.value_set_elements.get(element)
    if value_set is None:
        return True
    return value in catalogue.value_sets[value_set]
