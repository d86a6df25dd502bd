"""The maintenance report: installed devices whose version has lost (or is losing) its MVP.

¶124: Smart Metering Systems must be maintained at all times to a version with a current
Maintenance Validity Period. A Sub-Version replaced by a retrospective one stops being
valid after its end date (¶109, ¶111), so its devices must be upgraded by then: those
whose MVP ends within `warn_within_days` are listed as "deadline_near".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from gateway.core.techspec.estate import IN_PREMISES, EstateDevice, device_versions
from gateway.core.techspec.rules import regulated
from gateway.core.techspec.tables import Tables

DEFAULT_WARN_WITHIN_DAYS: Final = 90
MAX_WARN_WITHIN_DAYS: Final = 3650  # ten years

Standing = Literal["no_maintenance_validity", "deadline_near", "unknown_version"]
_ORDER: Final[dict[Standing, int]] = {
    "no_maintenance_validity": 0,
    "deadline_near": 1,
    "unknown_version": 2,
}


class StandingRow(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    device_type: str
    version: str | None  # "SMETS v2.0"; None when not known
    standing: Standing
    maintenance_end: dt.date | None = None
    days_left: int | None = None  # days after `on` still in the MVP
    superseded_by: str | None = None  # the latest later Sub-Version (¶109)


def maintenance_report(
    tables: Tables,
    devices: Iterable[EstateDevice],
    on: dt.date,
    *,
    warn_within_days: int = DEFAULT_WARN_WITHIN_DAYS,
    include_unknown: bool = False,
) -> list[StandingRow]:
    """Installed devices needing attention, worst first (then soonest deadline, then ID).

    `include_unknown` adds devices whose version neither the inventory nor the product
    tables give, or whose version the tables do not list.
    """
    rows = []
    for device in devices:
        if device.status not in IN_PREMISES or not regulated(device.device_type):
            continue
        versions = device_versions(tables, device)
        validity = None if versions is None else tables.validity(versions.version)
        if versions is None or validity is None:
            if include_unknown:
                rows.append(
                    StandingRow(
                        device_id=device.device_id,
                        device_type=device.device_type,
                        version=None if versions is None else str(versions.version),
                        standing="unknown_version",
                    )
                )
            continue
        later = tables.later_sub_versions(versions.version)
        mvp = validity.maintenance
        days_left = mvp.days_left(on)
        if not mvp.contains(on):
            standing: Standing = "no_maintenance_validity"
            days_left = 0
        elif days_left is not None and days_left <= warn_within_days:
            standing = "deadline_near"
        else:
            continue
        rows.append(
            StandingRow(
                device_id=device.device_id,
                device_type=device.device_type,
                version=str(versions.version),
                standing=standing,
                maintenance_end=mvp.end,
                days_left=days_left,
                superseded_by=str(later[-1]) if later else None,
            )
        )
    rows.sort(key=lambda r: (_ORDER[r.standing], r.days_left or 0, r.device_id))
    return rows
