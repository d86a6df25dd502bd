"""The soak's well-behaved client: open loop, keep-alive, one retry only when reclaimed.

Request j is due at start + j/rate on connection j mod K, and its latency counts from
its due time (no coordinated omission). A request whose connection closed before any
answer (an idle connection reclaimed to make room, or closed at idle timeout) is
sent again once on a new connection; one that times out is not (it may be in flight).
"""

from __future__ import annotations

from collections import Counter

import msgspec
import trio

from bench.client import RESPONSE_TIMEOUT_SECONDS, Connection, duis_code
from bench.corpus import Prepared
from bench.load import Latency, percentile, summarise

OPEN_LOOP_LEAD_SECONDS = 0.2


class Phase(msgspec.Struct):
    name: str
    sent: int
    answered: int
    unanswered: dict[str, int]
    retried: int
    http_status: dict[str, int]
    duis_codes: dict[str, int]
    unexpected_codes: int
    latency: Latency
    client_wake_lateness_p99_ms: float


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lateness: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.unanswered: Counter[str] = Counter()
        self.unexpected = 0
        self.retried = 0
        self.sent = 0


async def _one(conn: Connection, request: Prepared, due: float, tally: _Tally) -> None:
    wire, expected = request
    tally.sent += 1
    for attempt in (1, 2):
        try:
            with trio.fail_after(RESPONSE_TIMEOUT_SECONDS):
                status, body = await conn.exchange(wire)
        except trio.TooSlowError:
            tally.unanswered["timeout"] += 1
            await conn.close()
            return
        except (trio.BrokenResourceError, OSError, ValueError) as exc:
            await conn.close()
            if attempt == 1:  # closed before any answer: reclaimed while idle
                tally.retried += 1
                continue
            tally.unanswered[type(exc).__name__] += 1
            return
        tally.latencies.append(trio.current_time() - due)
        tally.statuses[str(status)] += 1
        code = duis_code(body) if status == 200 else f"HTTP {status}"
        tally.codes[code] += 1
        tally.unexpected += code not in expected
        return


async def well_behaved(
    address: tuple[str, int], slots: list[list[Prepared]], rate: float, name: str
) -> Phase:
    tally = _Tally()
    start = trio.current_time() + OPEN_LOOP_LEAD_SECONDS
    width = len(slots)

    async def connection(k: int) -> None:
        conn = Connection(address, None)
        try:
            for m, request in enumerate(slots[k]):
                due = start + (m * width + k) / rate
                if trio.current_time() < due:
                    await trio.sleep_until(due)
                    tally.lateness.append(trio.current_time() - due)
                await _one(conn, request, due, tally)
        finally:
            await conn.close()

    async with trio.open_nursery() as nursery:
        for k in range(width):
            nursery.start_soon(connection, k)
    return Phase(
        name=name,
        sent=tally.sent,
        answered=len(tally.latencies),
        unanswered=dict(tally.unanswered),
        retried=tally.retried,
        http_status=dict(sorted(tally.statuses.items())),
        duis_codes=dict(sorted(tally.codes.items())),
        unexpected_codes=tally.unexpected,
        latency=summarise(tally.latencies),
        client_wake_lateness_p99_ms=percentile(sorted(tally.lateness), 0.99) * 1000,
    )
