"""Idle plain-TCP connections wait without a task, and behave as if they had one.

The parking (gateway/edge/idle_parking.py) alone over socket pairs, then a listener
served as `duisgw serve` serves it (gateway/edge/listeners.py `serve_connections` beside
`park_idle_connections`): a parked connection is answered when it speaks, counted and
closed when reclaimed or timed out, and closed at shutdown; and it keeps a handful of
the objects the garbage collector tracks, not the fifty of a waiting task.
"""

from __future__ import annotations

import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import trio

from gateway.core.config import LimitsConfig
from gateway.edge import server as server_module
from gateway.edge.http import HttpRequest
from gateway.edge.idle_parking import IdleParking
from gateway.edge.listeners import serve_connections
from gateway.edge.metrics import Metrics
from gateway.edge.server import ConnectionHandler, Draining, PeerInfo
from tests.test_connection_garbage import collector_saving_garbage, ours  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(not IdleParking.available, reason="parking needs epoll (Linux)")

PARK_AFTER = 0.05
REQUEST = b"GET / HTTP/1.1\r\nhost: gw\r\n\r\n"


class Seen:
    def __init__(self) -> None:
        self.resumed: list[str] = []
        self.expired: list[str] = []
        self.discarded: list[str] = []

    def parking(self) -> IdleParking[str]:
        return IdleParking(self.resumed.append, self.expired.append, self.discarded.append)


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()


def pair(made: list[tuple[socket.socket, socket.socket]]) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    made.append((a, b))
    return a, b


async def wait_for(condition: Callable[[], object], what: str) -> None:
    with trio.fail_after(5):
        while not condition():
            await trio.sleep(0.005)


async def test_the_parking_hands_back_on_data_expires_on_deadline_and_discards_at_stop(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    seen = Seen()
    parking = seen.parking()
    assert not parking.park(0, "before run", trio.current_time() + 1)  # not running yet
    (talks, talks_peer), (silent, _), (evicted, _), (stays, _) = (pair(pairs) for _ in range(4))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(parking.run)
        await wait_for(lambda: parking.running, "running")
        now = trio.current_time()
        assert parking.park(talks.fileno(), "talks", now + 10)
        assert parking.park(silent.fileno(), "silent", now + 0.05)
        assert parking.park(evicted.fileno(), "evicted", now + 0.05)
        assert parking.park(stays.fileno(), "stays", now + 10)
        assert not parking.park(stays.fileno(), "twice", now + 10)
        assert parking.evict(evicted.fileno()) == "evicted"
        assert parking.evict(evicted.fileno()) is None
        talks_peer.send(b"x")
        await wait_for(lambda: seen.resumed and seen.expired, "resumed and expired")
        assert (seen.resumed, seen.expired, len(parking)) == (["talks"], ["silent"], 1)
        nursery.cancel_scope.cancel()
    assert seen.discarded == ["stays"] and not parking.running


async def hello(request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
    return 200, b"hello\n", b"text/plain"


class Served:
    def __init__(self, limits: LimitsConfig) -> None:
        self.metrics = Metrics()
        self.handler = ConnectionHandler(hello, limits, self.metrics, Draining(), listener="duis")
        self.port = 0

    def value(self, name: str, **labels: str) -> float:
        got = self.metrics.registry.get_sample_value(name, labels or {"listener": "duis"})
        return got or 0.0

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def serving(limits: LimitsConfig) -> AsyncIterator[Served]:
    """A listener served as `duisgw serve` serves it (gateway/edge/listeners.py)."""
    s = Served(limits)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    s.port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connections, s.handler, listeners, nursery)
        nursery.start_soon(s.handler.park_idle_connections, nursery)
        yield s
        nursery.cancel_scope.cancel()


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setattr(server_module, "PARK_AFTER_SECONDS", PARK_AFTER)
    async with serving(LimitsConfig(max_connections=3, idle_timeout_seconds=1.0)) as s:
        yield s


def parked(s: Served) -> int:
    parking = s.handler._parking
    return 0 if parking is None else len(parking)


async def exchange(client: trio.SocketStream) -> bytes:
    await client.send_all(REQUEST)
    answer = b""
    with trio.fail_after(5):
        while not answer.endswith(b"hello\n"):
            data = await client.receive_some(4096)
            assert data, f"closed after {answer!r}"
            answer += data
    return answer


async def closed_by_server(client: trio.SocketStream) -> bool:
    with trio.fail_after(5):
        try:
            return await client.receive_some(4096) == b""
        except trio.BrokenResourceError:
            return True


async def test_a_parked_connection_is_answered_when_it_speaks_and_parks_again(
    served: Served,
) -> None:
    client = await served.connect()
    await wait_for(lambda: parked(served) == 1, "parked before its first request")
    assert (await exchange(client)).startswith(b"HTTP/1.1 200")
    await wait_for(lambda: parked(served) == 1, "parked again between requests")
    assert (await exchange(client)).startswith(b"HTTP/1.1 200")
    assert served.value("duisgw_open_connections") == 1
    await client.aclose()
    await wait_for(lambda: served.value("duisgw_open_connections") == 0, "closed")


async def test_a_parked_connection_is_reclaimed_for_a_newcomer_and_counted(
    served: Served,
) -> None:
    idle = [await served.connect()]
    await wait_for(lambda: parked(served) == 1, "the first parked")
    idle += [await served.connect() for _ in range(2)]  # every slot taken
    await wait_for(lambda: parked(served) == 3, "all parked")
    newcomer = await served.connect()
    assert (await exchange(newcomer)).startswith(b"HTTP/1.1 200")
    assert await closed_by_server(idle[0])  # the longest idle made room
    assert served.value("duisgw_connections_reclaimed_total") == 1
    assert served.value("duisgw_open_connections") == 3


async def test_a_parked_connection_times_out_idle(served: Served) -> None:
    client = await served.connect()
    await wait_for(lambda: parked(served) == 1, "parked")
    assert await closed_by_server(client)  # idle_timeout_seconds = 1
    assert served.value("duisgw_client_timeouts_total", kind="idle") == 1
    assert served.value("duisgw_open_connections") == 0


async def test_parked_connections_close_at_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "PARK_AFTER_SECONDS", PARK_AFTER)
    async with serving(LimitsConfig()) as s:
        clients = [await s.connect() for _ in range(3)]
        await wait_for(lambda: parked(s) == 3, "parked")
    for client in clients:
        assert await closed_by_server(client)
    assert s.value("duisgw_open_connections") == 0


