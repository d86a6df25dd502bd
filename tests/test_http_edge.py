"""The HTTP edge's limits through real sockets against a real gateway (issue 11, 2-4).

The gateway runs in-process (`nursery.start(serve)` on port 0, tests/harness.py): a
subprocess would add nothing to what these tests watch (bytes on a socket, the
gateway's metrics), and in-process they can run on a mock clock. Time-based limits
are set small and waited on a clock that jumps when the run is idle for a few real
milliseconds (see tests/test_delivery.py for why not zero).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
import trio.testing

from gateway.core.config import Config
from tests.harness import Gateway, default_config, response_code, running_gateway

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
AUTOJUMP_IDLE_SECONDS = 0.01
HEAD_START = b"POST /api/v1/serviceS HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\nX-Slow: "


@pytest.fixture
def patient_autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=AUTOJUMP_IDLE_SECONDS)


def with_limits(tmp_path: Path, **limits: object) -> Config:
    config = default_config(tmp_path)
    return msgspec.structs.replace(config, limits=msgspec.structs.replace(config.limits, **limits))


def sample_value(gw: Gateway, name: str, **labels: str) -> float:
    return gw.metrics.registry.get_sample_value(name, labels) or 0.0


async def connect(port: int, source: str | None = None) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port, local_address=source)


async def read_until_closed(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    try:
        while chunk := await stream.receive_some(65_536):
            data += chunk
    except trio.BrokenResourceError:
        pass  # a reset after the answer: what was read is what counts
    return data


async def read_response(stream: trio.abc.ReceiveStream) -> bytes:
    """One response with a content-length (the gateway always sends one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65_536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive_some(65_536)
    return head


# ------------------------------------------------------------------ deadlines


async def test_one_byte_every_second_gets_408_at_the_request_deadline(
    tmp_path: Path, patient_autojump_clock: trio.testing.MockClock
) -> None:
    """The deadline runs from the request's first byte, not from the last read."""
    config = with_limits(tmp_path, request_timeout_seconds=4.0)
    async with running_gateway(config, []) as gw:
        stream = await connect(gw.addresses.duis[1])
        first_byte = trio.current_time()
        answer = b""
        with trio.move_on_after(60):  # virtual: the whole trickle takes 100 s
            for byte in (HEAD_START + b"x" * 100)[:100]:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(1.0):
                    answer = await stream.receive_some(4096)
                if answer:
                    break
        answered_after = trio.current_time() - first_byte
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 4.0 <= answered_after < 5.0
        assert sample_value(gw, "duisgw_client_timeouts_total", kind="request") == 1
        await stream.aclose()


async def test_a_client_that_never_reads_loses_its_connection(
    tmp_path: Path, patient_autojump_clock: trio.testing.MockClock
) -> None:
    config = with_limits(tmp_path, send_timeout_seconds=2.0)
    async with running_gateway(config, []) as gw:
        sock = trio.socket.socket()
        # A small receive window, never read: the gateway's writes must block.
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", gw.addresses.admin[1]))
        stream = trio.SocketStream(sock)
        requests = b"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n" * 2_000
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_ignoring_errors, stream, requests)
            with trio.fail_after(120):  # virtual seconds: a hang, not slowness
                while not sample_value(gw, "duisgw_client_timeouts_total", kind="send"):
                    await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        with trio.fail_after(10):
            while sample_value(gw, "duisgw_open_connections", listener="admin") != 0:
                await trio.sleep(0.1)
        await stream.aclose()
        answer = await gw.client.get(gw.admin_url + "/healthz")
        assert answer.status_code == 200


