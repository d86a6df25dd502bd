"""The estate link's codec (sans-IO): frames and messages round trip, garbage is refused."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.device import DeviceOutcome, Priority
from gateway.core.estate_link import (
    LENGTH_BYTES,
    Alert,
    Command,
    Credit,
    Deframer,
    Error,
    ErrorCode,
    FrameError,
    Heartbeat,
    Hello,
    Message,
    Reply,
    device_command,
    encode,
)

EUI = st.lists(st.integers(0, 255), min_size=8, max_size=8).map(
    lambda b: "-".join(f"{x:02X}" for x in b)
)
TEXT = st.text(max_size=40)
REQUEST_ID = st.builds(lambda o, t, c: f"{o}:{t}:{c}", EUI, EUI, st.integers(0, 2**64 - 1))
WHEN = st.none() | st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
)

MESSAGES: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Hello,
        node_id=TEXT,
        protocol_version=st.integers(1, 65_535),
        auth_token=st.none() | TEXT,
    ),
    st.builds(
        Command,
        command_id=REQUEST_ID,
        node_id=TEXT,
        priority=st.sampled_from(Priority),
        srv_variant=TEXT,
        device_id=EUI,
        device_type=st.sampled_from(["ESME", "GSME", "CHF", "PPMID"]),
        hub_id=st.none() | EUI,
        gbcs=st.binary(max_size=300),
        timeout_seconds=st.floats(0.001, 86_400.0),
        not_before=WHEN,
    ),
    st.builds(
        Reply,
        command_id=REQUEST_ID,
        outcome=st.sampled_from(DeviceOutcome),
        gbcs=st.none() | st.binary(max_size=300),
        alerts=st.lists(st.binary(max_size=50), max_size=3).map(tuple),
    ),
    st.builds(Alert, device_id=EUI, gbcs=st.binary(max_size=100)),
    st.builds(Credit, n=st.integers(1, 1_000_000)),
    st.just(Heartbeat()),
    st.builds(Error, code=st.sampled_from(ErrorCode), reason=TEXT),
)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(MESSAGES, max_size=8), cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_messages_round_trip_however_the_stream_is_cut(
    messages: list[Message], cuts: list[int]
) -> None:
    stream = b"".join(encode(m) for m in messages)
    deframer = Deframer()
    got: list[Message] = []
    last = 0
    for cut in [*sorted({c for c in cuts if c <= len(stream)}), len(stream)]:
        got += deframer.feed(stream[last:cut])
        last = cut
    assert got == messages
    deframer.end_of_stream()  # nothing pending


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=2000))
def test_random_bytes_never_crash_the_deframer(data: bytes) -> None:
    deframer = Deframer(max_frame_bytes=1000)
    try:
        messages = deframer.feed(data)
    except FrameError as exc:
        assert exc.code in (ErrorCode.OVERSIZE, ErrorCode.MALFORMED)
        with pytest.raises(FrameError):  # a failed stream stays failed
            deframer.feed(b"")
        return
    assert all(isinstance(m, Message.__args__) for m in messages)  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(message=MESSAGES, data=st.data())
def test_a_truncated_frame_waits_then_is_refused_at_end_of_stream(
    message: Message, data: st.DataObject
) -> None:
    frame = encode(message)
    cut = data.draw(st.integers(1, len(frame) - 1))
    deframer = Deframer()
    assert deframer.feed(frame[:cut]) == []
    assert deframer.pending_bytes == cut
    with pytest.raises(FrameError, match="closed inside a frame"):
        deframer.end_of_stream()


@given(extra=st.integers(1, 2**32 - 1 - 1000))
def test_an_oversize_length_is_refused_before_its_body_arrives(extra: int) -> None:
    deframer = Deframer(max_frame_bytes=1000)
    with pytest.raises(FrameError) as caught:
        deframer.feed((1000 + extra).to_bytes(LENGTH_BYTES, "big"))
    assert caught.value.code is ErrorCode.OVERSIZE
    assert "exceeds the maximum of 1000" in caught.value.reason


@pytest.mark.parametrize(
    "body",
    [
        msgspec.msgpack.encode({"kind": "launch"}),  # unknown kind
        msgspec.msgpack.encode({"kind": "credit", "n": 0}),  # out of range
        msgspec.msgpack.encode({"kind": "credit", "n": 1, "extra": 1}),  # unknown field
        msgspec.msgpack.encode({"kind": "reply", "command_id": "x", "outcome": "maybe"}),
        msgspec.msgpack.encode([1, 2, 3]),
        b"\xc1",  # never used in MessagePack
    ],
)
def test_bodies_that_are_not_messages_are_malformed(body: bytes) -> None:
    with pytest.raises(FrameError) as caught:
        Deframer().feed(len(body).to_bytes(LENGTH_BYTES, "big") + body)
    assert caught.value.code is ErrorCode.MALFORMED


def test_a_command_carries_everything_the_device_needs() -> None:
    when = dt.datetime(2030, 5, 1, 12, tzinfo=dt.UTC)
    command = Command(
        command_id="00-DB-12-34-56-78-90-A0:00-DB-12-34-56-78-90-A1:42",
        node_id="gw-1",
        priority=Priority.PREPAYMENT_AND_CRITICAL,
        srv_variant="2.2",
        device_id="00-DB-12-34-56-78-90-A1",
        device_type="ESME",
        hub_id="00-DB-12-34-56-78-C0-01",
        gbcs=b"\xdd\x00",
        timeout_seconds=30.0,
        not_before=when,
    )
    [decoded] = Deframer().feed(encode(command))
    assert isinstance(decoded, Command)
    device = device_command(decoded)
    assert str(device.request_id) == command.command_id
    assert device.priority is Priority.PREPAYMENT_AND_CRITICAL
    assert (device.gbcs, device.hub_id, device.not_before) == (b"\xdd\x00", command.hub_id, when)
