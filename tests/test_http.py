"""The sans-IO HTTP seam (httptools), checked against h11 as an independent reference."""

from __future__ import annotations

import itertools

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.edge.http import HttpProtocolError, HttpRequest, RequestParser, render_response

TWO_REQUESTS = (
    b"POST /api/v1/serviceS HTTP/1.1\r\nHost: gw\r\nContent-Type: application/xml\r\n"
    b"Content-Length: 5\r\n\r\n<a/>\n"
    b"POST /api/v1/serviceD HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nxyz"
)


def test_pipelined_requests_in_one_chunk() -> None:
    first, second = RequestParser(1024, 1024).feed(TWO_REQUESTS)
    assert (first.method, first.target, first.body, first.keep_alive) == (
        "POST",
        "/api/v1/serviceS",
        b"<a/>\n",
        True,
    )
    assert first.header(b"content-type") == b"application/xml"
    assert (second.target, second.body, second.keep_alive) == ("/api/v1/serviceD", b"xyz", False)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(TWO_REQUESTS) - 1), max_size=8))
def test_any_split_gives_the_same_requests(cuts: list[int]) -> None:
    parser = RequestParser(1024, 1024)
    points = [0, *sorted(set(cuts)), len(TWO_REQUESTS)]
    got = []
    for start, end in itertools.pairwise(points):
        got.extend(parser.feed(TWO_REQUESTS[start:end]))
    assert [r.body for r in got] == [b"<a/>\n", b"xyz"]


def test_declared_oversize_body_is_refused_before_reading_it() -> None:
    with pytest.raises(HttpProtocolError) as caught:
        RequestParser(1024, 1024).feed(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5000\r\n\r\n"
        )
    assert caught.value.status == 413


def test_chunked_oversize_body_is_refused() -> None:
    head = b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    with pytest.raises(HttpProtocolError) as caught:
        RequestParser(1024, 4096).feed(head + chunk + chunk)
    assert caught.value.status == 413


def test_oversize_head_is_refused() -> None:
    with pytest.raises(HttpProtocolError) as caught:
        RequestParser(1024, 1024).feed(
            b"POST / HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n"
        )
    assert caught.value.status == 431


@pytest.mark.parametrize("piece_bytes", [1, 100, 1000, 5000])
def test_head_without_a_line_end_is_refused_as_it_arrives(piece_bytes: int) -> None:
    """A header value that never ends is refused once the head passes the limit, however it
    is cut: not buffered until its line end (issue 11, finding 3)."""
    max_header = 4096
    parser = RequestParser(1024, max_header)
    fed = 0
    with pytest.raises(HttpProtocolError) as caught:
        parser.feed(b"GET / HTTP/1.1\r\nX-Big: ")
        fed = 24
        while fed < 100 * max_header:
            parser.feed(b"a" * piece_bytes)
            fed += piece_bytes
    assert caught.value.status == 431
    assert fed <= max_header  # refused by the piece that crossed the limit


