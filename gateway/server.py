"""The DUIS listener: trio streams in, the sans-IO HTTP seam, the pipeline, bytes out.

One task per connection, closed in `finally`. Slow or idle clients are cut off
by named timeouts; connections beyond `max_connections` get a 503 and are
closed at once instead of queueing without bound. Shutdown is designed: the
caller cancels the accept loop, and in-flight requests drain under a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from gateway.config import LimitsConfig
from gateway.http import (
    HttpProtocolError,
    HttpRequest,
    ParserName,
    make_parser,
    render_response,
)
from gateway.metrics import Metrics

log = logging.getLogger("duisgw.server")

RECEIVE_CHUNK_BYTES = 65_536

Headers = tuple[tuple[bytes, bytes], ...]
# (status, body, content type), or with extra response headers (e.g. WWW-Authenticate)
Answer = tuple[int, bytes, bytes] | tuple[int, bytes, bytes, Headers]
# (request, peer identity from TLS or None) -> answer
Handler = Callable[[HttpRequest, "PeerInfo"], Awaitable[Answer]]


class PeerInfo:
    """Who is on the other end: the address and, under mutual TLS, the client certificate."""

    __slots__ = ("address", "client_certificate_der")

    def __init__(self, address: str, client_certificate_der: bytes | None) -> None:
        self.address = address
        self.client_certificate_der = client_certificate_der


class Draining:
    """Counts in-flight requests so shutdown can wait for them with a deadline."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.closing = False
        self._idle = trio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.in_flight += 1
        self._idle = trio.Event() if self.in_flight == 1 else self._idle

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class ConnectionHandler:
    def __init__(
        self,
        handler: Handler,
        limits: LimitsConfig,
        parser: ParserName,
        metrics: Metrics,
        draining: Draining,
    ) -> None:
        self._handler = handler
        self._limits = limits
        self._parser_name = parser
        self._metrics = metrics
        self._draining = draining
        self._slots = trio.Semaphore(limits.max_connections)

    async def __call__(self, stream: trio.abc.Stream) -> None:
        try:
            if self._slots.value == 0:
                self._metrics.connections_refused.inc()
                await self._send_and_close(stream, 503, b"too many connections\n")
                return
            async with self._slots:
                self._metrics.connections.inc()
                try:
                    await self._serve(stream)
                finally:
                    self._metrics.connections.dec()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            log.debug("connection dropped: %r", exc)
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await _close(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        if isinstance(stream, trio.SSLStream):
            with trio.move_on_after(self._limits.request_timeout_seconds) as handshake:
                await stream.do_handshake()
            if handshake.cancelled_caught:
                self._metrics.timeouts.labels("tls_handshake").inc()
                return
        peer = _peer_info(stream)
        parser = make_parser(
            self._parser_name, self._limits.max_body_bytes, self._limits.max_header_bytes
        )
        while not self._draining.closing:
            timeout = (
                self._limits.request_timeout_seconds
                if parser.in_progress
                else self._limits.idle_timeout_seconds
            )
            data: bytes | bytearray = b""
            with trio.move_on_after(timeout):
                data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
                if not data:
                    return  # peer closed
            if not data:
                kind = "request" if parser.in_progress else "idle"
                self._metrics.timeouts.labels(kind).inc()
                if parser.in_progress:
                    log.info("slow client %s cut off after %.1fs", peer.address, timeout)
                    await self._send_and_close(stream, 408, b"request not completed in time\n")
                return
            try:
                requests = parser.feed(bytes(data))
            except HttpProtocolError as exc:
                for request in exc.completed:
                    await self._answer(stream, request, peer)
                self._metrics.http_errors.labels(str(exc.status)).inc()
                log.info("HTTP refusal %d from %s: %s", exc.status, peer.address, exc.reason)
                await self._send_and_close(stream, exc.status, exc.reason.encode() + b"\n")
                return
            for request in requests:
                if not await self._answer(stream, request, peer):
                    return

    async def _answer(self, stream: trio.abc.Stream, request: HttpRequest, peer: PeerInfo) -> bool:
        """Handle one request; False when the connection must close afterwards."""
        self._draining.begin()
        try:
            answer = await self._handler(request, peer)
        finally:
            self._draining.end()
        status, body, content_type = answer[:3]
        headers = answer[3] if len(answer) == 4 else ()
        keep_alive = request.keep_alive and not self._draining.closing
        await stream.send_all(
            render_response(
                status,
                body,
                content_type=content_type,
                keep_alive=keep_alive,
                extra_headers=headers,
            )
        )
        return keep_alive

    async def _send_and_close(self, stream: trio.abc.Stream, status: int, text: bytes) -> None:
        with trio.move_on_after(1):
            await stream.send_all(
                render_response(status, text, content_type=b"text/plain", keep_alive=False)
            )


_DROPPED = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)


async def _close(stream: trio.abc.Stream) -> None:
    with contextlib.suppress(*_DROPPED):
        await stream.aclose()


def _peer_info(stream: trio.abc.Stream) -> PeerInfo:
    inner: Any = stream
    certificate: bytes | None = None
    if isinstance(stream, trio.SSLStream):
        certificate = stream.getpeercert(binary_form=True)
        inner = stream.transport_stream
    address = "?"
    if isinstance(inner, trio.SocketStream):
        try:
            host, port, *_ = inner.socket.getpeername()
            address = f"{host}:{port}"
        except OSError:
            pass
    return PeerInfo(address, certificate)
