"""The sans-IO HTTP/1.1 seam: bytes in, complete requests out; responses to bytes.

One parser, httptools (llhttp, C): the DUIS hot path cannot afford a pure-Python
one (h11 cost ~40 µs a request), and one parser tested thoroughly beats two that
disagree. h11 stays a test-only reference (tests/test_http.py). The seam owns
two things llhttp does not do for us:

- the head limit, counted on the bytes as they arrive, before llhttp sees them:
  httptools gathers a header line in Python until its end, so a head without a
  line end would otherwise be buffered whole, at a cost growing with its square;
- keep-alive by RFC 9112 §9.3: a `close` option anywhere in Connection wins,
  HTTP/1.1 persists by default, HTTP/1.0 only with `keep-alive` (llhttp lets
  HTTP/1.0 `keep-alive, close` persist).

No socket and no clock here: gateway/edge/server.py owns the I/O and the deadlines.
"""

from __future__ import annotations

import time
from email.utils import formatdate

import httptools
import msgspec

_REASONS = {
    200: b"OK",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    411: b"Length Required",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    421: b"Misdirected Request",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


class HttpRequest(msgspec.Struct, frozen=True):
    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]  # names lower-cased
    body: bytes
    keep_alive: bool
    http_version: str = "1.1"

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class HttpProtocolError(Exception):
    """The peer broke HTTP/1.1 or a limit: answer `status` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        # Requests completed earlier in the same feed: answer them before the error.
        self.completed: list[HttpRequest] = []


def keep_alive(http_version: str, connection_options: frozenset[bytes]) -> bool:
    """RFC 9112 §9.3: does the connection persist after this request?

    `connection_options` are the lower-cased tokens of every Connection header line.
    """
    if b"close" in connection_options:
        return False
    if http_version == "1.0":
        return b"keep-alive" in connection_options
    return True


def render_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/xml",
    keep_alive: bool = True,
    http_1_0: bool = False,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """Serialise one response. An HTTP/1.0 peer is told when the connection stays open."""
    lines = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Unknown")),
        b"content-type: " + content_type,
        b"content-length: %d" % len(body),
        b"date: " + _http_date(),
    ]
    if not keep_alive:
        lines.append(b"connection: close")
    elif http_1_0:
        lines.append(b"connection: keep-alive")
    lines.extend(name + b": " + value for name, value in extra_headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_date_cache: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    # formatdate costs ~5 µs; the value changes once a second.
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


class RequestParser:
    """llhttp via httptools, with our limits enforced before and inside its callbacks."""

    def __init__(self, max_body_bytes: int, max_header_bytes: int) -> None:
        self._max_body = max_body_bytes
        self._max_header = max_header_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._done: list[HttpRequest] = []
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._connection_options: set[bytes] = set()
        self._header_bytes = 0  # url and header fields, as llhttp reports them
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._started = False
        # Raw bytes fed since this head began (between requests a head is "in progress":
        # the next byte belongs to one).
        self._in_head = True
        self._head_bytes = 0

    def close(self) -> None:
        """Let go of llhttp. It holds this object's bound callbacks and this object holds
        it: a reference cycle, so without this each connection's parser waited for a full
        garbage collection (bench.soak: 16,000 of them, 197,000 objects in all, freed by
        one 400 ms collection after 150 s beside the crowd). Feeding after close raises."""
        del self._parser

    @property
    def in_progress(self) -> bool:
        """True while a request has started but not finished arriving."""
        return self._started

    def feed(self, data: bytes | memoryview) -> list[HttpRequest]:
        """Consume bytes; return every request completed by them, in order."""
        try:
            while data:
                if not self._in_head:
                    piece, data = data, b""
                    self._parser.feed_data(piece)
                    continue
                # Never hand llhttp more head than the limit allows: past it, refuse.
                room = self._max_header - self._head_bytes
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
                self._parser.feed_data(piece)
                if self._in_head and self._head_bytes >= self._max_header:
                    raise HttpProtocolError(
                        431, f"request head larger than {self._max_header} bytes"
                    )
        except HttpProtocolError as exc:
            exc.completed, self._done = self._done, []
            raise
        except httptools.HttpParserUpgrade as exc:
            raise self._fail(400, "protocol upgrade is not supported") from exc
        except httptools.HttpParserError as exc:
            # A limit raised inside a callback arrives wrapped as "User callback error".
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, HttpProtocolError):
                cause.completed, self._done = self._done, []
                raise cause from None
            raise self._fail(400, f"malformed HTTP/1.1: {exc}") from exc
        done, self._done = self._done, []
        return done

    def _fail(self, status: int, reason: str) -> HttpProtocolError:
        error = HttpProtocolError(status, reason)
        error.completed, self._done = self._done, []
        return error

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._started = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # A head that began inside a feed after another request is measured here too.
        self._count_header(len(name) + len(value) + 4)
        name = name.lower()
        self._headers.append((name, value))
        if name == b"connection":
            self._connection_options.update(
                token.strip().lower() for token in value.split(b",") if token.strip()
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        length = dict(self._headers).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise HttpProtocolError(413, f"body larger than {self._max_body} bytes")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body:
            raise HttpProtocolError(413, f"body larger than {self._max_body} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("ascii", "replace")
        version = self._parser.get_http_version()
        self._done.append(
            HttpRequest(
                method=method,
                target=self._url.decode("ascii", "replace"),
                headers=tuple(self._headers),
                body=b"".join(self._body),
                keep_alive=keep_alive(version, frozenset(self._connection_options)),
                http_version=version,
            )
        )
        self._reset()

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self._max_header:
            raise HttpProtocolError(431, f"request head larger than {self._max_header} bytes")
