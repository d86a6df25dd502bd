"""Request WAN Matrix (12.1): the coverage database's answer, in each version's shape.

DUIS 5.0 and 5.1 answer with one region: `DSPWANMatrix` holds the echoed request, then
CSPRegion, CoverageAvailability, AnticipatedCoverageDate?, WANTechnology,
ConnectivityLikelihood, AuxiliaryEquipmentRequired?, AdditionalInformation?. From 5.3 a
premises may be served from several CSP regions (the 4G regions arrived then), and
`DSPWANMatrix` holds the request and one `DSPWANMatrixResponse` per region, each with
its own CSPRegionResponseCode before the same details. The shape is chosen from the
version's catalogue (whether it knows CSPRegionResponseCode), not from its number.

Under 5.0/5.1 a "4G North/Central/South" region, which those versions cannot name, is
reported as its geographic region ("North"...): WANTechnology still says which network.
One region must be chosen there: one with SM WAN available now, else the one forecast
soonest, else the first listed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import msgspec

from gateway.core.techspec.coverage import (
    AddressKey,
    PremisesCoverage,
    PremisesKey,
    RegionCoverage,
    UprnKey,
)
from mmc.catalogue import Catalogue
from mmc.responses import escape

REGION_SUCCESS_CODE = "I0"  # a region the database answers for


class WanMatrixAnswer(msgspec.Struct, frozen=True):
    code: str  # the Service Response's ResponseCode
    content: str  # sr:DSPWANMatrix, or "" with an error code


def wan_matrix_answer(
    catalogue: Catalogue,
    query: PremisesKey,
    coverage: PremisesCoverage | None,
    *,
    unknown_premises_code: str,
) -> WanMatrixAnswer:
    """The 12.1 answer for `query`; `unknown_premises_code` when the database has none."""
    if coverage is None:
        return WanMatrixAnswer(unknown_premises_code, "")
    out = ["<sr:DSPWANMatrix>", _request_echo(query)]
    if "CSPRegionResponseCode" in catalogue.value_set_elements:
        for region in coverage.regions:
            out.append("<sr:DSPWANMatrixResponse>")
            out.append(f"<sr:CSPRegion>{escape(region.csp_region)}</sr:CSPRegion>")
            out.append(
                f"<sr:CSPRegionResponseCode>{REGION_SUCCESS_CODE}</sr:CSPRegionResponseCode>"
            )
            out.append(_details(region))
            out.append("</sr:DSPWANMatrixResponse>")
    else:
        known = catalogue.value_sets.get("CSPRegion", frozenset())
        region = choose_single_region(coverage.regions)
        out.append(
            f"<sr:CSPRegion>{escape(region_for_version(region.csp_region, known))}</sr:CSPRegion>"
        )
        out.append(_details(region))
    out.append("</sr:DSPWANMatrix>")
    return WanMatrixAnswer("I0", "".join(out))


def choose_single_region(regions: Sequence[RegionCoverage]) -> RegionCoverage:
    for region in regions:
        if region.available:
            return region
    forecast = [r for r in regions if r.anticipated_date is not None]
    if forecast:
        return min(forecast, key=lambda r: r.anticipated_date or dt.date.max)
    return regions[0]


def region_for_version(region: str, known: frozenset[str]) -> str:
    """A region the version can name: "4G Central" -> "Central" where 4G is unknown."""
    if region in known or not known:
        return region
    geographic = region.removeprefix("4G ")
    return geographic if geographic in known else "Unknown"


def _request_echo(query: PremisesKey) -> str:
    if isinstance(query, UprnKey):
        return f"<sr:Request><sr:UPRN>{query.uprn}</sr:UPRN></sr:Request>"
    assert isinstance(query, AddressKey)
    return (
        "<sr:Request><sr:PartialAddress>"
        f"<sr:PostCode>{escape(query.postcode)}</sr:PostCode>"
        f"<sr:AddressIdentifier>{escape(query.address_identifier)}</sr:AddressIdentifier>"
        "</sr:PartialAddress></sr:Request>"
    )


def _details(region: RegionCoverage) -> str:
    available = "true" if region.available else "false"
    out = [f"<sr:CoverageAvailability>{available}</sr:CoverageAvailability>"]
    if region.anticipated_date is not None:
        out.append(
            f"<sr:AnticipatedCoverageDate>{region.anticipated_date.isoformat()}"
            "</sr:AnticipatedCoverageDate>"
        )
    out.append(f"<sr:WANTechnology>{escape(region.wan_technology)}</sr:WANTechnology>")
    out.append(f"<sr:ConnectivityLikelihood>{region.likelihood}</sr:ConnectivityLikelihood>")
    if region.auxiliary_equipment is not None:
        out.append(
            f"<sr:AuxiliaryEquipmentRequired>{escape(region.auxiliary_equipment)}"
            "</sr:AuxiliaryEquipmentRequired>"
        )
    if region.additional_information is not None:
        out.append(
            f"<sr:AdditionalInformation>{escape(region.additional_information)}"
            "</sr:AdditionalInformation>"
        )
    return "".join(out)
