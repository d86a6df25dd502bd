"""Wall-clock time, injected so tests can replace it.

Deadlines inside trio use trio.current_time(); this clock is for the wall-clock
facts: certificate validity, threshold windows, response timestamps.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current UTC time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale, for windows and ages."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds
