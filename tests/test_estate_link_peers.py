"""The estate link's two ends over real sockets, without a gateway: credit, hostile
peers, silence, timeouts, reconnection."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.config import Config
from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply, Priority
from gateway.core.estate_link import (
    PROTOCOL_VERSION,
    Command,
    Credit,
    Deframer,
    Error,
    ErrorCode,
    Hello,
    Message,
    Reply,
    command_from_device,
    encode,
)
from gateway.devkit.estate_server import EstateServer
from mmc.identifiers import RequestId
from parse_correlate.commands import CommandFacts, DeviceType, build_command
from tests.estate_harness import RawNode, estate_server, slow_estate, transport, wait_until
from tests.harness import default_config

ESME = "00-DB-12-34-56-78-90-A0"
HUB = "00-DB-12-34-56-78-90-A2"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
_counter = iter(range(10**6, 10**9))


def command(priority: Priority = Priority.ON_DEMAND, **changes: object) -> DeviceCommand:
    """A real GBCS read (ECS17b) for the default estate's ESME."""
    counter = next(_counter)
    request_id = RequestId(SUPPLIER, ESME, counter)
    gbcs = build_command(
        "4.1.1",
        request_id,
        CommandFacts(device_type=DeviceType.ESME),
        originator_counter=counter,
        now=dt.datetime.now(dt.UTC),
    ).gbcs
    base = DeviceCommand(
        request_id=request_id,
        srv_variant="4.1.1",
        device_id=ESME,
        device_type="ESME",
        hub_id=HUB,
        gbcs=gbcs,
        priority=priority,
    )
    return msgspec.structs.replace(base, **changes)


@pytest.fixture(scope="module")
def estate_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return default_config(tmp_path_factory.mktemp("estate"))


async def test_commands_go_out_within_credit_and_wait_for_more(estate_config: Config) -> None:
    """A slow estate: never more in flight than granted; the rest wait in their callers."""
    server = slow_estate(estate_config, 0.2, credit_window=3, hub_capacity=64)
    replies: list[DeviceReply] = []
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        link = transport(port)
        await nursery.start(link.run)

        async def one() -> None:
            replies.append(await link.send(command()))

        for _ in range(12):
            nursery.start_soon(one)
        peak_in_flight = peak_waiting = 0
        while len(replies) < 12:
            peak_in_flight = max(peak_in_flight, link.in_flight)
            peak_waiting = max(peak_waiting, link.waiting)
            await trio.sleep(0.01)
        assert peak_in_flight == 3  # the window, never more
        assert peak_waiting >= 8  # the rest held back, not sent
        assert {r.outcome for r in replies} == {DeviceOutcome.RESPONDED}
        nursery.cancel_scope.cancel()


async def test_waiting_commands_go_out_in_priority_order(estate_config: Config) -> None:
    server = slow_estate(estate_config, 0.2, credit_window=1)
    order: list[Priority] = []
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        link = transport(port)
        await nursery.start(link.run)
        await link.connected.wait()
        await wait_until(lambda: link._credit == 1)

        async def one(priority: Priority) -> None:
            await link.send(command(priority))
            order.append(priority)

        nursery.start_soon(one, Priority.DCC_SCHEDULED)  # takes the only credit
        await wait_until(lambda: link.in_flight == 1)
        for priority in (Priority.ON_DEMAND, Priority.ON_DEMAND, Priority.PREPAYMENT_AND_CRITICAL):
            nursery.start_soon(one, priority)
        await wait_until(lambda: link.waiting == 3)
        await wait_until(lambda: len(order) == 4)
        assert order == [
            Priority.DCC_SCHEDULED,
            Priority.PREPAYMENT_AND_CRITICAL,
            Priority.ON_DEMAND,
            Priority.ON_DEMAND,
        ]
        nursery.cancel_scope.cancel()


