"""Per-hub command queues: the sans-IO ordering policy and the trio admission gate."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.core.device import Priority
from gateway.core.simulator_config import QueueLimits
from gateway.devkit.priority import CommandQueue, Entry, HubQueues, QueueTimeout
from gateway.edge.metrics import Metrics
from gateway.edge.transport import QueueFull

V = TypeVar("V")

TOP_UP, ON_DEMAND, FUTURE, BULK = (
    Priority.PREPAYMENT_AND_CRITICAL,
    Priority.ON_DEMAND,
    Priority.FUTURE_DATED,
    Priority.DCC_SCHEDULED,
)
USERS = ("90-B3-D5-1F-30-01-00-00", "90-B3-D5-1F-30-02-00-00", "90-B3-D5-1F-30-03-00-00")
A, B, C = USERS
HUB = "00-DB-12-34-56-78-90-A2"


def drain(queue: CommandQueue[V], now: float = 0.0) -> list[V]:
    popped = []
    while (entry := queue.pop_next(now)) is not None:
        popped.append(entry.value)
    return popped


# --- the ordering policy ------------------------------------------------------------

ORDER_CASES = [
    pytest.param([("b1", BULK, A), ("t1", TOP_UP, B)], ["t1", "b1"], id="top-up before bulk"),
    pytest.param(
        [("d", BULK, A), ("f", FUTURE, A), ("o", ON_DEMAND, A), ("p", TOP_UP, A)],
        ["p", "o", "f", "d"],
        id="classes in order",
    ),
    pytest.param(
        [("a1", BULK, A), ("a2", BULK, A), ("a3", BULK, A), ("b1", BULK, B), ("b2", BULK, B)],
        ["a1", "b1", "a2", "b2", "a3"],
        id="round robin between Users",
    ),
    pytest.param(
        [
            ("a1", ON_DEMAND, A),
            ("a2", ON_DEMAND, A),
            ("b1", ON_DEMAND, B),
            ("c1", ON_DEMAND, C),
            ("c2", ON_DEMAND, C),
        ],
        ["a1", "b1", "c1", "a2", "c2"],
        id="three Users take turns",
    ),
    pytest.param(
        [("a1", BULK, A), ("b1", ON_DEMAND, B), ("a2", BULK, A), ("b2", BULK, B)],
        ["b1", "a1", "b2", "a2"],
        id="rotation is per class",
    ),
]


@pytest.mark.parametrize(("pushes", "expected"), ORDER_CASES)
def test_pop_order(pushes: list[tuple[str, Priority, str]], expected: list[str]) -> None:
    queue: CommandQueue[str] = CommandQueue()
    for value, priority, user in pushes:
        queue.push(value, priority=priority, originator=user, now=0.0)
    assert drain(queue) == expected
    assert len(queue) == 0


def test_user_rejoins_at_the_back_of_the_rotation() -> None:
    queue: CommandQueue[str] = CommandQueue()
    queue.push("a1", priority=BULK, originator=A, now=0.0)
    queue.push("b1", priority=BULK, originator=B, now=0.0)
    queue.push("b2", priority=BULK, originator=B, now=0.0)
    assert queue.pop_next(0.0).value == "a1"  # type: ignore[union-attr]
    queue.push("a2", priority=BULK, originator=A, now=1.0)  # A had left the rotation
    assert drain(queue, 1.0) == ["b1", "a2", "b2"]


def test_future_entry_waits_without_blocking_others() -> None:
    queue: CommandQueue[str] = CommandQueue()
    queue.push("later", priority=TOP_UP, originator=A, now=0.0, ready_at=100.0)
    queue.push("now", priority=BULK, originator=B, now=0.0)
    assert queue.next_ready_at() == 100.0
    assert drain(queue, 50.0) == ["now"]
    assert queue.pop_next(99.9) is None
    assert len(queue) == 1 and queue.depth(TOP_UP) == 1
    assert drain(queue, 100.0) == ["later"]
    assert queue.next_ready_at() is None


def test_ready_at_in_the_past_is_ready_now() -> None:
    queue: CommandQueue[str] = CommandQueue()
    entry = queue.push("x", priority=ON_DEMAND, originator=A, now=10.0, ready_at=5.0)
    assert not entry.deferred and entry.ready_at == 10.0
    assert drain(queue, 10.0) == ["x"]


def test_class_limit_refuses_at_once() -> None:
    queue: CommandQueue[str] = CommandQueue(
        QueueLimits(max_queued_per_class=3, max_queued_per_user_per_class=3)
    )
    for i in range(3):
        queue.push(f"b{i}", priority=BULK, originator=USERS[i], now=0.0)
    with pytest.raises(QueueFull) as refused:
        queue.push("b3", priority=BULK, originator=A, now=0.0, hub_id=HUB)
    assert refused.value.scope == "class" and refused.value.priority is BULK
    assert HUB in str(refused.value) and "DCC_SCHEDULED" in str(refused.value)
    queue.push("t", priority=TOP_UP, originator=A, now=0.0)  # other classes keep their room
    queue.pop_next(0.0)
    queue.pop_next(0.0)
    queue.push("b3", priority=BULK, originator=A, now=0.0)  # room again once served


def test_user_share_leaves_room_for_other_users() -> None:
    queue: CommandQueue[str] = CommandQueue(
        QueueLimits(max_queued_per_class=4, max_queued_per_user_per_class=3)
    )
    for i in range(3):
        queue.push(f"a{i}", priority=BULK, originator=A, now=0.0)
    with pytest.raises(QueueFull) as refused:
        queue.push("a3", priority=BULK, originator=A, now=0.0)
    assert refused.value.scope == "user" and refused.value.originator == A
    queue.push("b0", priority=BULK, originator=B, now=0.0)
    queue.push("a-now", priority=ON_DEMAND, originator=A, now=0.0)  # the share is per class


def test_remove_ready_and_deferred_entries() -> None:
    queue: CommandQueue[str] = CommandQueue()
    a1 = queue.push("a1", priority=BULK, originator=A, now=0.0)
    a2 = queue.push("a2", priority=BULK, originator=A, now=0.0)
    later = queue.push("later", priority=FUTURE, originator=B, now=0.0, ready_at=10.0)
    assert queue.remove(a1) and queue.remove(later)
    assert not queue.remove(a1)
    assert queue.next_ready_at() is None and len(queue) == 1
    assert drain(queue, 20.0) == ["a2"]
    assert not queue.remove(a2)


# Commands as (priority, user index, delay); delay > 0 makes a future-dated command.
commands = st.lists(
    st.tuples(st.sampled_from(list(Priority)), st.integers(0, 2), st.sampled_from([0, 0, 0, 5])),
    max_size=60,
)


@settings(deadline=None, max_examples=200)
@given(commands)
def test_batch_pop_order_is_priority_then_round_robin(
    batch: list[tuple[Priority, int, int]],
) -> None:
    queue: CommandQueue[int] = CommandQueue()
    for index, (priority, user, _) in enumerate(batch):
        queue.push(index, priority=priority, originator=USERS[user], now=0.0)
    popped = drain(queue)
    # Round r of a class serves the r-th command of every User with more than r, Users
    # in the order they first queued in that class.
    expected = []
    for priority in sorted(Priority):
        per_user: dict[int, list[int]] = {}
        for index, (p, user, _) in enumerate(batch):
            if p is priority:
                per_user.setdefault(user, []).append(index)
        rounds = max((len(mine) for mine in per_user.values()), default=0)
        for r in range(rounds):
            expected += [mine[r] for mine in per_user.values() if len(mine) > r]
    assert popped == expected


@settings(deadline=None, max_examples=200)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("push"),
                st.sampled_from(list(Priority)),
                st.integers(0, 2),
                st.sampled_from([0.0, 0.0, 2.5, 7.0]),
            ),
            st.tuples(st.just("pop"), st.floats(0, 3)),
        ),
        max_size=80,
    )
)
def test_pop_takes_the_best_ready_class_and_never_a_future_one(ops: list[tuple[Any, ...]]) -> None:
    queue: CommandQueue[int] = CommandQueue()
    live: dict[int, Entry[int]] = {}
    now = 0.0
    for number, op in enumerate(ops):
        if op[0] == "push":
            _, priority, user, delay = op
            entry = queue.push(
                number, priority=priority, originator=USERS[user], now=now, ready_at=now + delay
            )
            live[number] = entry
            continue
        now += op[1]
        ready = [e for e in live.values() if e.ready_at <= now]
        entry_or_none = queue.pop_next(now)
        if not ready:
            assert entry_or_none is None
            continue
        assert entry_or_none is not None
        assert entry_or_none.ready_at <= now
        assert entry_or_none.priority == min(e.priority for e in ready)
        del live[entry_or_none.value]
        assert len(queue) == len(live)


# --- the trio admission gate --------------------------------------------------------


async def serve(
    queues: HubQueues,
    log: list[tuple[str, float, float]],
    name: str,
    priority: Priority,
    user: str,
    service_seconds: float,
    **kwargs: float,
) -> None:
    """One command: queue, then hold the hub for service_seconds. Logs (name, waited, start)."""
    async with queues.slot(HUB, priority=priority, originator=user, **kwargs) as waited:
        log.append((name, waited, trio.current_time()))
        await trio.sleep(service_seconds)


async def test_capacity_one_serves_in_policy_order(autojump_clock: trio.testing.MockClock) -> None:
    queues = HubQueues()
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, queues, log, "first", BULK, A, 10.0)
        await trio.sleep(1)
        for name, priority in (("bulk", BULK), ("read", ON_DEMAND), ("top-up", TOP_UP)):
            nursery.start_soon(serve, queues, log, name, priority, B, 10.0)
        await trio.sleep(1)
        assert queues.in_service(HUB) == 1 and queues.depth() == 3
    assert [name for name, _, _ in log] == ["first", "top-up", "read", "bulk"]
    assert [start for _, _, start in log] == [0.0, 10.0, 20.0, 30.0]
    assert queues.depth() == 0 and queues.in_service(HUB) == 0


async def test_capacity_two_serves_two_at_a_time(autojump_clock: trio.testing.MockClock) -> None:
    queues = HubQueues(capacity=2)
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(serve, queues, log, f"c{i}", ON_DEMAND, A, 10.0)
    assert sorted(start for _, _, start in log) == [0.0, 0.0, 10.0, 10.0]


async def test_future_command_waits_without_blocking_the_hub(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queues = HubQueues()
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve(queues, log, "future", TOP_UP, A, 1.0, ready_at=trio.current_time() + 50)
        )
        await trio.sleep(0.5)
        nursery.start_soon(serve, queues, log, "bulk", BULK, B, 10.0)
    assert log == [("bulk", 0.0, 0.5), ("future", 0.0, 50.0)]


async def test_future_command_ready_while_hub_busy_goes_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queues = HubQueues()
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, queues, log, "bulk1", BULK, B, 10.0)
        nursery.start_soon(serve, queues, log, "bulk2", BULK, B, 10.0)
        nursery.start_soon(lambda: serve(queues, log, "future", TOP_UP, A, 1.0, ready_at=5.0))
    # Which bulk read starts first is trio's choice; the future command goes second.
    assert [(waited, start) for _, waited, start in log] == [(0.0, 0.0), (5.0, 10.0), (11.0, 11.0)]
    assert log[1][0] == "future"


async def test_deadline_leaves_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    queues = HubQueues()
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, queues, log, "long", ON_DEMAND, A, 100.0)
        await trio.sleep(1)
        with pytest.raises(QueueTimeout):
            await serve(queues, log, "late", ON_DEMAND, B, 1.0, deadline=trio.current_time() + 5)
        assert trio.current_time() == 6.0
        assert queues.depth() == 0 and queues.in_service(HUB) == 1
    assert [name for name, _, _ in log] == ["long"]


async def test_cancelled_waiter_leaves_the_queue_and_holder_frees_the_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queues = HubQueues()
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        with trio.move_on_after(5):  # cancels the holder mid-service
            nursery.start_soon(serve, queues, log, "waiter", ON_DEMAND, B, 1.0)
            await serve(queues, log, "holder", ON_DEMAND, A, 100.0)
        assert queues.in_service(HUB) == 1  # the slot passed straight to the waiter
    with trio.move_on_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, queues, log, "holder2", ON_DEMAND, A, 100.0)
            await trio.sleep(1)
            nursery.start_soon(serve, queues, log, "gives-up", ON_DEMAND, B, 1.0)
    assert queues.depth() == 0 and queues.in_service(HUB) == 0
    assert [name for name, _, _ in log] == ["holder", "waiter", "holder2"]


async def test_grant_and_cancel_at_the_same_instant_leaks_no_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queues = HubQueues()
    log: list[tuple[str, float, float]] = []

    async def impatient() -> None:
        with trio.move_on_at(10.0):  # the moment the holder releases the hub
            await serve(queues, log, "impatient", ON_DEMAND, B, 5.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, queues, log, "holder", ON_DEMAND, A, 10.0)
        await trio.sleep(1)
        nursery.start_soon(impatient)
        await trio.sleep(1)
        nursery.start_soon(serve, queues, log, "third", BULK, C, 1.0)
    assert log[0][0] == "holder" and log[-1][0] == "third"
    assert queues.depth() == 0 and queues.in_service(HUB) == 0


async def test_full_class_refuses_at_once(autojump_clock: trio.testing.MockClock) -> None:
    queues = HubQueues(limits=QueueLimits(max_queued_per_class=2, max_queued_per_user_per_class=2))
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, queues, log, "in-service", BULK, A, 10.0)
        await trio.sleep(1)
        nursery.start_soon(serve, queues, log, "q1", BULK, A, 10.0)
        await trio.sleep(0.5)
        nursery.start_soon(serve, queues, log, "q2", BULK, B, 10.0)
        await trio.sleep(1)
        with pytest.raises(QueueFull):
            await serve(queues, log, "refused", BULK, C, 10.0)
        assert trio.current_time() == 2.5  # refused without waiting
        await serve(queues, log, "top-up", TOP_UP, C, 1.0)  # another class is still open
    assert [name for name, _, _ in log] == ["in-service", "top-up", "q1", "q2"]


async def test_metrics_report_depth_and_wait(autojump_clock: trio.testing.MockClock) -> None:
    metrics = Metrics(CollectorRegistry())
    queues = HubQueues(metrics=metrics)
    log: list[tuple[str, float, float]] = []
    registry = metrics.registry
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, queues, log, "a", BULK, A, 4.0)
        nursery.start_soon(serve, queues, log, "b", BULK, B, 4.0)
        await trio.sleep(1)
        depth = registry.get_sample_value(
            "duisgw_command_queue_depth", {"priority": "dcc_scheduled"}
        )
        assert depth == 1.0
    labels = {"priority": "dcc_scheduled"}
    assert registry.get_sample_value("duisgw_command_queue_depth", labels) == 0.0
    assert registry.get_sample_value("duisgw_command_queue_wait_seconds_count", labels) == 2.0
    assert registry.get_sample_value("duisgw_command_queue_wait_seconds_sum", labels) == 4.0


async def test_fairness_one_users_bulk_does_not_starve_another(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queues = HubQueues()
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(serve, queues, log, f"a{i}", BULK, A, 1.0)
        await trio.sleep(0.5)
        for i in range(3):
            nursery.start_soon(serve, queues, log, f"b{i}", BULK, B, 1.0)
    order = [name for name, _, _ in log]
    # B arrived behind 49 of A's commands; it alternates with A instead of waiting.
    assert sorted(order.index(f"b{i}") for i in range(3)) == [2, 4, 6]


SERVICE_SECONDS = 2.0  # the hub is slower than the arrivals: one bulk read every second


@pytest.mark.parametrize(
    ("burst", "bounds"),
    [
        # Top-ups 10 s apart: nothing ahead of each but one in-service command.
        pytest.param(1, [SERVICE_SECONDS], id="single top-ups"),
        # Three at once: the k-th waits for the in-service one and the k-1 ahead of it.
        pytest.param(3, [SERVICE_SECONDS * k for k in (1, 2, 3)], id="bursts of three"),
    ],
)
async def test_overload_top_ups_keep_a_bounded_wait(
    autojump_clock: trio.testing.MockClock, burst: int, bounds: list[float]
) -> None:
    queues = HubQueues()
    log: list[tuple[str, float, float]] = []
    async with trio.open_nursery() as nursery:
        for second in range(120):
            nursery.start_soon(serve, queues, log, f"bulk{second}", BULK, A, SERVICE_SECONDS)
            if second % 10 == 5:
                for k in range(burst):
                    name = f"top-up{second}.{k}"
                    nursery.start_soon(serve, queues, log, name, TOP_UP, B, SERVICE_SECONDS)
            await trio.sleep(1.0)
    bursts: dict[str, list[float]] = {}
    for name, waited, _ in log:
        if name.startswith("top-up"):
            bursts.setdefault(name.split(".")[0], []).append(waited)
    bulk = [waited for name, waited, _ in log if name.startswith("bulk")]
    assert len(bursts) == 12
    for name, waits in bursts.items():
        assert len(waits) == burst
        for waited, bound in zip(sorted(waits), bounds, strict=True):
            assert waited <= bound + 1e-9, name
    assert max(bulk) > 100.0  # the bulk reads pile up instead
