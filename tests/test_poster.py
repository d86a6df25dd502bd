"""Delivery's HTTP client (gateway/edge/poster.py) against h11, an independent HTTP/1.1
implementation: the server parses what the poster sends with h11 and writes each
scripted answer with h11 (or as raw bytes), over loopback sockets, and over TLS with
the dev PKI's certificates."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest
import trio

from bench.ports import free_ports
from gateway.devkit.devpki import generate_dev_pki
from gateway.edge.poster import (
    MAX_HEAD_BYTES,
    Answer,
    BadTarget,
    Poster,
    PostFailed,
    parse_target,
    request_bytes,
)

BODY = b"<sr:Response>" + b"x" * 3000 + b"</sr:Response>"
HEADERS = {"Content-Type": "application/xml", "X-DUIS-Message-ID": "m-1", "X-DUIS-Sequence": "7"}
HEAD_BYTES = 200
MAX_ANSWER = 64 * 1024

# One answer: raw bytes to write, and whether the server closes the connection after.
Scripted = tuple[bytes, bool]


def h11_answer(
    status: int = 200,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    *,
    chunked: bool = False,
) -> bytes:
    """An answer written by h11 itself: framing the poster must read as h11 means it."""
    writer = h11.Connection(h11.SERVER)
    writer.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    writer.next_event()
    writer.next_event()
    framing = (
        [("transfer-encoding", "chunked")] if chunked else [("content-length", str(len(body)))]
    )
    out = writer.send(h11.Response(status_code=status, headers=[*framing, *headers])) or b""
    if chunked:
        for at in range(0, len(body), 1000):  # several chunks
            out += writer.send(h11.Data(data=body[at : at + 1000])) or b""
    elif body:
        out += writer.send(h11.Data(data=body)) or b""
    return out + (writer.send(h11.EndOfMessage()) or b"")


@dataclass
class Server:
    """Parses each request with h11 and answers `answer(n)` for the n-th (from 1)."""

    answer: Callable[[int], Scripted] = lambda n: (h11_answer(), False)
    requests: list[tuple[h11.Request, bytes]] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        parser = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = bytearray()
                while True:
                    event = parser.next_event()
                    if event is h11.NEED_DATA:
                        parser.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                assert request is not None
                self.requests.append((request, bytes(body)))
                raw, close = self.answer(len(self.requests))
                await stream.send_all(raw)
                if close:
                    await stream.aclose()
                    return
                parser = h11.Connection(h11.SERVER)  # the answer was written raw
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    def header(self, n: int, name: bytes) -> bytes | None:
        return dict(self.requests[n][0].headers).get(name)


async def start(nursery: trio.Nursery, server: Server, tls: ssl.SSLContext | None = None) -> str:
    async def handler(stream: trio.SocketStream) -> None:
        if tls is None:
            await server.handle(stream)
            return
        wrapped = trio.SSLStream(stream, tls, server_side=True)
        try:
            await wrapped.do_handshake()
        except trio.BrokenResourceError:
            return
        await server.handle(wrapped)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handler, 0)
    server.port = listeners[0].socket.getsockname()[1]
    scheme = "https" if tls is not None else "http"
    host = "localhost" if tls is not None else "127.0.0.1"
    return f"{scheme}://{host}:{server.port}"


async def post(poster: Poster, url: str, body: bytes = BODY):  # type: ignore[no-untyped-def]
    with trio.fail_after(10):
        return await poster.post(
            url, body, HEADERS, head_bytes=HEAD_BYTES, max_answer_bytes=MAX_ANSWER
        )


async def two_posts(server: Server) -> tuple[Answer, Answer, Poster]:
    """Two POSTs in turn through one poster to `server`."""
    poster = Poster()
    async with trio.open_nursery() as nursery:
        base = await start(nursery, server)
        first = await post(poster, base)
        second = await post(poster, base)
        nursery.cancel_scope.cancel()
    return first, second, poster


async def test_requests_parse_as_h11_reads_them_and_one_connection_carries_them_all() -> None:
    server = Server()
    poster = Poster()
    async with trio.open_nursery() as nursery:
        base = await start(nursery, server)
        for n in range(5):
            answer = await post(poster, f"{base}/duis/U{n}?q=1", BODY + str(n).encode())
            assert answer.status == 200
        nursery.cancel_scope.cancel()
    assert server.connections == 1 and poster.connections_opened == 1
    for n, (request, body) in enumerate(server.requests):
        assert request.method == b"POST" and request.target == f"/duis/U{n}?q=1".encode()
        assert body == BODY + str(n).encode()
        headers = dict(request.headers)
        assert headers[b"host"] == f"127.0.0.1:{server.port}".encode()
        assert headers[b"x-duis-message-id"] == b"m-1" and headers[b"x-duis-sequence"] == b"7"
        assert headers[b"content-type"] == b"application/xml"


@pytest.mark.parametrize("chunked", [False, True])
async def test_the_answer_status_head_and_retry_after_are_read(chunked: bool) -> None:
    refusal = b"not now: " + b"y" * 5000
    server = Server(
        answer=lambda n: (
            h11_answer(503, refusal, (("Retry-After", "30"),), chunked=chunked),
            False,
        )
    )
    poster = Poster()
    async with trio.open_nursery() as nursery:
        base = await start(nursery, server)
        first = await post(poster, base)
        second = await post(poster, base)  # the whole first answer was read: reusable
        nursery.cancel_scope.cancel()
    assert first == second
    assert first.status == 503 and first.retry_after == "30"
    assert first.head == refusal[:HEAD_BYTES]
    assert poster.connections_opened == 1


async def test_an_answer_ended_by_the_connection_and_an_interim_100_are_read() -> None:
    answers = {
        1: (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", True),  # EOF-framed
        2: (b"HTTP/1.1 100 Continue\r\n\r\n" + h11_answer(201), False),
    }
    first, second, poster = await two_posts(Server(answer=lambda n: answers[n]))
    assert (first.status, first.head) == (200, b"all of it")
    assert second.status == 201
    assert poster.connections_opened == 2  # the first was closed by the receiver


async def test_a_connection_the_receiver_closed_while_idle_is_not_reused() -> None:
    # Keep-alive answered, then the receiver closes anyway (as an idle timeout would).
    server = Server(answer=lambda n: (h11_answer(), True))
    poster = Poster()
    async with trio.open_nursery() as nursery:
        base = await start(nursery, server)
        await post(poster, base)
        await trio.sleep(0.05)  # the close reaches our side
        second = await post(poster, base)
        nursery.cancel_scope.cancel()
    assert second.status == 200
    assert poster.connections_opened == 2 and len(server.requests) == 2


async def test_an_endless_answer_is_cut_at_the_bound_and_its_connection_closed() -> None:
    huge = h11_answer(500, b"z" * (MAX_ANSWER * 4))
    answer, again, poster = await two_posts(Server(answer=lambda n: (huge, False)))
    assert answer.status == 500 and answer.head == b"z" * HEAD_BYTES
    assert again.status == 500
    assert poster.connections_opened == 2  # never reused mid-answer


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # then the connection ends
        b"NOT HTTP AT ALL\r\n\r\n",
        b"",  # closed without a byte
    ],
)
async def test_a_broken_answer_fails_the_post_for_a_retry(raw: bytes) -> None:
    server = Server(answer=lambda n: (raw, True))
    poster = Poster()
    async with trio.open_nursery() as nursery:
        base = await start(nursery, server)
        with pytest.raises(PostFailed):
            await post(poster, base)
        nursery.cancel_scope.cancel()


async def test_an_endless_head_fails_the_post_without_waiting_for_its_end() -> None:
    endless = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * (MAX_HEAD_BYTES + 4096)
    server = Server(answer=lambda n: (endless, False))  # and the connection stays open
    async with trio.open_nursery() as nursery:
        base = await start(nursery, server)
        with pytest.raises(PostFailed, match="head"):
            await post(Poster(), base)
        nursery.cancel_scope.cancel()


async def test_nothing_listening_fails_the_post_for_a_retry() -> None:
    port = free_ports(1)  # nobody listens there (and no client is given it as its own)
    with pytest.raises(PostFailed, match="connect"):
        await post(Poster(), f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("ftp://example.invalid/", HEADERS),
        ("http:///no-host", HEADERS),
        ("http://example.invalid:99999/", HEADERS),
        ("http://example.invalid/", {"X-Injected": "a\r\nX-Evil: 1"}),
        ("http://example.invalid/", {"Bad Name": "v"}),
    ],
)
async def test_what_cannot_be_sent_is_refused_before_connecting(
    url: str, headers: dict[str, str]
) -> None:
    poster = Poster()
    with pytest.raises(BadTarget):
        await poster.post(url, b"x", headers, head_bytes=10, max_answer_bytes=100)
    assert poster.connections_opened == 0


def test_urls_become_the_request_lines_httpx_would_send() -> None:
    target = parse_target("https://user:p%40ss@bücher.example/res ponse/ü?a=1&b=%2F#frag")
    assert target.origin == ("https", "xn--bcher-kva.example", 443)
    lines = request_bytes(target, b"", {}).split(b"\r\n")
    assert lines[0] == b"POST /res%20ponse/%C3%BC?a=1&b=%2F HTTP/1.1"
    assert lines[1] == b"Host: xn--bcher-kva.example"
    assert lines[2] == b"Authorization: Basic " + base64.b64encode(b"user:p@ss")
    ipv6 = parse_target("http://[::1]:8080/x")
    assert ipv6.origin == ("http", "::1", 8080)
    assert b"Host: [::1]:8080\r\n" in ipv6.request_line


async def test_https_with_the_given_trust_and_a_wrong_trust_is_refused(tmp_path: Path) -> None:
    pki = generate_dev_pki(tmp_path, [], "00-B3-D5-1F-30-00-00-01", dt.datetime.now(dt.UTC))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(str(pki.tls_server_cert), str(pki.tls_server_key))
    client_tls = ssl.create_default_context(cafile=str(pki.tls_ca))
    server = Server()
    async with trio.open_nursery() as nursery:
        base = await start(nursery, server, server_tls)
        trusted = Poster(ssl_context=client_tls)
        assert (await post(trusted, base)).status == 200
        assert (await post(trusted, base)).status == 200
        assert trusted.connections_opened == 1
        with pytest.raises(PostFailed, match="TLS handshake"):
            await post(Poster(ssl_context=ssl.create_default_context()), base)
        nursery.cancel_scope.cancel()
    assert len(server.requests) == 2
