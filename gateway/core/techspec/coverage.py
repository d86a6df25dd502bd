"""The SM WAN Coverage Database, as the operator loads it: premises -> CSP region answers.

    [[premises]]
    uprn = 123456789012                   # or postcode (+ address_identifier)
    [[premises.regions]]
    csp_region = "Central"                # sr:CSPRegion
    available = false                     # SM WAN available now
    anticipated_date = 2020-06-30         # when it is expected (optional)
    wan_technology = "2G/3G"
    likelihood = "High"                   # High | Medium | Low
    auxiliary_equipment = "..."           # optional, up to 50 characters
    additional_information = "..."        # optional, up to 250 characters

A premises entry keyed by postcode alone answers for every address in that postcode; one
with an address identifier too answers for that address first. Availability is what the
table says: a passed anticipated date does not make coverage available, a new table does
(that is the coverage update that tells suppliers, §1.1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from typing import Annotated, Any, Final, Literal

import msgspec

CspRegion = Literal[
    "North", "Central", "South", "4G North", "4G Central", "4G South", "Unknown", "SMETS1"
]
Likelihood = Literal["High", "Medium", "Low"]
Uprn = Annotated[int, msgspec.Meta(ge=1, le=999_999_999_999)]  # sr:UPRN: 12 digits
PostcodeText = Annotated[str, msgspec.Meta(min_length=5, max_length=8)]
AddressText = Annotated[str, msgspec.Meta(max_length=30)]  # sr:AddressIdentifier
TechnologyText = Annotated[str, msgspec.Meta(min_length=1, max_length=30)]
AuxiliaryText = Annotated[str, msgspec.Meta(max_length=50)]
InformationText = Annotated[str, msgspec.Meta(max_length=250)]
MAX_REGIONS_PER_PREMISES: Final = 8  # one per CSPRegion value
Format = Literal["toml", "json"]

_SPACE = re.compile(r"\s+")
_POSTCODE = re.compile(r"[A-Z0-9]{5,7}\Z")


class CoverageError(ValueError):
    """A coverage file is unusable; the message names the entry."""


class RegionCoverage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    csp_region: CspRegion
    available: bool
    wan_technology: TechnologyText
    likelihood: Likelihood
    anticipated_date: dt.date | None = None
    auxiliary_equipment: AuxiliaryText | None = None
    additional_information: InformationText | None = None


class PremisesCoverage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    regions: Annotated[
        tuple[RegionCoverage, ...], msgspec.Meta(min_length=1, max_length=MAX_REGIONS_PER_PREMISES)
    ]
    uprn: Uprn | None = None
    postcode: PostcodeText | None = None
    address_identifier: AddressText | None = None

    @property
    def available(self) -> bool:
        return any(region.available for region in self.regions)

    def earliest_anticipated(self) -> dt.date | None:
        dates = [r.anticipated_date for r in self.regions if r.anticipated_date is not None]
        return min(dates, default=None)


class CoverageFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    premises: tuple[PremisesCoverage, ...]


class UprnKey(msgspec.Struct, frozen=True, tag="uprn"):
    uprn: int

    def __str__(self) -> str:
        return f"UPRN {self.uprn}"


class AddressKey(msgspec.Struct, frozen=True, tag="address"):
    postcode: str
    address_identifier: str = ""

    def __str__(self) -> str:
        return f"{self.postcode} {self.address_identifier}".strip()


PremisesKey = UprnKey | AddressKey


_ENTRY_ENCODER: Final = msgspec.json.Encoder()


def fingerprint(entry: PremisesCoverage) -> str:
    """What the database says about one premises, as a digest: a coverage update that
    changes nothing there (the same table loaded again) is no news for its hubs."""
    return hashlib.sha256(_ENTRY_ENCODER.encode(entry)).hexdigest()


def normal_postcode(text: str) -> str:
    return _SPACE.sub("", text).upper()


def normal_address(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


class CoverageTable:
    """An immutable, indexed snapshot of the coverage database."""

    __slots__ = ("_by_address", "_by_postcode", "_by_uprn", "source")

    def __init__(self, file: CoverageFile, source: str = "<coverage>") -> None:
        self.source = source
        by_uprn: dict[int, PremisesCoverage] = {}
        by_address: dict[tuple[str, str], PremisesCoverage] = {}
        by_postcode: dict[str, PremisesCoverage] = {}
        for index, entry in enumerate(file.premises):
            where = f"premises[{index}]"
            regions = [r.csp_region for r in entry.regions]
            if len(set(regions)) != len(regions):
                raise CoverageError(f"{where}: a CSP region is listed twice")
            if (entry.uprn is None) == (entry.postcode is None):
                raise CoverageError(f"{where}: give either uprn or postcode")
            if entry.uprn is not None:
                _put(by_uprn, entry.uprn, entry, f"{where}: UPRN {entry.uprn}")
                continue
            assert entry.postcode is not None
            postcode = normal_postcode(entry.postcode)
            if not _POSTCODE.match(postcode):
                raise CoverageError(f"{where}: not a postcode: {entry.postcode!r}")
            if entry.address_identifier:
                key = (postcode, normal_address(entry.address_identifier))
                _put(by_address, key, entry, f"{where}: {' '.join(key)}")
            else:
                _put(by_postcode, postcode, entry, f"{where}: postcode {postcode}")
        self._by_uprn = by_uprn
        self._by_address = by_address
        self._by_postcode = by_postcode

    def lookup(self, key: PremisesKey) -> PremisesCoverage | None:
        if isinstance(key, UprnKey):
            return self._by_uprn.get(key.uprn)
        postcode = normal_postcode(key.postcode)
        exact = self._by_address.get((postcode, normal_address(key.address_identifier)))
        return exact if exact is not None else self._by_postcode.get(postcode)

    def __len__(self) -> int:
        return len(self._by_uprn) + len(self._by_address) + len(self._by_postcode)


def _put(index: dict[Any, PremisesCoverage], key: Any, entry: PremisesCoverage, what: str) -> None:
    if key in index:
        raise CoverageError(f"{what} is listed twice")
    index[key] = entry


def decode_coverage(data: bytes, *, fmt: Format, source: str = "<coverage>") -> CoverageTable:
    try:
        raw: Any = tomllib.loads(data.decode()) if fmt == "toml" else msgspec.json.decode(data)
    except (tomllib.TOMLDecodeError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CoverageError(f"{source}: not valid {fmt.upper()}: {exc}") from None
    try:
        file = msgspec.convert(raw, CoverageFile)
        return CoverageTable(file, source)
    except (msgspec.ValidationError, CoverageError) as exc:
        raise CoverageError(f"{source}: {exc}") from None
