"""The soak's well-behaved client: bench/client.py's open loop, one retry when reclaimed.

Request j is due at start + j/rate on connection j mod K, and its latency counts from
its due time (no coordinated omission), less the client's own lateness in sending it
(bench/client.py). A request whose connection closed before any
answer (an idle connection reclaimed to make room, or closed at idle timeout) is
sent again once on a new connection; one that times out is not (it may be in flight).
"""

from __future__ import annotations

import msgspec
import trio

from bench.client import (
    RESPONSE_TIMEOUT_SECONDS,
    Connection,
    Tally,
    open_loop,
    record_answer,
)
from bench.corpus import Prepared
from bench.load import Latency, percentile, summarise


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


async def _one_retrying(
    conn: Connection, request: Prepared, due: float, client_late: float, tally: Tally
) -> None:
    wire, expected = request
    for attempt in (1, 2):
        try:
            with trio.fail_after(RESPONSE_TIMEOUT_SECONDS):
                status, body = await conn.exchange(wire)
        except trio.TooSlowError:
            tally.failures["TooSlowError"] += 1
            await conn.close()
            return
        except (trio.BrokenResourceError, OSError, ValueError) as exc:
            await conn.close()
            if attempt == 1:  # closed before any answer: reclaimed while idle
                tally.retried += 1
                continue
            tally.failures[type(exc).__name__] += 1
            return
        record_answer(tally, status, body, expected, due, client_late)
        return


async def well_behaved(
    address: tuple[str, int], slots: list[list[Prepared]], rate: float, name: str
) -> Phase:
    tally = await open_loop(address, slots, None, rate, _one_retrying)
    answered = len(tally.latencies)
    return Phase(
        name=name,
        sent=sum(len(slot) for slot in slots),
        answered=answered,
        unanswered=dict(tally.failures),
        retried=tally.retried,
        http_status={str(k): v for k, v in sorted(tally.statuses.items())},
        duis_codes=dict(sorted(tally.codes.items())),
        unexpected_codes=tally.unexpected,
        latency=summarise(tally.latencies),
        client_wake_lateness_p99_ms=percentile(sorted(tally.wake_lateness), 0.99) * 1000,
    )
