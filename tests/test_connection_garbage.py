"""A connection leaves no reference cycle behind, however it ends.

Objects in a cycle wait for the garbage collector; with a crowd of short connections they
reached the oldest generation, and one full collection later had 197,000 of them to walk
and free (bench.soak: 400 ms, every request waiting). Reference counting must free what a
connection made the moment it ends. Here the collector is off and saves what it finds.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio

from gateway.core.config import LimitsConfig
from gateway.edge.http import HttpRequest
from gateway.edge.metrics import Metrics
from gateway.edge.server import ConnectionHandler, Draining, PeerInfo
from tests.test_server_send import tcp_pair


async def ok(request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
    return 200, b"ok\n", b"text/plain"


async def answered(client: trio.SocketStream) -> None:
    await client.send_all(b"GET / HTTP/1.1\r\nhost: gw\r\n\r\n")
    await client.receive_some(4096)
    await client.aclose()


async def refused_431(client: trio.SocketStream) -> None:
    await client.send_all(b"GET / HTTP/1.1\r\nx: " + b"a" * 70_000)
    await client.receive_some(4096)
    await client.aclose()


async def left_mid_request(client: trio.SocketStream) -> None:
    await client.send_all(b"GET / HTT")
    await client.aclose()


async def idle_until_timeout(client: trio.SocketStream) -> None:
    await trio.sleep(0.2)  # the gateway closes it (idle_timeout_seconds below)
    await client.aclose()


@pytest.fixture
def collector_saving_garbage() -> Iterator[list[object]]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


def ours(garbage: list[object]) -> list[str]:
    names = (type(o).__module__ + "." + type(o).__qualname__ for o in garbage)
    return sorted(n for n in names if n.startswith(("gateway.", "httptools.")))


@pytest.mark.parametrize(
    "peer", [answered, refused_431, left_mid_request, idle_until_timeout], ids=lambda f: f.__name__
)
async def test_a_finished_connection_is_freed_without_the_collector(
    peer: Callable[[trio.SocketStream], Awaitable[None]], collector_saving_garbage: list[object]
) -> None:
    handler = ConnectionHandler(
        ok, LimitsConfig(idle_timeout_seconds=0.05), Metrics(), Draining(), listener="duis"
    )
    server, client = await tcp_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler, server)
        await peer(client)
    del server, client
    gc.collect()
    assert ours(collector_saving_garbage) == []
