"""Delivery's HTTP/1.1 client: POSTs over connections kept alive per origin.

Why not httpx, which the CLI and the dev kit use: an httpx POST to a loopback receiver
cost 534 µs of CPU one at a time and 983 µs with 64 in flight, this client 109 and 41
(`python -m bench.bench_delivery`, best of three). httpx's pool looks at every pooled
connection, polling each idle one, twice per request, and h11 parses in pure Python;
every asynchronous request's response is delivered, so that was more than the
acknowledgement's whole signature check. Here a request is one write of preformatted
bytes, the answer is parsed by httptools (llhttp, as the server side is), and a pooled
connection is checked once, when it is taken. tests/test_poster.py checks both sides
against h11.

Only what delivery needs: POST with a body over http or https (the given SSL context,
or httpx's default trust: certifi's bundle, never the environment's), keep-alive,
answers framed by Content-Length, chunked or the connection's end, read up to a bound.
No redirects, proxies, cookies, compression or HTTP/2. Deadlines are the caller's
(`trio.fail_after` around `post`): a connection interrupted mid-exchange is closed,
never reused.
"""

from __future__ import annotations

import base64
import functools
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from typing import Final

import httptools
import httpx
import msgspec
import trio

RECEIVE_BYTES: Final = 65536
# An idle connection older than this is closed rather than reused: receivers commonly
# close theirs after 5-15 s, and a POST sent on a connection the peer is closing fails.
KEEPALIVE_SECONDS: Final = 5.0
MAX_HEAD_BYTES: Final = 16 * 1024  # an answer's status line and headers
USER_AGENT: Final = b"duis-gateway"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_TOKEN: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
# Kept as written in a path and query (RFC 3986 reserved and unreserved, and escapes);
# anything else, non-ASCII included, is percent-encoded, as httpx did.
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~%?"


class PostError(Exception):
    """A POST that got no answer."""


class BadTarget(PostError):
    """The URL or a header cannot be sent at all: retrying cannot help."""


class PostFailed(PostError):
    """Connecting, sending or reading the answer failed: a later attempt may succeed."""


class Answer(msgspec.Struct, frozen=True):
    status: int
    head: bytes  # the first bytes of the body, for the delivery's last_error
    retry_after: str | None = None


class _Target(msgspec.Struct, frozen=True):
    origin: tuple[str, str, int]  # scheme, host, port: what a connection serves
    request_line: bytes  # "POST /path HTTP/1.1\r\nHost: ...\r\n" and fixed headers


# A User's URL is parsed once, not per delivery (bounded: recently used URLs).
@functools.lru_cache(maxsize=1024)
def parse_target(url: str) -> _Target:
    """The origin and the request's first lines; BadTarget for what cannot be sent."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadTarget(f"{exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadTarget(f"unsupported scheme {scheme[:20]!r}")
    host = parts.hostname
    if not host:
        raise BadTarget("no host")
    port = port if port is not None else _DEFAULT_PORTS[scheme]
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if not path.isprintable() or not host.isprintable() or " " in host:
        raise BadTarget("the URL holds control characters")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise BadTarget(f"host {host[:60]!r} is not a valid domain name") from None
    path = urllib.parse.quote(path, safe=_PATH_SAFE)
    authority = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        authority += f":{port}"
    lines = [f"POST {path} HTTP/1.1", f"Host: {authority}"]
    if parts.username is not None:  # as httpx did: userinfo becomes Basic credentials
        credentials = f"{urllib.parse.unquote(parts.username)}:"
        credentials += urllib.parse.unquote(parts.password or "")
        lines.append("Authorization: Basic " + base64.b64encode(credentials.encode()).decode())
    request_line = ("\r\n".join(lines) + "\r\n").encode("ascii")
    return _Target(origin=(scheme, host, port), request_line=request_line)


def request_bytes(target: _Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The whole request: one write. Header names must be tokens, values one line."""
    out = bytearray(target.request_line)
    for name, value in headers.items():
        raw_name, raw_value = name.encode("ascii", "replace"), value.encode("utf-8")
        if not raw_name or not set(raw_name) <= _TOKEN:
            raise BadTarget(f"header name {name[:40]!r} is not a token")
        if any(c in raw_value for c in b"\r\n\x00"):
            raise BadTarget(f"header {name[:40]!r} holds a line break")
        out += raw_name + b": " + raw_value + b"\r\n"
    out += b"User-Agent: " + USER_AGENT + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    return bytes(out + body)