async def test_an_idle_connection_keeps_few_tracked_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What each of a crowd's idle sockets costs every young and middle collection."""
    monkeypatch.setattr(server_module, "PARK_AFTER_SECONDS", PARK_AFTER)
    connections = 100
    async with serving(LimitsConfig()) as s:
        gc.collect()
        before = len(gc.get_objects())
        clients = [await s.connect() for _ in range(connections)]
        await wait_for(lambda: parked(s) == connections, "parked")
        gc.collect()
        per_connection = (len(gc.get_objects()) - before) / connections
        # Both ends count here (the client's stream is 4 objects). Waiting in its own
        # task, a connection kept 54: coroutines, cancel scopes, the parser's callbacks.
        assert per_connection < 20, per_connection
        for client in clients:
            await client.aclose()


@pytest.mark.usefixtures("collector_saving_garbage")  # garbage saved in gc.garbage
async def test_a_parked_and_resumed_connection_leaves_no_cycle(served: Served) -> None:
    client = await served.connect()
    await wait_for(lambda: parked(served) == 1, "parked")
    await exchange(client)
    await client.aclose()
    await wait_for(lambda: served.value("duisgw_open_connections") == 0, "closed")
    del client
    gc.collect()
    assert ours(gc.garbage) == []


async def test_a_failure_over_a_parked_connection_ends_that_connection_only(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = await served.connect()
    await wait_for(lambda: parked(served) == 1, "parked")
    slots = served.handler._slots
    busy = slots.busy

    def busy_breaks_once(slot: object) -> None:  # what the resume calls first
        monkeypatch.setattr(slots, "busy", busy)
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(slots, "busy", busy_breaks_once)
    await broken.send_all(REQUEST)  # wakes it: its resume breaks
    assert await closed_by_server(broken)
    assert served.value("duisgw_internal_errors_total") == 1
    assert served.value("duisgw_open_connections") == 0
    fine = await served.connect()  # the watcher goes on
    await wait_for(lambda: parked(served) == 1, "parked")
    assert (await exchange(fine)).startswith(b"HTTP/1.1 200")
