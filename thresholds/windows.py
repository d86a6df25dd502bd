"""Sliding-window counters: the arithmetic under every threshold.

Both counters answer "how many counted requests in the window ending at `now`"
and take new counts, in amortised O(1). Times are float seconds on one scale
(wall-clock epoch seconds when processes must agree, e.g. with Redis).

`ExactWindow` keeps the timestamps themselves, at most `capacity` of them: a
request at time t is counted at `now` exactly while ``now - window < t <= now``.
Decisions only ever compare "count so far + 1" with a limit no larger than the
capacity, so forgetting all but the newest `capacity` stamps loses nothing: the
count saturates at the capacity and is exact below it.

`BucketWindow` keeps `bucket_count + 1` bucket totals on absolute bucket
indices ``floor(t / width)`` with ``width = window / bucket_count``. It counts
every bucket that overlaps the window, the oldest one whole, so it never counts
less than the truth and never more than the count over a window one bucket
longer::

    exact(window) <= BucketWindow.count <= exact(window + width)

i.e. it may hold a request up to one bucket width early, never late. With the
default 120 buckets: 0.5 s on a minute, 30 s on an hour, 12 min on a day.
Absolute indices let processes that share buckets (Redis) agree on them.

Clocks that step backwards are clamped: a stamp older than the newest one is
counted as the newest (it would otherwise break the ordering the O(1) expiry
relies on), so a backwards step can only make a count linger, not vanish.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol


class WindowCounter(Protocol):
    window_seconds: float

    def count(self, now: float) -> int:
        """Requests counted in (now - window, now]; expires older ones."""
        ...

    def add(self, now: float, n: int = 1) -> None:
        """Count `n` requests at `now`."""
        ...


class ExactWindow:
    __slots__ = ("capacity", "stamps", "window_seconds")

    def __init__(self, window_seconds: float, capacity: int) -> None:
        self.window_seconds = window_seconds
        self.capacity = capacity
        self.stamps: deque[float] = deque(maxlen=capacity)

    def count(self, now: float) -> int:
        stamps = self.stamps
        edge = now - self.window_seconds
        while stamps and stamps[0] <= edge:
            stamps.popleft()
        return len(stamps)

    def add(self, now: float, n: int = 1) -> None:
        stamps = self.stamps
        if stamps and now < stamps[-1]:
            now = stamps[-1]
        if n == 1:
            stamps.append(now)
        else:
            stamps.extend([now] * min(n, self.capacity))

    def resized(self, capacity: int) -> ExactWindow:
        """The same stamps under a new capacity (newest kept), for config reloads."""
        other = ExactWindow(self.window_seconds, capacity)
        other.stamps.extend(self.stamps)
        return other


class BucketWindow:
    __slots__ = ("counts", "head", "slots", "total", "width", "window_seconds")

    def __init__(self, window_seconds: float, bucket_count: int) -> None:
        self.window_seconds = window_seconds
        self.width = window_seconds / bucket_count
        # bucket_count full buckets plus the one the window's old edge falls in.
        self.slots = bucket_count + 1
        self.counts = [0] * self.slots
        self.head = -(2**62)  # newest absolute bucket index seen
        self.total = 0

    def index(self, now: float) -> int:
        return int(now // self.width)

    def _advance(self, idx: int) -> None:
        head = self.head
        if idx <= head:
            return
        slots = self.slots
        if idx - head >= slots:
            if self.total:
                self.counts = [0] * slots
                self.total = 0
        else:
            counts = self.counts
            for i in range(head + 1, idx + 1):
                s = i % slots
                self.total -= counts[s]
                counts[s] = 0
        self.head = idx

    def count(self, now: float) -> int:
        idx = int(now // self.width)
        if idx > self.head:
            self._advance(idx)
        return self.total

    def add(self, now: float, n: int = 1) -> None:
        idx = int(now // self.width)
        if idx > self.head:
            self._advance(idx)
        # Into the newest bucket: idx < head only when the clock stepped back.
        self.counts[self.head % self.slots] += n
        self.total += n

    def oldest_index(self) -> int:
        """The oldest bucket index still inside the window at `head`."""
        return self.head - self.slots + 1

    def load_summary(self, head: int, lo: int, known: Sequence[int], total: int) -> None:
        """Load a shared counter read as a summary, as of bucket index `head`.

        `known[j]` is the total of bucket `lo + j`; the rest of `total` lies in
        later buckets and is put in the newest one, so it expires no earlier
        than it truly does (conservative). The view is exact while the head
        stays at or below `lo + len(known) + slots - 1` (see `exact_through`).
        """
        slots = self.slots
        self.counts = counts = [0] * slots
        self.head = max(head, self.head)
        oldest = self.head - slots + 1
        rest = total
        kept = 0
        for j, n in enumerate(known):
            rest -= n
            idx = lo + j
            if oldest <= idx <= self.head:
                counts[idx % slots] += n
                kept += n
        counts[self.head % slots] += rest
        self.total = kept + rest

    def exact_through(self, lo: int, known_count: int) -> int:
        """The last head index at which a summary loaded with `lo` is still exact."""
        return lo + known_count + self.slots - 1

    def add_index(self, idx: int, n: int) -> None:
        """Count `n` in bucket `idx` if it is still inside the window (re-applying own deltas)."""
        if self.head - self.slots < idx <= self.head:
            self.counts[idx % self.slots] += n
            self.total += n