def test_a_head_exactly_at_the_limit_is_accepted() -> None:
    head = b"GET / HTTP/1.1\r\nX: "
    head += b"a" * (1024 - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == 1024
    (request,) = RequestParser(1024, 1024).feed(head)
    assert request.method == "GET"
    with pytest.raises(HttpProtocolError):
        RequestParser(1024, 1023).feed(head)


def test_every_pipelined_head_gets_the_limit_afresh() -> None:
    head = b"GET /x HTTP/1.1\r\nX: " + b"a" * 900 + b"\r\n\r\n"
    parser = RequestParser(1024, 1024)
    requests = []
    for _ in range(5):
        requests += parser.feed(head[:500])
        requests += parser.feed(head[500:])
    assert len(requests) == 5


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(HttpProtocolError) as caught:
        RequestParser(1024, 1024).feed(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n"
        )
    assert caught.value.status == 400


def test_completed_requests_survive_a_later_error() -> None:
    good = b"POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n\r\nx"
    with pytest.raises(HttpProtocolError) as caught:
        RequestParser(1024, 1024).feed(good + b"BROKEN\x00\r\n\r\n")
    assert [r.target for r in caught.value.completed] == ["/a"]


# RFC 9112 §9.3: `close` anywhere wins; HTTP/1.1 persists; HTTP/1.0 only with keep-alive.
KEEP_ALIVE_CASES = [
    ("1.1", [], True),
    ("1.1", [b"close"], False),
    ("1.1", [b"keep-alive, close"], False),
    ("1.1", [b"close, keep-alive"], False),
    ("1.1", [b"keep-alive", b"close"], False),  # two header lines
    ("1.1", [b"foo,  CLOSE "], False),
    ("1.1", [b"closed"], True),  # a token, not a substring
    ("1.0", [], False),
    ("1.0", [b"keep-alive"], True),
    ("1.0", [b"Keep-Alive"], True),
    ("1.0", [b"x, keep-alive"], True),
    ("1.0", [b"keep-alive, close"], False),
    ("1.0", [b"close, keep-alive"], False),
    ("1.0", [b"keep-alive", b"close"], False),
]


@pytest.mark.parametrize(("version", "connection", "expected"), KEEP_ALIVE_CASES)
def test_keep_alive_follows_rfc_9112(version: str, connection: list[bytes], expected: bool) -> None:
    wire = f"GET / HTTP/{version}\r\nHost: gw\r\n".encode()
    wire += b"".join(b"Connection: " + value + b"\r\n" for value in connection) + b"\r\n"
    (request,) = RequestParser(1024, 1024).feed(wire)
    assert (request.keep_alive, request.http_version) == (expected, version)


def test_render_response_is_valid_http() -> None:
    raw = render_response(200, b"<x/>", keep_alive=False)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 4" in head and b"connection: close" in head
    assert body == b"<x/>"


def test_an_http_1_0_peer_is_told_the_connection_stays_open() -> None:
    head = render_response(200, b"", http_1_0=True).split(b"\r\n\r\n")[0]
    assert b"connection: keep-alive" in head
    assert b"connection:" not in render_response(200, b"").split(b"\r\n\r\n")[0]


# ------------------------------------------------------------- h11 as a reference

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC 0123456789;=/.,:-", max_size=30).map(
    str.strip
)
CONNECTION = st.lists(st.sampled_from(["close", "keep-alive", "Close", "upgrade-x", "te"]))


@st.composite
def requests(draw: st.DrawFn, *, last: bool) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    target = "/" + "/".join(draw(st.lists(TOKEN, max_size=3)))
    headers = [("Host", "gw")]
    reserved = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"}
    for name, value in draw(st.lists(st.tuples(TOKEN, VALUE), max_size=5)):
        if name not in reserved:
            headers.append((name, value))
    options = draw(CONNECTION)
    if not last:
        options = [o for o in options if o.lower() != "close"]
    if options:
        headers.append(("Connection", ", ".join(options)))
    body = draw(st.binary(max_size=64))
    if body or method in ("POST", "PUT"):
        headers.append(("Content-Length", str(len(body))))
    lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_with_h11(wire: bytes) -> list[tuple[str, str, list[tuple[bytes, bytes]], bytes, bool]]:
    """What h11 makes of the same bytes, answering each request so the next may follow."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(wire)
    found = []
    current: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return found
        if isinstance(event, h11.Request):
            current, body = event, b""
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert current is not None
            conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
            conn.send(h11.EndOfMessage())
            keep = conn.our_state is h11.DONE
            found.append(
                (
                    current.method.decode(),
                    current.target.decode(),
                    [(bytes(n), bytes(v)) for n, v in current.headers],
                    body,
                    keep,
                )
            )
            if not keep:
                return found
            conn.start_next_cycle()


def ours(request: HttpRequest) -> tuple[str, str, list[tuple[bytes, bytes]], bytes, bool]:
    return (
        request.method,
        request.target,
        list(request.headers),
        request.body,
        request.keep_alive,
    )


@settings(max_examples=150, deadline=None)
@given(
    pipelined=st.lists(requests(last=False), max_size=3),
    final=requests(last=True),
    cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=6),
)
def test_httptools_seam_agrees_with_h11(
    pipelined: list[bytes], final: bytes, cuts: list[int]
) -> None:
    wire = b"".join(pipelined) + final
    points = [0, *sorted({c for c in cuts if c < len(wire)}), len(wire)]
    parser = RequestParser(1 << 16, 1 << 16)
    got: list[HttpRequest] = []
    for start, end in itertools.pairwise(points):
        got += parser.feed(wire[start:end])
    assert [ours(r) for r in got] == parse_with_h11(wire)
