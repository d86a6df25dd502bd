"""The sans-IO HTTP/1.1 seam: bytes in, complete requests out; responses to bytes.

Two parsers stand behind one interface. httptools (llhttp, C) is the default
because the DUIS hot path cannot afford h11's ~40 µs per request; h11 is kept
as the pure-Python reference and tests run both, so the seam stays honest.
Neither parser touches a socket or a clock: gateway/server.py owns the I/O.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Literal, Protocol

import h11
import httptools
import msgspec

ParserName = Literal["httptools", "h11"]

# Limits with units; the config may lower or raise them (gateway/config.py).
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_MAX_HEADER_BYTES = 16_384

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
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


class RequestParser(Protocol):
    def feed(self, data: bytes) -> list[HttpRequest]:
        """Consume bytes; return every request completed by them, in order."""
        ...

    @property
    def in_progress(self) -> bool:
        """True while a request has started but not finished arriving."""
        ...


def render_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/xml",
    keep_alive: bool = True,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """Serialise one response. Shared by both parsers: a response is simple bytes."""
    lines = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Unknown")),
        b"content-type: " + content_type,
        b"content-length: %d" % len(body),
        b"date: " + _http_date(),
    ]
    if not keep_alive:
        lines.append(b"connection: close")
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


class HttptoolsParser:
    """llhttp via httptools, with our limits enforced in its callbacks."""

    def __init__(self, max_body_bytes: int, max_header_bytes: int) -> None:
        self._max_body = max_body_bytes
        self._max_header = max_header_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._done: list[HttpRequest] = []
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._started = False

    @property
    def in_progress(self) -> bool:
        return self._started

    def feed(self, data: bytes) -> list[HttpRequest]:
        try:
            self._parser.feed_data(data)
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
        self._count_header(len(name) + len(value) + 4)
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
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
        self._done.append(
            HttpRequest(
                method=method,
                target=self._url.decode("ascii", "replace"),
                headers=tuple(self._headers),
                body=b"".join(self._body),
                keep_alive=bool(self._parser.should_keep_alive()),
            )
        )
        self._reset()

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self._max_header:
            raise HttpProtocolError(431, f"request head larger than {self._max_header} bytes")


class H11Parser:
    """h11, the pure-Python reference parser."""

    def __init__(self, max_body_bytes: int, max_header_bytes: int) -> None:
        self._max_body = max_body_bytes
        self._max_header = max_header_bytes
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self._current: h11.Request | None = None
        self._body: list[bytes] = []
        self._body_bytes = 0

    @property
    def in_progress(self) -> bool:
        return self._current is not None

    def feed(self, data: bytes) -> list[HttpRequest]:
        self._conn.receive_data(data)
        done: list[HttpRequest] = []
        try:
            self._drain(done)
        except h11.RemoteProtocolError as exc:
            error = HttpProtocolError(exc.error_status_hint, f"malformed HTTP/1.1: {exc}")
            error.completed = done
            raise error from exc
        except HttpProtocolError as exc:
            exc.completed = done
            raise
        return done

    def _drain(self, done: list[HttpRequest]) -> None:
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and self._conn.our_state is h11.DONE:
                    # The response was written by render_response, not h11: tell h11.
                    self._conn.start_next_cycle()
                    continue
                return
            if isinstance(event, h11.Request):
                self._start(event)
            elif isinstance(event, h11.Data):
                self._add_body(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                done.append(self._finish())
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _start(self, event: h11.Request) -> None:
        # h11 bounds only a head still arriving; one that came whole is measured here.
        head = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
        if head > self._max_header:
            raise HttpProtocolError(431, f"request head larger than {self._max_header} bytes")
        for name, value in event.headers:
            if name == b"content-length" and int(value) > self._max_body:
                raise HttpProtocolError(413, f"body larger than {self._max_body} bytes")
        self._current = event
        self._body, self._body_bytes = [], 0

    def _add_body(self, chunk: bytes) -> None:
        self._body_bytes += len(chunk)
        if self._body_bytes > self._max_body:
            raise HttpProtocolError(413, f"body larger than {self._max_body} bytes")
        self._body.append(chunk)

    def _finish(self) -> HttpRequest:
        assert self._current is not None
        req = self._current
        self._current = None
        keep_alive = req.http_version == b"1.1" and not any(
            n == b"connection" and v.lower() == b"close" for n, v in req.headers
        )
        # We serialise responses ourselves; mark h11's side of the cycle done.
        self._conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
        self._conn.send(h11.EndOfMessage())
        if keep_alive:
            self._conn.start_next_cycle()
        return HttpRequest(
            method=req.method.decode("ascii", "replace"),
            target=req.target.decode("ascii", "replace"),
            headers=tuple((bytes(n), bytes(v)) for n, v in req.headers),
            body=b"".join(self._body),
            keep_alive=keep_alive,
        )


def make_parser(name: ParserName, max_body_bytes: int, max_header_bytes: int) -> RequestParser:
    if name == "h11":
        return H11Parser(max_body_bytes, max_header_bytes)
    return HttptoolsParser(max_body_bytes, max_header_bytes)
