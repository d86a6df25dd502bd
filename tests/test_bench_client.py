"""The open-loop client's latency rule (bench/client.py), on trio's mock clock.

A request counts from its due time when its connection was still waiting on the
gateway then (no coordinated omission); when the connection was free, how late the
client itself woke to send it is not the gateway's, and is taken out (and kept in
`latencies_from_due`).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bench.client import Connection, OneRequest, Tally, open_loop, record_answer
from bench.corpus import Prepared

ANSWER: bytes = b"<sr:ResponseCode>I0</sr:ResponseCode>"
EXPECTED: frozenset[str] = frozenset({"I0"})


def _slots(connections: int, per_connection: int) -> list[list[Prepared]]:
    return [[(b"", EXPECTED)] * per_connection for _ in range(connections)]


def _answering_after(seconds: float, seen: list[tuple[float, float, float]]) -> OneRequest:
    """A stand-in for one exchange: the gateway answers `seconds` after the send."""

    async def one(
        conn: Connection, request: Prepared, due: float, client_late: float, tally: Tally
    ) -> None:
        seen.append((trio.current_time(), due, client_late))
        await trio.sleep(seconds)
        record_answer(tally, 200, ANSWER, request[1], due, client_late)

    return one


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_connection_still_busy_at_its_due_time_counts_the_whole_wait(
    mock_clock: trio.testing.MockClock,
) -> None:
    # 10/s on one connection, and every answer takes 0.25 s: each request after the
    # first is due before its connection is free, so its queue counts.
    seen: list[tuple[float, float, float]] = []
    tally = await open_loop(
        ("127.0.0.1", 9), _slots(1, 3), None, 10.0, _answering_after(0.25, seen)
    )
    assert [late for _, _, late in seen] == [0.0, 0.0, 0.0]
    assert tally.latencies == pytest.approx([0.25, 0.40, 0.55])
    assert tally.latencies_from_due == pytest.approx(tally.latencies)
    assert tally.wake_lateness == pytest.approx([0.0])  # only the first slept


async def test_the_clients_own_lateness_while_free_is_taken_out(
    mock_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client's timer wakes 3 ms late; the gateway answers in 1 ms.
    on_time = trio.sleep_until

    async def late_sleep_until(deadline: float) -> None:
        await on_time(deadline + 0.003)

    monkeypatch.setattr(trio, "sleep_until", late_sleep_until)
    seen: list[tuple[float, float, float]] = []
    tally = await open_loop(
        ("127.0.0.1", 9), _slots(2, 3), None, 20.0, _answering_after(0.001, seen)
    )
    assert len(seen) == 6
    for sent, due, late in seen:
        assert late == pytest.approx(0.003)
        assert sent == pytest.approx(due + 0.003)
    assert tally.latencies == pytest.approx([0.001] * 6)
    assert tally.latencies_from_due == pytest.approx([0.004] * 6)
    assert tally.wake_lateness == pytest.approx([0.003] * 6)
