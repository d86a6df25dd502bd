"""The DCC's decisions under the version and Install and Leave rules, as DUIS codes.

Device Pre-notification (12.2) and Commission Device (8.1.1) are refused when the device's
version may not be installed (rules.py); Communications Hub Status Update - Install No SM
WAN (8.14.2) is refused where proactive Install and Leave is not permitted
(install_leave.py); Read Inventory (8.2) shows each device's versions.

Which code a refusal carries: DUIS has service-specific codes for 12.1 (E120101-E120103)
and 12.2 (E120201, E120203, E120204, E120207), but the sources this project holds (the
XSDs, the consultation, the DCC's public repositories) give only their names, not their
meanings, so we do not guess at them. The defaults are generic codes whose meaning is
known: E11 ("Service Request not compatible with the specified device": the device's
version is not one the request may act on) and E19 ("Device ID invalid": the nearest
code for "the coverage database holds no such premises"). An operator who knows the
DUIS table sets others in `RefusalCodes`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated

import msgspec

from gateway.core.techspec.bodies import NoWanInstall, PreNotification
from gateway.core.techspec.coverage import (
    AddressKey,
    CoverageTable,
    PremisesKey,
    UprnKey,
    fingerprint,
)
from gateway.core.techspec.estate import (
    Estate,
    EstateDevice,
    Premises,
    device_versions,
    installation_context,
)
from gateway.core.techspec.install_leave import (
    InstallLeavePolicy,
    Notified,
    classify_no_wan_install,
)
from gateway.core.techspec.rules import (
    Decision,
    DeviceVersions,
    Refusal,
    check_auxiliary,
    check_compatibility,
    check_installation,
    check_maintenance,
    check_pre_notification,
    regulated,
)
from gateway.core.techspec.tables import Tables
from gateway.core.techspec.versions import VersionError, parse_ts_version

CodeText = Annotated[str, msgspec.Meta(pattern=r"^[EW][0-9]{1,6}$")]


class RefusalCodes(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ResponseCode each refusal carries (see the module docstring for the choice)."""

    installation_not_valid: CodeText = "E11"  # 12.2, 8.1.1
    install_and_leave_not_permitted: CodeText = "E11"  # 8.14.2
    unknown_premises: CodeText = "E19"  # 12.1


class VersionAnswer(msgspec.Struct, frozen=True):
    code: str  # I0, or the refusal's code
    refusals: Decision = ()

    @property
    def allowed(self) -> bool:
        return not self.refusals


def pre_notification_answer(
    tables: Tables, notice: PreNotification, on: dt.date, codes: RefusalCodes
) -> VersionAnswer:
    """12.2: the device's version (as stated, or from the product tables) must be one that
    may be installed today for some purpose (rules.check_pre_notification)."""
    if not regulated(notice.device_type):
        return VersionAnswer("I0")
    product = None
    if notice.firmware_version is not None:
        product = tables.product(notice.manufacturer, notice.model, notice.firmware_version)
    found: list[Refusal] = []
    if notice.smets_chts_version is not None:
        try:
            version = parse_ts_version(notice.smets_chts_version)
        except VersionError as exc:
            return _refused(codes, Refusal("unknown_version", "¶109", str(exc)))
        if product is not None and product.version != version:
            found.append(
                Refusal(
                    "product_mismatch",
                    "¶94",
                    f"{notice.manufacturer} {notice.model} firmware {notice.firmware_version} "
                    f"meets {product.version}, not {version}",
                )
            )
    elif product is not None:
        version = product.version
    else:
        return _refused(
            codes,
            Refusal(
                "unknown_version",
                "¶94",
                "no SMETSCHTSVersion given and the product tables do not know "
                f"{notice.manufacturer} {notice.model} firmware {notice.firmware_version}",
            ),
        )
    gbcs = product.gbcs if product is not None and product.version == version else None
    device = DeviceVersions(
        device_type=notice.device_type, version=version, gbcs=gbcs, device_id=notice.device_id
    )
    found += check_pre_notification(tables, device, on)
    return _refused(codes, *found) if found else VersionAnswer("I0")


