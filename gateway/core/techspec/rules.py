"""The version rules: which Technical Specification versions may be installed and kept.

Each rule cites the consultation paragraph it comes from (September 2016, §1.2 and §3.6).
A check returns the refusals it found, in a fixed order (specification, validity period,
backwards step, compatibility, GBCS); an empty tuple means the step is allowed.
Pure functions of the tables, the devices' versions and the GB day (`on`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Final, Literal

import msgspec

from gateway.core.techspec.tables import SPEC_FOR_TYPE, Conformance, SpecValidity, Tables
from gateway.core.techspec.versions import GbcsVersion, TsVersion
from mmc import applicability as types

Reason = Literal[
    "unknown_version",  # the tables do not list the version
    "wrong_specification",  # e.g. an ESME said to meet CHTS
    "product_mismatch",  # the product tables say the model meets another version
    "no_installation_validity",  # ¶114, ¶123, ¶33
    "no_maintenance_validity",  # ¶31, ¶124, ¶125, ¶126
    "no_validity",  # neither period includes the day (pre-notification)
    "backwards_step",  # ¶127, ¶32
    "incompatible",  # ¶122, ¶126
    "gbcs_not_applicable",  # ¶117
]

SMART_METERS: Final = frozenset({types.ESME, types.GSME})
COMMUNICATIONS_HUB: Final = frozenset({types.CHF, types.GPF})
# Not part of the Smart Metering System for the supply licences; may come later (¶125).
AUXILIARY: Final = frozenset({types.IHD, types.PPMID, types.HCALCS})


class Refusal(msgspec.Struct, frozen=True):
    reason: Reason
    paragraph: str  # where the rule comes from, e.g. "¶114, ¶123"
    detail: str

    def __str__(self) -> str:
        return f"{self.detail} ({self.paragraph})"


class DeviceVersions(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules need of a device: its type and the versions it meets."""

    device_type: str
    version: TsVersion
    gbcs: GbcsVersion | None = None  # None: not known (not checked)
    device_id: str | None = None

    @property
    def conformance(self) -> Conformance:
        return (self.version, self.gbcs)

    def __str__(self) -> str:
        name = f"{self.device_type} {self.device_id}" if self.device_id else self.device_type
        gbcs = f" with GBCS v{self.gbcs}" if self.gbcs is not None else ""
        return f"{name} ({self.version}{gbcs})"


Decision = tuple[Refusal, ...]
ALLOWED: Final[Decision] = ()


def regulated(device_type: str) -> bool:
    """CADs meet no Technical Specification, so no version rule applies to them."""
    return device_type in SPEC_FOR_TYPE


def check_installation(tables: Tables, device: DeviceVersions, on: dt.date) -> Decision:
    """A Smart Meter or Communications Hub installed as part of a Smart Metering System.

    ¶114, ¶123: it counts only if its SMETS or CHTS version has an Installation Validity
    Period that includes the day of installation. ¶125: IHDs, PPMIDs and HCALCS need
    only a current Maintenance Validity Period, whenever they are installed.
    """
    if device.device_type in AUXILIARY:
        return check_auxiliary(tables, device, on)
    validity, refused = _validity(tables, device)
    if validity is None:
        return refused
    found: list[Refusal] = []
    if not validity.installation.contains(on):
        found.append(
            Refusal(
                "no_installation_validity",
                "¶114, ¶123",
                f"{validity.version} has no Installation Validity Period including {on} "
                f"(IVP {validity.installation})",
            )
        )
    found += _gbcs(validity, device, on)
    return tuple(found)


def check_auxiliary(tables: Tables, device: DeviceVersions, on: dt.date) -> Decision:
    """¶125: an IHD, PPMID or HCALCS needs a version with a current MVP, no IVP."""
    validity, refused = _validity(tables, device)
    if validity is None:
        return refused
    return tuple(_current_mvp(tables, validity, on, "¶125")) + _gbcs(validity, device, on)


def check_maintenance(
    tables: Tables,
    candidate: DeviceVersions,
    on: dt.date,
    *,
    previous: DeviceVersions | None,
    premises: Iterable[DeviceVersions],
) -> Decision:
    """A device replaced or upgraded (firmware) as maintenance of an installed system.

    ¶31, ¶124: it must meet a version with a current Maintenance Validity Period (even
    if that version can no longer be installed). ¶127 and §1.2 ¶32: never a "lesser"
    version than the one `previous` met (the device before the upgrade, or the device it
    replaces): the same version or any later one. ¶126: compatible with the other devices
    in the premises (`premises`), as they will be after the maintenance. ¶117: its GBCS
    version within its Applicability Period.
    """
    validity, refused = _validity(tables, candidate)
    if validity is None:
        return refused
    found = _current_mvp(tables, validity, on, "¶31, ¶124")
    if previous is not None and candidate.version.is_lesser_than(previous.version):
        found.append(
            Refusal(
                "backwards_step",
                "¶127, ¶32",
                f"{candidate.version} is a backwards step from {previous.version}",
            )
        )
    found += check_compatibility(tables, candidate, premises)
    found += _gbcs(validity, candidate, on)
    return tuple(found)


