"""The TS Applicability Tables (SEC A3) and the compatibility matrix, as data.

The operator loads them as TOML or JSON (a SEC modification changes them, ¶120); they
decode straight into frozen Structs and are indexed once into an immutable `Tables`.
Three parts, as in the consultation's example tables (§3.6 ¶119-122):

    [[technical_specifications]]          # Example Tables 1 and 2
    spec = "SMETS"                        # or "CHTS"
    version = "2.0"                       # Principal Version . Sub-Version (¶109)
    installation = { start = 2016-09-30 }             # IVP; no end: open (¶113)
    maintenance = { start = 2016-09-30 }              # MVP
    gbcs = [{ version = "1.0", start = 2016-09-30 }]  # relevant GBCS, Applicability Period (¶117)

    [[compatibility]]                     # the Compatibility Matrix (¶122)
    smets = "2.0"
    smets_gbcs = "1.0"
    chts = "1.0"
    chts_gbcs = "1.0"

    [[products]]                          # what each device model's firmware meets
    manufacturer = "AB01"
    model = "010A030B"
    firmware_version = "0002012F"
    device_type = "ESME"
    technical_specification = "SMETS 2.0"
    gbcs = "1.0"

Products play the part of the Central Products List: they tell which version a device
meets from its model and firmware, which Update Firmware (11.1) needs for the target.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal

import msgspec

from gateway.core.techspec.versions import (
    GbcsVersion,
    Period,
    SpecName,
    TsVersion,
    VersionError,
    parse_gbcs_version,
    parse_ts_version,
)
from mmc import applicability as types

VersionNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,4}\.[0-9]{1,4}$")]
SpecText = Annotated[str, msgspec.Meta(min_length=1, max_length=20)]  # sr:SMETSCHTSVersion
ModelText = Annotated[str, msgspec.Meta(min_length=1, max_length=30)]  # sr:DeviceModel
FirmwareText = Annotated[str, msgspec.Meta(min_length=1, max_length=8)]  # sr:FirmwareVersion
DeviceType = Literal["ESME", "GSME", "GPF", "CHF", "PPMID", "HCALCS", "IHD", "CAD", "TYPE2"]
Format = Literal["toml", "json"]

# Which specification a device of each type meets. The Communications Hub (CHF and its
# GPF) meets CHTS; Smart Meters and the other SMETS devices meet SMETS. CADs (Type 2
# consumer devices other than an IHD) meet neither, so no version rule applies to them.
SPEC_FOR_TYPE: Final[dict[str, SpecName]] = {
    types.ESME: "SMETS",
    types.GSME: "SMETS",
    types.IHD: "SMETS",
    types.PPMID: "SMETS",
    types.HCALCS: "SMETS",
    types.CHF: "CHTS",
    types.GPF: "CHTS",
}


class TablesError(ValueError):
    """A tables file is unusable; the message names the entry."""


class GbcsApplicability(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    version: VersionNumber
    start: dt.date
    end: dt.date | None = None


class SpecEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    spec: SpecName
    version: VersionNumber
    installation: Period
    maintenance: Period
    gbcs: tuple[GbcsApplicability, ...] = ()  # empty: "Not applicable" (SMETS v1.1)


class CompatibilityEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    smets: VersionNumber
    smets_gbcs: VersionNumber | None = None
    chts: VersionNumber
    chts_gbcs: VersionNumber | None = None


class Product(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    manufacturer: ModelText
    model: ModelText
    firmware_version: FirmwareText
    device_type: DeviceType
    technical_specification: SpecText
    gbcs: VersionNumber | None = None


class TablesFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    technical_specifications: tuple[SpecEntry, ...]
    compatibility: tuple[CompatibilityEntry, ...] = ()
    products: tuple[Product, ...] = ()


class SpecValidity(msgspec.Struct, frozen=True):
    """One version's periods, indexed: what the rules ask of the tables."""

    version: TsVersion
    installation: Period
    maintenance: Period
    gbcs: dict[GbcsVersion, Period]  # relevant GBCS versions and their Applicability Periods


class ProductVersions(msgspec.Struct, frozen=True):
    device_type: str
    version: TsVersion
    gbcs: GbcsVersion | None


# A device's specification as the matrix speaks of it: a TS version with its GBCS version.
Conformance = tuple[TsVersion, GbcsVersion | None]
ProductKey = tuple[str, str, str]  # manufacturer, model, firmware version (upper case)


def product_key(manufacturer: str, model: str, firmware_version: str) -> ProductKey:
    return (manufacturer.upper(), model.upper(), firmware_version.upper())