async def send_ignoring_errors(stream: trio.abc.SendStream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(data)


# ------------------------------------------------------------------ slots


async def test_idle_connections_are_reclaimed_for_a_client_with_work(
    tmp_path: Path, shared_dir: Path
) -> None:
    """Every slot held by an idle socket must not lock out a well-behaved client."""
    config = with_limits(tmp_path, max_connections=4)
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        idle = [await connect(gw.addresses.duis[1], "127.0.0.2") for _ in range(4)]
        with trio.fail_after(10):
            while sample_value(gw, "duisgw_open_connections", listener="duis") < 4:
                await trio.sleep(0.01)
        xml = (shared_dir / INVENTORY).read_bytes()
        for _ in range(3):
            answer = await gw.send(xml)
            assert answer.status_code == 200 and response_code(answer.content) == "I0"
        # The longest idle went first, closed without a word.
        with trio.fail_after(10):
            assert await read_until_closed(idle[0]) == b""
        assert sample_value(gw, "duisgw_connections_reclaimed_total", listener="duis") >= 1
        assert (
            sample_value(
                gw, "duisgw_connections_refused_total", listener="duis", reason="max_connections"
            )
            == 0
        )
        for stream in idle:
            await stream.aclose()


async def test_slots_busy_with_requests_are_not_reclaimed(tmp_path: Path) -> None:
    config = with_limits(tmp_path, max_connections=2)
    async with running_gateway(config, []) as gw:
        busy = [await connect(gw.addresses.duis[1]) for _ in range(2)]
        for stream in busy:
            await stream.send_all(HEAD_START)  # a request has begun on each
        with trio.fail_after(10):
            while sample_value(gw, "duisgw_open_connections", listener="duis") < 2:
                await trio.sleep(0.01)
        await trio.sleep(0.05)  # both heads read: neither connection is idle
        extra = await connect(gw.addresses.duis[1])
        with trio.fail_after(10):
            answer = await read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503") and b"max_connections" in answer
        assert (
            sample_value(
                gw, "duisgw_connections_refused_total", listener="duis", reason="max_connections"
            )
            == 1
        )
        for stream in [*busy, extra]:
            await stream.aclose()


async def test_one_peer_cannot_hold_more_than_its_share(tmp_path: Path) -> None:
    config = with_limits(tmp_path, max_connections=10, max_connections_per_peer=2)
    async with running_gateway(config, []) as gw:
        port = gw.addresses.duis[1]
        held = [await connect(port, "127.0.0.3") for _ in range(2)]
        with trio.fail_after(10):
            while sample_value(gw, "duisgw_open_connections", listener="duis") < 2:
                await trio.sleep(0.01)
        third = await connect(port, "127.0.0.3")
        with trio.fail_after(10):
            answer = await read_until_closed(third)
        assert answer.startswith(b"HTTP/1.1 503") and b"max_connections_per_peer" in answer
        # Another peer is served meanwhile; the first peer's own connections are untouched.
        other = await connect(port, "127.0.0.4")
        await other.send_all(b"GET /api/v1/serviceS HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (await read_response(other)).startswith(b"HTTP/1.1 405")
        await held[0].send_all(b"GET /api/v1/serviceS HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (await read_response(held[0])).startswith(b"HTTP/1.1 405")
        assert (
            sample_value(
                gw,
                "duisgw_connections_refused_total",
                listener="duis",
                reason="max_connections_per_peer",
            )
            == 1
        )
        for stream in [*held, third, other]:
            await stream.aclose()


# ------------------------------------------------------------------ head bytes


async def test_a_header_without_a_line_end_gets_431_as_it_arrives(tmp_path: Path) -> None:
    """Refused once the head passes max_header_bytes, not buffered until its line ends."""
    config = with_limits(tmp_path, request_timeout_seconds=20.0, max_header_bytes=16_384)
    async with running_gateway(config, []) as gw:
        stream = await connect(gw.addresses.duis[1])
        async with trio.open_nursery() as nursery:
            # 4 MB without a line end, as fast as the gateway reads.
            nursery.start_soon(send_ignoring_errors, stream, HEAD_START + b"a" * 4_000_000)
            with trio.fail_after(15):
                answer = await read_until_closed(stream)
            nursery.cancel_scope.cancel()
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        assert sample_value(gw, "duisgw_http_errors_total", status="431") == 1
        await stream.aclose()


# ------------------------------------------------------------------ keep-alive


async def test_keep_alive_on_the_wire_follows_rfc_9112(tmp_path: Path) -> None:
    async with running_gateway(default_config(tmp_path), []) as gw:
        stream = await connect(gw.addresses.admin[1])
        ask_10 = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        head = await read_response_after(stream, ask_10)
        assert head.startswith(b"HTTP/1.1 200") and b"connection: keep-alive" in head
        host = b"Host: 127.0.0.1:%d\r\n" % gw.addresses.admin[1]  # the admin guard's check
        head = await read_response_after(stream, b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"connection:" not in head
        closing = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        head = await read_response_after(stream, closing)
        assert b"connection: close" in head
        with trio.fail_after(5):
            assert await read_until_closed(stream) == b""
        await stream.aclose()

        plain_10 = await connect(gw.addresses.admin[1])
        head = await read_response_after(plain_10, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert b"connection: close" in head
        with trio.fail_after(5):
            assert await read_until_closed(plain_10) == b""
        await plain_10.aclose()


async def read_response_after(stream: trio.SocketStream, request: bytes) -> bytes:
    await stream.send_all(request)
    with trio.fail_after(10):
        return await read_response(stream)


async def test_a_well_behaved_client_still_works_over_httpx(tmp_path: Path) -> None:
    """The limits do not disturb an ordinary keep-alive client."""
    async with running_gateway(default_config(tmp_path), []) as gw:
        async with httpx.AsyncClient() as client:
            for _ in range(20):
                answer = await client.get(gw.admin_url + "/healthz")
                assert answer.status_code == 200
        assert sample_value(gw, "duisgw_connections_reclaimed_total", listener="admin") == 0
