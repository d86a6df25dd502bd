"""Answers leave whole and in order, however much of them the socket takes at once.

An answer is written straight to a plain TCP socket when it fits (gateway/edge/server.py
`_send`); the rest goes through trio's send path under the send timeout. Here the
server's send buffer is tiny and the client reads slowly, so most answers are split.
"""

from __future__ import annotations

import socket

import pytest
import trio

from gateway.core.config import LimitsConfig
from gateway.edge.http import HttpRequest, RequestParser
from gateway.edge.metrics import Metrics
from gateway.edge.server import ConnectionHandler, Draining, PeerInfo

ANSWERS = 6
REQUEST = b"POST /x HTTP/1.1\r\nhost: gw\r\ncontent-length: 2\r\n\r\n"


def body(n: int) -> bytes:
    return (b"%06d" % n) * (10_000 + n * 100)  # 60 kB and more, each its own


async def answer_with_its_number(request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
    return 200, body(int(request.body)), b"text/plain"


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32_768)
    return (
        trio.SocketStream(trio.socket.from_stdlib_socket(server)),
        trio.SocketStream(trio.socket.from_stdlib_socket(client)),
    )


async def test_split_answers_arrive_whole_and_in_order_pipelined() -> None:
    server, client = await tcp_pair()
    handler = ConnectionHandler(
        answer_with_its_number, LimitsConfig(), Metrics(), Draining(), listener="duis"
    )
    requests = b"".join(REQUEST + b"%02d" % n for n in range(ANSWERS))
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler, server)
        await client.send_all(requests)  # all pipelined: answers queue behind each other
        for n in range(ANSWERS):
            expected = body(n)
            while (end := received.find(b"\r\n\r\n")) < 0:
                received += await client.receive_some(4096)
            head = bytes(received[:end]).lower()
            assert head.startswith(b"http/1.1 200")
            assert b"content-length: %d" % len(expected) in head
            while len(received) < end + 4 + len(expected):
                received += await client.receive_some(4096)  # slowly: the server waits
            assert received[end + 4 : end + 4 + len(expected)] == expected
            del received[: end + 4 + len(expected)]
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert not received


async def test_a_unix_socket_peer_is_served_not_a_crash() -> None:
    """AF_UNIX peers have no (host, port): the connection is served, its peer named
    `unix:...` (getpeername() gives '' for an unnamed peer)."""
    seen: list[PeerInfo] = []

    async def echo_peer(request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
        seen.append(peer)
        return 200, peer.address.encode(), b"text/plain"

    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    client = trio.SocketStream(trio.socket.from_stdlib_socket(right))
    handler = ConnectionHandler(echo_peer, LimitsConfig(), Metrics(), Draining(), listener="duis")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler, server)
        await client.send_all(REQUEST + b"00")
        received = b""
        with trio.fail_after(10):
            while not received.endswith(b"unix:?"):
                received += await client.receive_some(4096)
        assert received.lower().startswith(b"http/1.1 200")
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert [(p.address, p.host) for p in seen] == [("unix:?", "unix")]


async def test_pipelined_requests_are_parsed_a_slice_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that pipelines a receive's worth of tiny requests has at most one slice's
    worth of them parsed and waiting (not 1,400 per 64 KiB); each is answered, in order,
    and a body spanning slices arrives whole."""
    from gateway.edge import server as server_module

    parsed_at_once: list[int] = []
    feed = server_module.RequestParser.feed

    def counting_feed(self: RequestParser, data: bytes | memoryview) -> list[HttpRequest]:
        done = feed(self, data)
        parsed_at_once.append(len(done))
        return done

    monkeypatch.setattr(server_module.RequestParser, "feed", counting_feed)

    async def echo_body_length(request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
        return 200, b"%d %s" % (len(request.body), request.target.encode()), b"text/plain"

    tiny = [b"GET /%d HTTP/1.1\r\nhost: gw\r\n\r\n" % n for n in range(2_000)]
    big = b"x" * (3 * server_module.FEED_SLICE_BYTES + 17)
    wire = b"".join(tiny) + b"POST /big HTTP/1.1\r\nhost: gw\r\ncontent-length: %d\r\n\r\n" % len(
        big
    )
    wire += big + tiny[0]
    server, client = await tcp_pair()
    handler = ConnectionHandler(
        echo_body_length, LimitsConfig(), Metrics(), Draining(), listener="duis"
    )
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler, server)
        nursery.start_soon(client.send_all, wire)
        while received.count(b"HTTP/1.1 200") < len(tiny) + 2 or not received.endswith(b"0 /0"):
            received += await client.receive_some(65_536)
        await client.aclose()
        nursery.cancel_scope.cancel()
    bodies = [part.rsplit(b"\r\n\r\n", 1)[1] for part in received.split(b"HTTP/1.1 200")[1:]]
    expected = [b"0 /%d" % n for n in range(len(tiny))] + [b"%d /big" % len(big), b"0 /0"]
    assert bodies == expected
    smallest = min(len(request) for request in tiny)
    assert max(parsed_at_once) <= server_module.FEED_SLICE_BYTES // smallest + 1