class SilentEstate:
    """Says Hello and grants credit, then never answers a command."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        deframer = Deframer()
        await stream.send_all(
            encode(Hello(node_id="silent", protocol_version=PROTOCOL_VERSION))
            + encode(Credit(n=10))
        )
        while data := await stream.receive_some():
            self.commands += [m for m in deframer.feed(data) if isinstance(m, Command)]


async def test_a_command_never_answered_gets_e21_and_a_future_dated_one_e30() -> None:
    silent = SilentEstate()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(silent.serve)
        link = transport(port, command_timeout_seconds=0.3)
        await nursery.start(link.run)
        assert (await link.send(command())).outcome is DeviceOutcome.NO_RESPONSE
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.2)
        future = command(Priority.FUTURE_DATED, not_before=later)
        assert (await link.send(future)).outcome is DeviceOutcome.FUTURE_DATED_TIMEOUT
        assert silent.commands[0].timeout_seconds == pytest.approx(0.3)
        assert silent.commands[1].timeout_seconds > 0.3  # counted from its execution time
        assert link.in_flight == 0
        nursery.cancel_scope.cancel()


async def test_the_link_comes_back_after_the_estate_restarts(estate_config: Config) -> None:
    """Commands sent while the estate is down wait for it, and go out once it is back."""
    async with trio.open_nursery() as nursery:
        first = estate_server(estate_config)
        estate_scope = trio.CancelScope()

        async def run_estate(
            server: EstateServer, port: int, *, task_status: trio.TaskStatus[int]
        ) -> None:
            with estate_scope:
                async with trio.open_nursery() as inner:
                    bound = await inner.start(server.serve, "127.0.0.1", port)
                    task_status.started(bound[1])

        port = await nursery.start(run_estate, first, 0)
        link = transport(port)
        await nursery.start(link.run)
        assert (await link.send(command())).outcome is DeviceOutcome.RESPONDED
        estate_scope.cancel()
        await wait_until(lambda: link._link is None)
        replies: list[DeviceReply] = []

        async def one() -> None:
            replies.append(await link.send(command()))

        nursery.start_soon(one)
        await wait_until(lambda: link.waiting == 1)
        estate_scope = trio.CancelScope()
        await nursery.start(run_estate, estate_server(estate_config), port)
        await wait_until(lambda: len(replies) == 1)
        assert replies[0].outcome is DeviceOutcome.RESPONDED
        assert link.sessions == 2
        nursery.cancel_scope.cancel()


async def hello_and_read(stream: trio.SocketStream, payload: bytes) -> list[Message]:
    """Send `payload`; what the estate says until it closes (bounded)."""
    deframer = Deframer()
    got: list[Message] = []
    await stream.send_all(payload)
    with trio.fail_after(5):
        while True:
            try:
                data = await stream.receive_some()
            except trio.BrokenResourceError:
                break
            if not data:
                break
            got += deframer.feed(data)
    return got


HELLO = encode(Hello(node_id="hostile", protocol_version=PROTOCOL_VERSION))
GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.binary(min_size=1, max_size=300).map(lambda b: HELLO + b),  # a good start, then junk
    st.integers(2_000_000, 2**32 - 1).map(lambda n: HELLO + n.to_bytes(4, "big")),  # oversize
    st.binary(min_size=1, max_size=50).map(lambda b: HELLO + len(b).to_bytes(4, "big") + b),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payloads=st.lists(GARBAGE, min_size=1, max_size=3))
async def test_hostile_frames_close_their_connection_only(
    estate_config: Config, payloads: list[bytes]
) -> None:
    server = estate_server(estate_config)
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        good = transport(port)
        await nursery.start(good.run)
        await good.connected.wait()
        for payload in payloads:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(10):
                # Hostile bytes with no frame end are closed for silence (3 heartbeats).
                said = await hello_and_read(stream, payload)
            await stream.aclose()
            errors = [m for m in said if isinstance(m, Error)]
            assert len(errors) <= 1
            assert not any(isinstance(m, Reply) for m in said)
        reply = await good.send(command())
        assert reply.outcome is DeviceOutcome.RESPONDED
        assert good.sessions == 1  # the good link never dropped
        assert server.nodes == {"node-t": 1}
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x00\x00\x00\x02\xc1\xc1", ErrorCode.MALFORMED),
        (b"\xff\xff\xff\xff", ErrorCode.OVERSIZE),
        (encode(Credit(n=1)), ErrorCode.PROTOCOL),  # not Hello first
        (encode(Hello(node_id="x", protocol_version=99)), ErrorCode.VERSION),
    ],
)
async def test_each_refusal_says_why(
    estate_config: Config, payload: bytes, code: ErrorCode
) -> None:
    server = estate_server(estate_config)
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        said = await hello_and_read(stream, payload)
        assert [m.code for m in said if isinstance(m, Error)] == [code]
        nursery.cancel_scope.cancel()


async def test_a_command_beyond_credit_is_refused(estate_config: Config) -> None:
    server = estate_server(estate_config, credit_window=1)
    wire = [
        Command(
            command_id=str(command().request_id),
            node_id="greedy",
            priority=Priority.ON_DEMAND,
            srv_variant="4.1.1",
            device_id=ESME,
            device_type="ESME",
            hub_id=HUB,
            gbcs=b"\xdd",
            timeout_seconds=5,
        )
        for _ in range(2)
    ]
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        hello = encode(Hello(node_id="greedy", protocol_version=PROTOCOL_VERSION))
        said = await hello_and_read(stream, hello + b"".join(encode(c) for c in wire))
        errors = [m for m in said if isinstance(m, Error)]
        assert [e.code for e in errors] == [ErrorCode.PROTOCOL]
        assert "without credit" in errors[0].reason
        nursery.cancel_scope.cancel()


async def spend(node: RawNode, n: int) -> None:
    """Send `n` commands on the node's connection, using its credit."""
    frames = b"".join(
        encode(command_from_device(command(), node_id="node-r", timeout_seconds=60))
        for _ in range(n)
    )
    await node.stream.send_all(frames)
    node.credit -= n


async def test_the_window_is_per_node_across_a_reconnect(estate_config: Config) -> None:
    """A node that reconnects while its commands still run in the estate gets only what
    is left of its window, and the rest as they finish: never 2x the window inside."""
    server = slow_estate(estate_config, 0.5, credit_window=3, hub_capacity=64)
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        first = await RawNode.connect(port, "node-r")
        await first.read_for(0.2)
        assert first.credit == 3
        await spend(first, 3)
        await wait_until(lambda: server.running("node-r") == 3)
        await first.stream.aclose()  # the link drops; its 3 commands keep running
        second = await RawNode.connect(port, "node-r")
        await second.read_for(0.2)
        assert second.credit == 0  # not a fresh window: 3 are still inside
        await second.read_for(1.5)  # they finish: their credit and replies come here
        assert second.credit == 3 and len(second.replies) == 3
        assert server.running("node-r") == 0
        other = await RawNode.connect(port, "node-s")  # another node has its own window
        await other.read_for(0.2)
        assert other.credit == 3
        nursery.cancel_scope.cancel()
