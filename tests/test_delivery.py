"""Delivery to a real User endpoint: an h11 server on loopback, no mocks.

Backoff waits run on a mock clock that jumps when the run is idle. pytest-trio's
`autojump_clock` jumps after zero idle time, and a SQLite commit running in a
worker thread counts as idle: the trio thread then spins, jumping the clock and
holding the GIL, which starves the commit thread (tens of milliseconds per batch)
while virtual time races ahead. `patient_autojump_clock` waits a few real
milliseconds of idleness before jumping, so commits finish first and jumps
happen only when the run really waits for a timer. Even so, tests never wait
under one long deadline: `wait_until` polls once per virtual second, so any
early jump moves time by at most that much. HTTP exchanges on loopback always
leave a task runnable or a socket ready, so they are never idle mid-request.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from bench.ports import free_ports
from gateway.core.config import DeliveryConfig
from gateway.edge.delivery import backoff_delay, classify_status, retry_after_seconds, run_delivery
from gateway.edge.metrics import Metrics
from gateway.stores.outbox import OutboundMessage, open_outbox
from tests.receiver import Receiver

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
MAX_POLLS = 5_000  # virtual seconds before wait_until gives up: a hang, not slowness
AUTOJUMP_IDLE_SECONDS = 0.005  # real idle time before the mock clock jumps
FAST = DeliveryConfig(
    backoff_base_seconds=1.0,
    backoff_cap_seconds=8.0,
    max_attempts=1_000,
    max_active_users=2,  # fewer than the Users in the tests: slots must turn over
    max_messages_per_turn=3,
)


@pytest.fixture
def patient_autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=AUTOJUMP_IDLE_SECONDS)


def message(base_url: str, user: str, n: int) -> OutboundMessage:
    return OutboundMessage(
        message_id=f"{user}-{n}",
        user_id=user,
        url=f"{base_url}/{user}",
        body=f"<sr:Response>{user} {n}</sr:Response>".encode(),
        created_at=T0,
    )


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(MAX_POLLS):
        if condition():
            return
        await trio.sleep(1.0)
    raise AssertionError("condition not reached")


async def test_endpoint_down_then_back_delivers_each_once_in_order(
    tmp_path: Path, patient_autojump_clock: trio.testing.MockClock
) -> None:
    users = ["U1", "U2", "U3", "U4"]
    port = free_ports()  # nothing listens yet: connections are refused
    base = f"http://127.0.0.1:{port}"
    # Phases follow events, not virtual time: how far the mock clock runs during
    # commits depends on the machine, so "down until t+60" would mean little.
    receiver = Receiver(lambda seen: 503 if len(receiver.attempts) < 20 else 200)
    metrics = Metrics()
    sample = metrics.registry.get_sample_value

    def retries() -> float:
        return sample("duisgw_deliveries_total", {"outcome": "retry"}) or 0.0

    async with open_outbox(tmp_path / "outbox.db", metrics=metrics) as outbox:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(run_delivery, outbox, FAST, metrics=metrics))
            for n in range(8):  # Users interleaved
                for user in users:
                    await outbox.put(message(base, user, n))
            await wait_until(lambda: retries() >= 6)
            await nursery.start(receiver.serve, port)  # up, but answering 503 for a while
            for n in range(8, 12):
                for user in users:
                    await outbox.put(message(base, user, n))
            await wait_until(lambda: outbox.pending_count() == 0)
            nursery.cancel_scope.cancel()
        assert await outbox.dead_letters() == []

    for user in users:
        assert receiver.accepted_ids(f"/{user}") == [f"{user}-{n}" for n in range(12)]
    assert [s.sequence for s in receiver.accepted if s.path == "/U1"] == list(range(1, 13))
    assert len({s.message_id for s in receiver.accepted}) == 48  # exactly once each
    assert len(receiver.attempts) == 48 + 20
    assert max(s.attempt for s in receiver.attempts) > 2  # refusals counted as attempts
    first = receiver.accepted[0]
    assert first.content_type == "application/xml"
    assert first.body == f"<sr:Response>{first.path[1:]} 0</sr:Response>".encode()
    assert sample("duisgw_deliveries_total", {"outcome": "delivered"}) == 48
    assert retries() >= 6 + 20
    assert sample("duisgw_outbox_pending") == 0


async def test_restart_delivers_everything_stored_in_order(
    tmp_path: Path, patient_autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "outbox.db"
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        base = f"http://127.0.0.1:{port}"
        async with open_outbox(path) as outbox:  # no delivery running: just stored
            for n in range(20):
                await outbox.put(message(base, f"U{n % 3}", n))
        assert receiver.attempts == []

        async with open_outbox(path) as outbox:
            assert outbox.pending_count() == 20
            async with trio.open_nursery() as delivery:
                await delivery.start(run_delivery, outbox, FAST)
                await wait_until(lambda: outbox.pending_count() == 0)
                await outbox.put(message(base, "U0", 20))  # sequence continues
                await wait_until(lambda: outbox.pending_count() == 0)
                delivery.cancel_scope.cancel()
        nursery.cancel_scope.cancel()

    assert receiver.accepted_ids("/U0") == [f"U0-{n}" for n in (*range(0, 20, 3), 20)]
    assert receiver.accepted_ids("/U1") == [f"U1-{n}" for n in range(1, 20, 3)]
    assert [s.sequence for s in receiver.accepted if s.path == "/U0"] == list(range(1, 9))
    assert all(s.attempt == 1 for s in receiver.attempts)


async def test_cancel_mid_delivery_then_resume_sends_the_rest_once(
    tmp_path: Path, patient_autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "outbox.db"
    receiver = Receiver()
    receiver.status_for = lambda seen: 200 if len(receiver.accepted) < 10 else 503
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        base = f"http://127.0.0.1:{port}"
        async with open_outbox(path) as outbox:
            async with trio.open_nursery() as delivery:
                await delivery.start(run_delivery, outbox, FAST)
                for n in range(30):
                    await outbox.put(message(base, f"U{n % 3}", n))
                await wait_until(lambda: outbox.pending_count() == 20)
                await wait_until(lambda: len(receiver.attempts) > 15)  # some retrying
                delivery.cancel_scope.cancel()
            retried = [m for m in await outbox.pending() if m.attempts > 0]
            assert retried  # failures are on disk, so the count survives restarts

        receiver.status_for = lambda seen: 200
        async with open_outbox(path) as outbox, trio.open_nursery() as delivery:
            await delivery.start(run_delivery, outbox, FAST)
            await wait_until(lambda: outbox.pending_count() == 0)
            delivery.cancel_scope.cancel()
        nursery.cancel_scope.cancel()

    for user in ("U0", "U1", "U2"):
        expected = [f"{user}-{n}" for n in range(int(user[1]), 30, 3)]
        assert receiver.accepted_ids(f"/{user}") == expected


async def test_refused_message_is_dead_lettered_and_retried_on_request(
    tmp_path: Path, patient_autojump_clock: trio.testing.MockClock
) -> None:
    refuse = {"U1-1"}
    receiver = Receiver(lambda seen: 400 if seen.message_id in refuse else 200)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        base = f"http://127.0.0.1:{port}"
        async with open_outbox(tmp_path / "outbox.db") as outbox, trio.open_nursery() as delivery:
            await delivery.start(run_delivery, outbox, FAST)
            for n in range(3):
                await outbox.put(message(base, "U1", n))
            await wait_until(lambda: outbox.pending_count() == 0)
            # The User moved on past the refused message: no head-of-line block.
            assert receiver.accepted_ids("/U1") == ["U1-0", "U1-2"]
            (dead,) = await outbox.dead_letters()
            assert dead.message_id == "U1-1" and dead.attempts == 1
            assert dead.last_error == "HTTP 400: not now"
            assert outbox.dead_letter_count() == 1

            refuse.clear()  # the User fixed its side
            await outbox.retry_dead_letter("U1-1")
            await wait_until(lambda: outbox.pending_count() == 0)
            assert receiver.accepted_ids("/U1") == ["U1-0", "U1-2", "U1-1"]
            assert receiver.accepted[-1].sequence == 2  # late, and says so
            assert await outbox.dead_letters() == []
            delivery.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


async def test_dead_letter_after_max_attempts(
    tmp_path: Path, patient_autojump_clock: trio.testing.MockClock
) -> None:
    receiver = Receiver(lambda seen: 503)
    config = msgspec.structs.replace(FAST, max_attempts=4)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        async with open_outbox(tmp_path / "outbox.db") as outbox:
            async with trio.open_nursery() as delivery:
                await delivery.start(run_delivery, outbox, config)
                await outbox.put(message(f"http://127.0.0.1:{port}", "U1", 0))
                await outbox.put(
                    OutboundMessage(
                        message_id="bad-url",
                        user_id="U2",
                        url="ftp://example.invalid/",
                        body=b"<x/>",
                        created_at=T0,
                    )
                )
                await wait_until(lambda: outbox.dead_letter_count() == 2)
                delivery.cancel_scope.cancel()
            dead = {m.message_id: m for m in await outbox.dead_letters()}
        nursery.cancel_scope.cancel()

    assert dead["U1-0"].attempts == 4 and dead["U1-0"].last_error == "HTTP 503: not now"
    assert [s.attempt for s in receiver.attempts] == [1, 2, 3, 4]
    assert {s.message_id for s in receiver.attempts} == {"U1-0"}  # same id every time
    assert dead["bad-url"].attempts == 1
    assert (dead["bad-url"].last_error or "").startswith("bad URL")


async def test_httpx_runs_on_trio() -> None:
    """httpx reaches trio through httpcore and anyio, which detect the running loop."""
    import sniffio

    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):  # a real trio socket, refused
            await client.post(f"http://127.0.0.1:{free_ports()}/", content=b"<a/>")
    assert sniffio.current_async_library() == "trio"


# -- sans-IO decisions ------------------------------------------------------------------


def test_backoff_grows_and_is_jittered_within_bounds() -> None:
    rng = random.Random(20260105)
    base, cap = 0.5, 30.0
    means = []
    for failures in range(1, 12):
        ceiling = min(cap, base * 2 ** (failures - 1))
        delays = [backoff_delay(failures, base=base, cap=cap, rng=rng) for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 300  # jittered, not a fixed schedule
        assert max(delays) > 0.9 * ceiling  # full jitter reaches the ceiling
        means.append(sum(delays) / len(delays))
    assert means[:6] == sorted(means[:6])  # grows while below the cap
    assert means[0] < 0.4 and means[5] > 5.0
    assert all(abs(m - cap / 2) < 3.0 for m in means[8:])  # then flat at the cap


@given(
    failures=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=60.0),
    cap=st.floats(min_value=0.001, max_value=86_400.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_never_exceeds_cap(failures: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(failures, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(max(failures - 1, 0), 62))


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "dead_letter"),
        (400, "dead_letter"),
        (404, "dead_letter"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_classify_status(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


def test_retry_after_accepts_only_delta_seconds() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 7 ") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after_seconds("-1") is None


def test_config_refuses_unknown_and_out_of_range() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(b"max_attemps = 3", type=DeliveryConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(b"max_attempts = 0", type=DeliveryConfig)
    assert msgspec.toml.decode(b"max_attempts = 3", type=DeliveryConfig).max_attempts == 3