class _AnswerReader:
    """httptools' callbacks for one answer (and any 1xx before it)."""

    def __init__(self, head_bytes: int) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self._head_bytes = head_bytes
        self.status = 0
        self.headers_done = False
        self.complete = False
        self.framed = False  # Content-Length or Transfer-Encoding: not ended by EOF
        self.retry_after: str | None = None
        self.head = bytearray()
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding"):
            self.framed = True
        elif lowered == b"retry-after":
            self.retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        room = self._head_bytes - len(self.head)
        if room > 0:
            self.head += body[:room]

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:
            # An interim answer: the final one follows on the same connection.
            self.status, self.headers_done, self.framed, self.retry_after = 0, False, False, None
            self.head.clear()
            return
        self.complete = True
        # Read here: once feed_data returns, the parser has reset for a next message.
        self.keep_alive = self.parser.should_keep_alive()


class _Connection:
    __slots__ = ("idle_since", "socket", "stream")

    def __init__(self, stream: trio.abc.Stream, socket: trio.socket.SocketType) -> None:
        self.stream = stream
        self.socket = socket
        self.idle_since = 0.0


class Poster:
    """POSTs with keep-alive; at most `max_idle` idle connections are kept in all.

    How many POSTs run at once is the caller's to bound (delivery's limiter)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_idle: int = 64) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self.connections_opened = 0  # for tests and benches: reuse is visible

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        head_bytes: int,
        max_answer_bytes: int,
    ) -> Answer:
        """The answer's status, the first `head_bytes` of its body and its Retry-After.

        An answer longer than `max_answer_bytes` is cut there and its connection closed:
        a hostile receiver cannot make us read without limit."""
        target = parse_target(url)
        request = request_bytes(target, body, headers)
        connection = self._take(target.origin) or await self._connect(target.origin)
        reusable = False
        try:
            await connection.stream.send_all(request)
            answer, reusable = await _read_answer(connection.stream, head_bytes, max_answer_bytes)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PostFailed(f"{type(exc).__name__}: {exc}") from None
        except httptools.HttpParserError as exc:
            raise PostFailed(f"malformed answer: {exc}") from None
        finally:
            if reusable:
                self._give_back(target.origin, connection)
            else:
                await trio.aclose_forcefully(connection.stream)
        return answer

    async def aclose(self) -> None:
        idle, self._idle, self._idle_count = self._idle, {}, 0
        for connections in idle.values():
            for connection in connections:
                await trio.aclose_forcefully(connection.stream)

    def _take(self, origin: tuple[str, str, int]) -> _Connection | None:
        pooled = self._idle.get(origin)
        now = time.monotonic()
        while pooled:
            connection = pooled.pop()  # the most recently used: the likeliest still open
            self._idle_count -= 1
            # Readable while idle means the peer closed it (or sent what we never asked).
            if (
                now - connection.idle_since < KEEPALIVE_SECONDS
                and not connection.socket.is_readable()
            ):
                return connection
            connection.socket.close()
        return None

    def _give_back(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(connection)
        self._idle_count += 1
        if self._idle_count > self._max_idle:
            self._close_oldest()

    def _close_oldest(self) -> None:
        oldest = min(
            (pooled for pooled in self._idle.values() if pooled),
            key=lambda pooled: pooled[0].idle_since,
        )
        oldest.pop(0).socket.close()  # idle: no task is using its stream
        self._idle_count -= 1

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise PostFailed(f"connect: {type(exc).__name__}: {exc}") from None
        self.connections_opened += 1
        if scheme == "http":
            return _Connection(tcp, tcp.socket)
        context = self._ssl_context
        if context is None:
            # As delivery's httpx client had it (trust_env=False): no SSL_CERT_FILE.
            context = self._ssl_context = httpx.create_ssl_context(trust_env=False)
        tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(tcp)
            raise PostFailed(f"TLS handshake: {exc.__cause__ or exc}") from None
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return _Connection(tls, tcp.socket)


async def _read_answer(
    stream: trio.abc.Stream, head_bytes: int, max_answer_bytes: int
) -> tuple[Answer, bool]:
    """The answer, and whether its connection may carry another request."""
    reader = _AnswerReader(head_bytes)
    received = 0
    while not reader.complete:
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            if reader.headers_done and not reader.framed:  # the body ends with the connection
                return _answer(reader), False
            raise PostFailed("the receiver closed the connection before a complete answer")
        received += len(data)
        reader.parser.feed_data(data)
        if not reader.headers_done and received > MAX_HEAD_BYTES:
            raise PostFailed(f"the answer's head exceeds {MAX_HEAD_BYTES} bytes")
        if received > max_answer_bytes and not reader.complete:
            if not reader.headers_done:
                raise PostFailed("the answer's head is too long")
            return _answer(reader), False  # cut: the rest is never read
    return _answer(reader), reader.keep_alive


def _answer(reader: _AnswerReader) -> Answer:
    return Answer(status=reader.status, head=bytes(reader.head), retry_after=reader.retry_after)