def commissioning_answer(
    tables: Tables,
    estate: Estate,
    device_id: str,
    on: dt.date,
    codes: RefusalCodes,
    *,
    premises: Premises | None = None,
) -> VersionAnswer:
    """8.1.1: the rule for what commissioning this device means (estate.installation_context):
    a new system needs a current IVP (¶114, ¶123), a replaced component a current MVP, no
    backwards step from what it replaces (¶31, ¶127), an IHD/PPMID/HCALCS a current MVP
    (¶125); all must be compatible with the devices already in the premises (¶126)."""
    device = estate.get(device_id)
    if device is None:
        return VersionAnswer("E19")  # access control answers this first; kept for safety
    if not regulated(device.device_type):
        return VersionAnswer("I0")
    premises = premises if premises is not None else Premises(estate)
    versions = device_versions(tables, device)
    if versions is None:
        return _refused(
            codes,
            Refusal(
                "unknown_version",
                "¶94",
                f"neither the inventory nor the product tables give the version of {device_id}",
            ),
        )
    present = _versions_of(tables, premises.present(device))
    context = installation_context(premises, device)
    found: Decision
    if context.kind == "auxiliary":
        found = check_auxiliary(tables, versions, on) + check_compatibility(
            tables, versions, present
        )
    elif context.kind == "new_system":
        found = check_installation(tables, versions, on) + check_compatibility(
            tables, versions, present
        )
    else:
        replaced = _versions_of(tables, (estate.get(i) for i in context.replaces))
        previous = max(
            (v for v in replaced if v.version.spec == versions.version.spec),
            key=lambda v: v.version,
            default=None,
        )
        found = check_maintenance(tables, versions, on, previous=previous, premises=present)
    return _refused(codes, *found) if found else VersionAnswer("I0")


class NoWanAnswer(msgspec.Struct, frozen=True):
    code: str
    event: Notified | None  # to apply to the hub's case when accepted
    refusal: str | None = None


def no_wan_install_answer(
    user_id: str,
    install: NoWanInstall,
    premises: PremisesKey | None,
    coverage: CoverageTable | None,
    now: dt.datetime,
    policy: InstallLeavePolicy,
    codes: RefusalCodes,
    *,
    duis_version: str | None = None,
) -> NoWanAnswer:
    """8.14.2: reactive or proactive Install and Leave (§1.1), or refused.

    The remedy window runs from `now`, when the DCC is told (¶23), not from the
    InstallDateTime the supplier reports. The case remembers what the database said
    about the premises then, so only news there counts as coverage arriving, and the
    request's DUIS version, which the alert is built under.
    """
    found = None if coverage is None or premises is None else coverage.lookup(premises)
    verdict = classify_no_wan_install(found, policy)
    if verdict.kind is None:
        return NoWanAnswer(codes.install_and_leave_not_permitted, None, verdict.refusal)
    return NoWanAnswer(
        "I0",
        Notified(
            user_id=user_id,
            hub_id=install.hub_id,
            mpxn=install.mpxn,
            premises=premises,
            kind=verdict.kind,
            anticipated_date=verdict.anticipated_date,
            at=now,
            coverage_seen=None if found is None else fingerprint(found),
            duis_version=duis_version,
        ),
    )


def premises_key(estate: Estate, hub_id: str, mpxn: str) -> PremisesKey | None:
    """The hub's address as the coverage database keys it: its UPRN, else its postcode
    (and address identifier); else those of a device on the hub with that MPxN."""
    hub = estate.get(hub_id)
    if hub is not None and (key := _address(hub)) is not None:
        return key
    # Rare (8.14.2 only): a scan of the inventory for the meter at that MPxN.
    for device in estate:
        if device.chf_id == hub_id and device.mpxn == mpxn and (key := _address(device)):
            return key
    return None


def _address(device: EstateDevice) -> PremisesKey | None:
    if device.uprn is not None:
        return UprnKey(device.uprn)
    if device.postcode is not None:
        return AddressKey(device.postcode, device.address_identifier or "")
    return None


def inventory_versions(
    tables: Tables | None, device: EstateDevice
) -> tuple[str | None, str | None]:
    """8.2: (SMETSCHTSVersion, DeviceGBCSVersion) as Read Inventory shows them, e.g.
    ("SMETS V2.0", "1.0"); None where neither the inventory nor the tables know."""
    if tables is None:
        text = device.technical_specification
        return (_duis_text(text) if text else None), device.gbcs_version
    versions = device_versions(tables, device)
    if versions is None:
        return None, None
    return versions.version.duis_text(), None if versions.gbcs is None else str(versions.gbcs)


def _duis_text(text: str) -> str | None:
    try:
        return parse_ts_version(text).duis_text()
    except VersionError:
        return None


def _versions_of(tables: Tables, devices: Iterable[EstateDevice | None]) -> list[DeviceVersions]:
    found = []
    for device in devices:
        if device is not None and (versions := device_versions(tables, device)) is not None:
            found.append(versions)
    return found


def _refused(codes: RefusalCodes, *refusals: Refusal) -> VersionAnswer:
    return VersionAnswer(codes.installation_not_valid, tuple(refusals))
