"""Technical Specification and GBCS versions, and the periods that make them valid.

SEC Section A3 as the consultation proposes it (§3.6): a Version of SMETS or CHTS has a
Principal Version Number and a Sub-Version Number (¶109: SMETS 2.1 is principal 2,
sub-version 1); GBCS is numbered the same way. Each version has an Installation and a
Maintenance Validity Period (¶112), each a start date and an optional end date: with no
end the period stays open (¶113).

Dates are GB calendar dates, as the SEC writes them. An end date is the last day of its
period: "following the end date" SMETS v1.1 may no longer be installed (¶96), so on the
end date itself it still may.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final, Literal
from zoneinfo import ZoneInfo

import msgspec

SpecName = Literal["SMETS", "CHTS"]
SPEC_NAMES: Final = ("SMETS", "CHTS")

# The SEC's dates are GB dates; a UTC instant near midnight belongs to the GB day.
GB_TIME_ZONE: Final = ZoneInfo("Europe/London")

# "SMETS v2.0" (the consultation), "SMETS V1.58" and "CHTS V1.4" (DUIS SMETSCHTSVersion),
# "SMETS 2.0". Numbers are bounded so a hostile value cannot make a huge integer.
_SPEC_TEXT = re.compile(r"\s*(SMETS|CHTS)\s*[vV]?\s*(\d{1,4})\.(\d{1,4})\s*\Z", re.IGNORECASE)
_GBCS_TEXT = re.compile(r"\s*(?:GBCS\s*[vV]?\s*)?(\d{1,4})\.(\d{1,4})\s*\Z", re.IGNORECASE)


class VersionError(ValueError):
    """A version text or a period does not have its expected form."""


class TsVersion(msgspec.Struct, frozen=True, order=True):
    """A version of SMETS or CHTS; orders by (spec, principal, sub-version)."""

    spec: SpecName
    principal: int
    sub: int

    def __str__(self) -> str:
        return f"{self.spec} v{self.principal}.{self.sub}"

    def duis_text(self) -> str:
        """The form Read Inventory and Device Pre-notification use: "SMETS V2.0"."""
        return f"{self.spec} V{self.principal}.{self.sub}"

    def is_lesser_than(self, other: TsVersion) -> bool:
        """A backwards step from `other` (¶127): same specification, lower number."""
        return self.spec == other.spec and (self.principal, self.sub) < (
            other.principal,
            other.sub,
        )


class GbcsVersion(msgspec.Struct, frozen=True, order=True):
    principal: int
    sub: int

    def __str__(self) -> str:
        return f"{self.principal}.{self.sub}"


class Period(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """[start, end], both days included; no end: open (¶113)."""

    start: dt.date
    end: dt.date | None = None

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise msgspec.ValidationError(f"period ends ({self.end}) before it starts")

    def contains(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)

    def days_left(self, day: dt.date) -> int | None:
        """Days after `day` that are still in the period; None while it is open."""
        if self.end is None:
            return None
        return max(0, (self.end - day).days)

    def __str__(self) -> str:
        return f"{self.start.isoformat()} to {self.end.isoformat() if self.end else 'open'}"


def parse_ts_version(text: str) -> TsVersion:
    match = _SPEC_TEXT.match(text)
    if match is None:
        raise VersionError(f"not a SMETS or CHTS version (e.g. 'SMETS v2.0'): {text[:40]!r}")
    spec: SpecName = "SMETS" if match.group(1).upper() == "SMETS" else "CHTS"
    return TsVersion(spec, int(match.group(2)), int(match.group(3)))


def parse_gbcs_version(text: str) -> GbcsVersion:
    match = _GBCS_TEXT.match(text)
    if match is None:
        raise VersionError(f"not a GBCS version (e.g. '1.0'): {text[:40]!r}")
    return GbcsVersion(int(match.group(1)), int(match.group(2)))


def gb_date(now: dt.datetime) -> dt.date:
    """The GB calendar day of an aware instant (the day the SEC's dates speak of)."""
    if now.tzinfo is None:
        raise ValueError("gb_date needs a timezone-aware datetime")
    return now.astimezone(GB_TIME_ZONE).date()