def check_compatibility(
    tables: Tables, candidate: DeviceVersions, premises: Iterable[DeviceVersions]
) -> Decision:
    """¶122, ¶126: the devices in the premises meet versions the matrix makes compatible.

    For a Communications Hub the DCC is not held to compatibility with IHDs (¶126: it
    cannot know which IHDs are in use), so IHDs are left out of a hub's check.
    """
    if not regulated(candidate.device_type):
        return ALLOWED
    found = []
    for other in premises:
        if not regulated(other.device_type):
            continue
        if candidate.device_type in COMMUNICATIONS_HUB and other.device_type == types.IHD:
            continue
        if not tables.compatible(candidate.conformance, other.conformance):
            found.append(
                Refusal("incompatible", "¶122, ¶126", f"{candidate} is not compatible with {other}")
            )
    return tuple(found)


def check_system_replacement(
    tables: Tables, devices: Sequence[DeviceVersions], on: dt.date
) -> Decision:
    """§1.2 ¶33: a whole Smart Metering System replaced needs versions with a current IVP
    (after the SMETS1 end date a SMETS1 system cannot replace another); its devices must
    also be compatible with each other (¶126)."""
    found: list[Refusal] = []
    for index, device in enumerate(devices):
        if device.device_type in SMART_METERS | COMMUNICATIONS_HUB:
            found += [
                _cite(r, "¶33") if r.reason == "no_installation_validity" else r
                for r in check_installation(tables, device, on)
            ]
        else:
            found += check_auxiliary(tables, device, on)
        found += check_compatibility(tables, device, devices[index + 1 :])
    return tuple(found)


def check_pre_notification(tables: Tables, device: DeviceVersions, on: dt.date) -> Decision:
    """Whether a device of this version may be installed at all on `on`.

    A pre-notified device may become part of a new system (IVP, ¶114, ¶123), replace a
    component of an installed one (MVP, ¶31) or be an auxiliary device (MVP, ¶125): which
    one is known only when it is commissioned. So here either period will do; the
    commissioning check applies the rule for the actual case.
    """
    validity, refused = _validity(tables, device)
    if validity is None:
        return refused
    found: list[Refusal] = []
    if not (validity.installation.contains(on) or validity.maintenance.contains(on)):
        found.append(
            Refusal(
                "no_validity",
                "¶114, ¶124, ¶125",
                f"{validity.version} has neither an Installation nor a Maintenance Validity "
                f"Period including {on} (IVP {validity.installation}, MVP {validity.maintenance})",
            )
        )
    found += _gbcs(validity, device, on)
    return tuple(found)


def _validity(tables: Tables, device: DeviceVersions) -> tuple[SpecValidity | None, Decision]:
    expected = SPEC_FOR_TYPE.get(device.device_type)
    if expected is None:  # a CAD: no Technical Specification applies, nothing to check
        return None, ALLOWED
    if expected != device.version.spec:
        return None, (
            Refusal(
                "wrong_specification",
                "¶94",
                f"a {device.device_type} meets {expected}, not {device.version.spec}",
            ),
        )
    validity = tables.validity(device.version)
    if validity is None:
        return None, (
            Refusal(
                "unknown_version",
                "¶107",
                f"{device.version} is not in the TS Applicability Tables",
            ),
        )
    return validity, ALLOWED


def _current_mvp(
    tables: Tables, validity: SpecValidity, on: dt.date, paragraph: str
) -> list[Refusal]:
    if validity.maintenance.contains(on):
        return []
    detail = (
        f"{validity.version} has no Maintenance Validity Period including {on} "
        f"(MVP {validity.maintenance})"
    )
    later = tables.later_sub_versions(validity.version)
    if later:  # ¶109, ¶111: replaced by a retrospective Sub-Version
        detail += f"; superseded by Sub-Version {later[-1]} (¶109, ¶111)"
    return [Refusal("no_maintenance_validity", paragraph, detail)]


def _gbcs(validity: SpecValidity, device: DeviceVersions, on: dt.date) -> Decision:
    """¶117: a GBCS version is relevant to a version only within its Applicability Period."""
    if device.gbcs is None:
        return ALLOWED
    period = validity.gbcs.get(device.gbcs)
    if period is None:
        detail = f"GBCS v{device.gbcs} is not a relevant GBCS version of {validity.version}"
    elif not period.contains(on):
        detail = (
            f"the Applicability Period of GBCS v{device.gbcs} for {validity.version} "
            f"({period}) does not include {on}"
        )
    else:
        return ALLOWED
    return (Refusal("gbcs_not_applicable", "¶117", detail),)


def _cite(refusal: Refusal, paragraph: str) -> Refusal:
    return msgspec.structs.replace(refusal, paragraph=paragraph)
