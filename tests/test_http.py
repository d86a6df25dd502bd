"""The sans-IO HTTP seam: both parsers give the same requests for the same bytes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.http import HttpProtocolError, ParserName, make_parser, render_response

PARSERS: list[ParserName] = ["httptools", "h11"]

TWO_REQUESTS = (
    b"POST /api/v1/serviceS HTTP/1.1\r\nHost: gw\r\nContent-Type: application/xml\r\n"
    b"Content-Length: 5\r\n\r\n<a/>\n"
    b"POST /api/v1/serviceD HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nxyz"
)


@pytest.mark.parametrize("name", PARSERS)
def test_pipelined_requests_in_one_chunk(name: ParserName) -> None:
    parser = make_parser(name, 1024, 1024)
    first, second = parser.feed(TWO_REQUESTS)
    assert (first.method, first.target, first.body, first.keep_alive) == (
        "POST",
        "/api/v1/serviceS",
        b"<a/>\n",
        True,
    )
    assert first.header(b"content-type") == b"application/xml"
    assert (second.target, second.body, second.keep_alive) == ("/api/v1/serviceD", b"xyz", False)


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(TWO_REQUESTS) - 1), max_size=8))
def test_any_split_gives_the_same_requests(name: ParserName, cuts: list[int]) -> None:
    parser = make_parser(name, 1024, 1024)
    points = [0, *sorted(set(cuts)), len(TWO_REQUESTS)]
    got = []
    for start, end in itertools.pairwise(points):
        got.extend(parser.feed(TWO_REQUESTS[start:end]))
    assert [r.body for r in got] == [b"<a/>\n", b"xyz"]


@pytest.mark.parametrize("name", PARSERS)
def test_declared_oversize_body_is_refused_before_reading_it(name: ParserName) -> None:
    parser = make_parser(name, 1024, 1024)
    with pytest.raises(HttpProtocolError) as caught:
        parser.feed(b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5000\r\n\r\n")
    assert caught.value.status == 413


@pytest.mark.parametrize("name", PARSERS)
def test_chunked_oversize_body_is_refused(name: ParserName) -> None:
    parser = make_parser(name, 1024, 4096)
    head = b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    with pytest.raises(HttpProtocolError) as caught:
        parser.feed(head + chunk + chunk)
    assert caught.value.status == 413


@pytest.mark.parametrize("name", PARSERS)
def test_oversize_head_is_refused(name: ParserName) -> None:
    parser = make_parser(name, 1024, 1024)
    with pytest.raises(HttpProtocolError) as caught:
        parser.feed(b"POST / HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
    assert caught.value.status in (400, 431)


@pytest.mark.parametrize("name", PARSERS)
def test_garbage_is_a_protocol_error(name: ParserName) -> None:
    parser = make_parser(name, 1024, 1024)
    with pytest.raises(HttpProtocolError) as caught:
        parser.feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
    assert caught.value.status == 400


@pytest.mark.parametrize("name", PARSERS)
def test_completed_requests_survive_a_later_error(name: ParserName) -> None:
    parser = make_parser(name, 1024, 1024)
    good = b"POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n\r\nx"
    with pytest.raises(HttpProtocolError) as caught:
        parser.feed(good + b"BROKEN\x00\r\n\r\n")
    assert [r.target for r in caught.value.completed] == ["/a"]


def test_render_response_is_valid_http() -> None:
    raw = render_response(200, b"<x/>", keep_alive=False)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 4" in head and b"connection: close" in head
    assert body == b"<x/>"
