"""How journals store time: integer microseconds since the epoch, UTC.

Integers sort and compare in SQL exactly; aware datetimes only, so no row
depends on the machine's local time zone.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US: Final = dt.timedelta(microseconds=1)


def to_us(t: dt.datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("journal times must be timezone-aware")
    return (t - _EPOCH) // _US


def from_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)