class Tables:
    """An immutable, indexed snapshot of the tables; replacing them builds a new one."""

    __slots__ = ("_matrix", "_products", "_specs", "source")

    def __init__(self, file: TablesFile, source: str = "<tables>") -> None:
        self.source = source
        specs: dict[TsVersion, SpecValidity] = {}
        for index, entry in enumerate(file.technical_specifications):
            validity = _index_spec(entry, f"technical_specifications[{index}]")
            if validity.version in specs:
                raise TablesError(f"technical_specifications[{index}]: {validity.version} twice")
            specs[validity.version] = validity
        self._specs = specs
        self._matrix = tuple(
            self._matrix_row(row, f"compatibility[{index}]")
            for index, row in enumerate(file.compatibility)
        )
        products: dict[ProductKey, ProductVersions] = {}
        for index, product in enumerate(file.products):
            key = product_key(product.manufacturer, product.model, product.firmware_version)
            if key in products:
                raise TablesError(f"products[{index}]: {' '.join(key)} twice")
            products[key] = self._index_product(product, f"products[{index}]")
        self._products = products

    def validity(self, version: TsVersion) -> SpecValidity | None:
        return self._specs.get(version)

    def __iter__(self) -> Iterator[SpecValidity]:
        return iter(sorted(self._specs.values(), key=lambda v: v.version))

    def compatible(self, a: Conformance, b: Conformance) -> bool:
        """Whether devices meeting `a` and `b` may work together in one premises.

        ¶122: a Version of SMETS and GBCS is compatible with itself, and the matrix
        lists which SMETS and CHTS Versions (with their GBCS) are compatible. Two
        different SMETS conformances are compatible when one CHTS conformance is
        compatible with both: SMETS devices work together through the hub. A GBCS
        version the inventory does not know (None) is not held against the device.
        """
        if _same(a, b):
            return True
        if a[0].spec == "CHTS" and b[0].spec == "SMETS":
            a, b = b, a
        if a[0].spec == "SMETS" and b[0].spec == "CHTS":
            return any(_meets(a, smets) and _meets(b, chts) for smets, chts in self._matrix)
        if a[0].spec == b[0].spec == "SMETS":
            return bool(self._hubs_for(a) & self._hubs_for(b))
        return False  # two different CHTS conformances: one hub meets one version

    def _hubs_for(self, smets: Conformance) -> set[Conformance]:
        return {chts for row, chts in self._matrix if _meets(smets, row)}

    def product(
        self, manufacturer: str, model: str, firmware_version: str
    ) -> ProductVersions | None:
        return self._products.get(product_key(manufacturer, model, firmware_version))

    def later_sub_versions(self, version: TsVersion) -> tuple[TsVersion, ...]:
        """Later Sub-Versions of the same Principal Version: retrospective changes (¶109)."""
        return tuple(
            v
            for v in sorted(self._specs)
            if v.spec == version.spec and v.principal == version.principal and v.sub > version.sub
        )

    def _matrix_row(self, row: CompatibilityEntry, where: str) -> tuple[Conformance, Conformance]:
        smets = self._conformance("SMETS", row.smets, row.smets_gbcs, where)
        chts = self._conformance("CHTS", row.chts, row.chts_gbcs, where)
        return smets, chts

    def _conformance(
        self, spec: SpecName, number: str, gbcs_text: str | None, where: str
    ) -> Conformance:
        version = _ts(spec, number)
        validity = self._specs.get(version)
        if validity is None:
            raise TablesError(f"{where}: {version} is not in technical_specifications")
        gbcs = None if gbcs_text is None else parse_gbcs_version(gbcs_text)
        if gbcs is not None and gbcs not in validity.gbcs:
            raise TablesError(f"{where}: GBCS v{gbcs} is not a relevant GBCS version of {version}")
        return version, gbcs

    def _index_product(self, product: Product, where: str) -> ProductVersions:
        try:
            version = parse_ts_version(product.technical_specification)
        except VersionError as exc:
            raise TablesError(f"{where}: {exc}") from None
        expected = SPEC_FOR_TYPE.get(product.device_type)
        if expected != version.spec:
            meets = expected or "no Technical Specification"
            raise TablesError(f"{where}: a {product.device_type} meets {meets}, not {version}")
        _, gbcs = self._conformance(
            version.spec, f"{version.principal}.{version.sub}", product.gbcs, where
        )
        return ProductVersions(product.device_type, version, gbcs)


def _same(a: Conformance, b: Conformance) -> bool:
    return a[0] == b[0] and (a[1] is None or b[1] is None or a[1] == b[1])


def _meets(device: Conformance, row: Conformance) -> bool:
    """A device's conformance satisfies a matrix entry (unknown GBCS on either side passes)."""
    return _same(device, row)


def _ts(spec: SpecName, number: str) -> TsVersion:
    principal, sub = number.split(".")  # the Meta pattern guarantees the form
    return TsVersion(spec, int(principal), int(sub))


def _index_spec(entry: SpecEntry, where: str) -> SpecValidity:
    gbcs: dict[GbcsVersion, Period] = {}
    for applicability in entry.gbcs:
        version = parse_gbcs_version(applicability.version)
        if version in gbcs:
            raise TablesError(f"{where}: GBCS v{version} listed twice")
        try:
            gbcs[version] = Period(applicability.start, applicability.end)
        except msgspec.ValidationError as exc:
            raise TablesError(f"{where}: GBCS v{version} Applicability Period: {exc}") from None
    return SpecValidity(
        version=_ts(entry.spec, entry.version),
        installation=entry.installation,
        maintenance=entry.maintenance,
        gbcs=gbcs,
    )


def decode_tables(data: bytes, *, fmt: Format, source: str = "<tables>") -> Tables:
    """Decode and index a tables document; TablesError names what is wrong."""
    try:
        raw: Any = tomllib.loads(data.decode()) if fmt == "toml" else msgspec.json.decode(data)
    except (tomllib.TOMLDecodeError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise TablesError(f"{source}: not valid {fmt.upper()}: {exc}") from None
    try:
        file = msgspec.convert(raw, TablesFile)
    except msgspec.ValidationError as exc:
        raise TablesError(f"{source}: {exc}") from None
    try:
        return Tables(file, source)
    except TablesError as exc:
        raise TablesError(f"{source}: {exc}") from None


def table_warnings(tables: Tables) -> list[str]:
    """What the tables allow but the consultation says should not last.

    ¶111: a Version superseded by a later Sub-Version stops being valid for maintenance
    and installation "after a period of time", so it should carry end dates.
    """
    warnings = []
    for validity in tables:
        later = tables.later_sub_versions(validity.version)
        if later and validity.maintenance.end is None:
            warnings.append(
                f"{validity.version} is superseded by {later[0]} (a retrospective Sub-Version, "
                "¶109) but its Maintenance Validity Period has no end date (¶111)"
            )
    return warnings
