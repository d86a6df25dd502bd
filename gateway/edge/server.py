"""One listener's connections: trio streams in, the sans-IO HTTP seam, a handler, bytes out.

Each connection is a crash boundary: an unexpected exception anywhere in its task
is logged once with its traceback, counted (`duisgw_internal_errors_total`),
answered 500 if no response to the request has started, and that connection
closed; the listener and every other connection go on. A peer that goes away is
not an error. Limits (gateway/core/config.py `[limits]`): head bytes are capped as they
arrive (gateway/edge/http.py); one deadline per request from its first byte (for TLS,
from the handshake's start); a send timeout per response; idle keep-alive
connections reclaimed before a newcomer is refused, and a per-peer cap
(gateway/edge/connection_slots.py). A new plain-TCP connection, and one idle for
PARK_AFTER_SECONDS between requests, leaves its task and waits in the listener's
`IdleParking` (gateway/edge/idle_parking.py) while `park_idle_connections` runs.
Shutdown: the caller stops accepting, sets `Draining.closing`, and waits for
in-flight requests under a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from gateway.core.config import LimitsConfig
from gateway.core.log_fields import log_event
from gateway.edge.connection_slots import ConnectionSlots, Refusal, Slot
from gateway.edge.http import HttpProtocolError, HttpRequest, RequestParser, render_response
from gateway.edge.idle_parking import IdleParking
from gateway.edge.metrics import Metrics
from gateway.edge.tls_refusals import HandshakeFailure, handshake_failure

log = logging.getLogger("duisgw.server")

RECEIVE_CHUNK_BYTES = 65_536
# Bytes handed to the parser at once. A receive of tiny pipelined requests (46 bytes each
# from bench.soak's non-readers) parsed whole held 1,400 requests per connection until
# answered or cut off: thousands of live objects that every young and middle garbage
# collection walked (a gc census beside the crowd). A DUIS request takes a few slices.
FEED_SLICE_BYTES = 4_096
# Closing a stream (a TLS close_notify at most) never holds a task longer than this.
CLOSE_TIMEOUT_SECONDS = 1.0
# After refusing a request the peer may still be sending: read and drop its bytes for a
# moment so our answer is not destroyed by the reset a close over unread data causes.
LINGER_SECONDS = 1.0
LINGER_MAX_BYTES = 262_144
# How long a plain-TCP connection idle between requests keeps its task before it is
# parked (a new one is parked at once). Longer than a busy keep-alive client's gap
# between requests (a parked one costs a task's start to wake), far shorter than a
# crowd's idle sockets live.
PARK_AFTER_SECONDS = 0.25

Headers = tuple[tuple[bytes, bytes], ...]
# (status, body, content type), or with extra response headers (e.g. WWW-Authenticate)
Answer = tuple[int, bytes, bytes] | tuple[int, bytes, bytes, Headers]
# (request, peer identity from TLS or None) -> answer
Handler = Callable[[HttpRequest, "PeerInfo"], Awaitable[Answer]]

# What a peer that vanishes, resets or breaks TLS raises from a stream: its doing, not ours.
_DROPPED = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)


class PeerInfo:
    """Who is on the other end: the address and, under mutual TLS, the client certificate."""

    __slots__ = ("address", "client_certificate_der", "host")

    def __init__(self, address: str, client_certificate_der: bytes | None, host: str = "?") -> None:
        self.address = address
        self.client_certificate_der = client_certificate_der
        self.host = host


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


class _PeerGone(Exception):
    """The peer closed, reset, broke TLS or stopped reading: close quietly."""


class _Park:
    """`_receive`'s answer when an idle connection should leave its task for the parking."""


_PARK = _Park()


class _Connection:
    """One connection's state: the crash boundary needs to know if a response has begun."""

    __slots__ = (
        "evict",
        "fd",
        "idle_deadline",
        "idle_wait",
        "peer",
        "responding",
        "slot",
        "stream",
    )

    def __init__(self, stream: trio.abc.Stream, peer: PeerInfo) -> None:
        self.stream = stream
        self.peer = peer
        self.responding = False
        self.idle_wait: trio.CancelScope | None = None
        self.slot: Slot | None = None  # once admitted
        # While parked: how the slots' reclaim takes it out, and its idle deadline.
        self.evict: Callable[[_Connection], None] | None = None
        self.idle_deadline = 0.0
        # The socket's descriptor for the direct write (plain TCP only; TLS needs its
        # stream). Valid while the stream is open: the connection task closes it last.
        self.fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None

    def reclaim(self) -> None:
        """Called by the slots when this idle connection must make room."""
        if self.idle_wait is not None:
            self.idle_wait.cancel()
        elif self.evict is not None:
            self.evict(self)


class ConnectionHandler:
    """The per-connection task for `trio.serve_listeners` on one listener."""

    def __init__(
        self,
        handler: Handler,
        limits: LimitsConfig,
        metrics: Metrics,
        draining: Draining,
        *,
        listener: str,
    ) -> None:
        self._handler = handler
        self._limits = limits
        self._metrics = metrics
        self._draining = draining
        self._listener = listener
        self._slots = ConnectionSlots(limits.max_connections, limits.max_connections_per_peer)
        self._parking: IdleParking[_Connection] | None = None
        self._open = metrics.connections.labels(listener)
        self._internal_errors = metrics.internal_errors.labels(listener)

    async def __call__(self, stream: trio.abc.Stream) -> None:
        await self._guarded(_Connection(stream, PeerInfo("?", None)), self._admit_and_serve)

    async def park_idle_connections(self, nursery: trio.Nursery) -> None:
        """Hold this listener's idle plain-TCP connections without their tasks, until
        cancelled; one that becomes readable is served by a new task in `nursery` (the
        listener's handler nursery). Without this running, idle ones keep their task."""

        def resume(conn: _Connection) -> None:
            conn.evict = None  # from now on, its task's (a reclaim waits for it to idle)
            if conn.slot is not None:
                self._slots.busy(conn.slot)
            nursery.start_soon(self._guarded, conn, self._resume_serving)

        parking: IdleParking[_Connection] = IdleParking(
            resume=self._bounded(resume),
            expire=self._bounded(self._parked_expired),
            discard=self._bounded(self._close_parked),
        )
        self._parking = parking
        try:
            await parking.run()
        finally:
            self._parking = None

    async def _admit_and_serve(self, conn: _Connection) -> None:
        conn.peer = _peer_address(conn.stream)
        admitted = self._slots.admit(conn.peer.host, conn.reclaim)
        if isinstance(admitted, Refusal):
            await self._refuse(conn, admitted)
            return
        conn.slot = admitted
        self._open.inc()
        await self._serve(conn, admitted)

    async def _resume_serving(self, conn: _Connection) -> None:
        """A parked connection became readable: serve it on in this (new) task."""
        assert conn.slot is not None
        parser = RequestParser(self._limits.max_body_bytes, self._limits.max_header_bytes)
        try:
            await self._serve_requests(
                conn, conn.slot, parser, None, conn.idle_deadline, readable=True
            )
        finally:
            parser.close()

    async def _guarded(
        self, conn: _Connection, serve: Callable[[_Connection], Awaitable[None]]
    ) -> None:
        """The crash boundary: `serve` in it, then the connection closed unless parked."""
        try:
            await serve(conn)
        except _PeerGone as exc:
            log_event(
                log,
                logging.DEBUG,
                "connection ended",
                "%(listener)s connection from %(peer)s ended: %(reason)s",
                listener=self._listener,
                peer=conn.peer.address,
                reason=str(exc),
            )
        except Exception:
            # The boundary: whatever broke, it ends here, with this connection only.
            self._internal_error(conn)
            if not conn.responding:
                await self._send_quietly(conn, 500, b"internal error (logged)\n")
        finally:
            if conn.evict is None:  # not parked: the connection ends with this task
                self._end(conn)
                with trio.move_on_after(CLOSE_TIMEOUT_SECONDS) as cleanup:
                    cleanup.shield = True
                    await _close(conn.stream)

    def _bounded(self, action: Callable[[_Connection], None]) -> Callable[[_Connection], None]:
        """A parked connection's crash boundary: what breaks ends it, not the watcher."""

        def bounded(conn: _Connection) -> None:
            try:
                action(conn)
            except Exception:
                self._internal_error(conn)
                conn.evict = None
                self._end(conn)
                if isinstance(conn.stream, trio.SocketStream):  # always, when parked
                    with contextlib.suppress(OSError):
                        conn.stream.socket.close()

        return bounded

    def _internal_error(self, conn: _Connection) -> None:
        """Logged once with the traceback being handled, and counted."""
        self._internal_errors.inc()
        log_event(
            log,
            logging.ERROR,
            "internal error",
            "internal error on a %(listener)s connection from %(peer)s",
            exc_info=True,
            listener=self._listener,
            peer=conn.peer.address,
        )

    def _end(self, conn: _Connection) -> None:
        if conn.slot is not None:
            self._slots.release(conn.slot)  # idempotent: a reclaimed slot is released already
            conn.slot = None
            self._open.dec()

    def _park(self, conn: _Connection, slot: Slot, idle_deadline: float) -> bool:
        """Move an idle plain-TCP connection out of its task; False if it cannot be."""
        parking = self._parking
        if parking is None or conn.fd is None or self._draining.closing:
            return False
        conn.evict = self._evict_parked
        conn.idle_deadline = idle_deadline
        if not parking.park(conn.fd, conn, idle_deadline):
            conn.evict = None
            return False
        return True  # the slot stays idle from its wait in `_receive`

    def _evict_parked(self, conn: _Connection) -> None:
        """Reclaimed for a newcomer while parked (its slot is released already)."""
        assert conn.fd is not None  # only plain TCP is parked
        if self._parking is not None and self._parking.evict(conn.fd) is conn:
            self._metrics.connections_reclaimed.labels(self._listener).inc()
            log_event(
                log,
                logging.DEBUG,
                "connection reclaimed",
                "idle connection from %(peer)s reclaimed for a newcomer",
                peer=conn.peer.address,
            )
            self._close_parked(conn)

    def _parked_expired(self, conn: _Connection) -> None:
        self._metrics.timeouts.labels("idle").inc()
        self._close_parked(conn)

    def _close_parked(self, conn: _Connection) -> None:
        conn.evict = None
        self._end(conn)
        stream = conn.stream
        assert isinstance(stream, trio.SocketStream)  # only plain TCP is parked
        stream.socket.close()  # synchronous: trio forgets the descriptor, then it closes

    async def _refuse(self, conn: _Connection, refusal: Refusal) -> None:
        self._metrics.connections_refused.labels(self._listener, refusal.value).inc()
        log_event(
            log,
            logging.INFO,
            "connection refused",
            "%(listener)s connection from %(peer)s refused: %(reason)s",
            listener=self._listener,
            peer=conn.peer.address,
            reason=refusal.value,
        )
        await self._send_quietly(conn, 503, b"too many connections (%s)\n" % refusal.encode())

    async def _serve(self, conn: _Connection, slot: Slot) -> None:
        limits = self._limits
        accepted = trio.current_time()
        # The deadline of the request now arriving; None while the connection is idle.
        request_deadline: float | None = None
        if isinstance(conn.stream, trio.SSLStream):
            request_deadline = accepted + limits.request_timeout_seconds
            if not await self._handshake(conn, conn.stream, request_deadline):
                return
        idle_deadline = accepted + limits.idle_timeout_seconds
        if request_deadline is None and self._park(conn, slot, idle_deadline):
            # Parked before its first byte, task and parser unmade: a client with a
            # request is back in one round of the loop; an idle socket costs nothing more.
            self._slots.idle(slot)
            return
        parser = RequestParser(limits.max_body_bytes, limits.max_header_bytes)
        try:
            await self._serve_requests(conn, slot, parser, request_deadline, idle_deadline)
        finally:
            parser.close()  # freed now, not by a full garbage collection (RequestParser.close)

    async def _serve_requests(
        self,
        conn: _Connection,
        slot: Slot,
        parser: RequestParser,
        request_deadline: float | None,
        idle_deadline: float,
        *,
        readable: bool = False,
    ) -> None:
        """Serve requests until the connection must close or is parked (`readable`: the
        socket has data or EOF waiting, so it is not parked before reading)."""
        limits = self._limits
        while not self._draining.closing:
            data = await self._receive(
                conn, slot, request_deadline, idle_deadline, may_park=not readable
            )
            readable = False
            if data is _PARK:
                if self._park(conn, slot, idle_deadline):
                    return
                continue  # not parked after all (shutting down): wait here
            if not isinstance(data, bytes):
                return
            received = trio.current_time()
            if request_deadline is None:
                request_deadline = received + limits.request_timeout_seconds  # its first byte
            answered = False
            view = memoryview(data)
            # A slice at a time: a pipelining peer (one that never reads, say) holds at
            # most one slice's requests parsed and waiting, not a whole receive's.
            for start in range(0, len(view), FEED_SLICE_BYTES):
                try:
                    requests = parser.feed(view[start : start + FEED_SLICE_BYTES])
                except HttpProtocolError as exc:
                    await self._refuse_http(conn, exc)
                    return
                for request in requests:
                    if not await self._answer(conn, request):
                        return
                answered = answered or bool(requests)
            if answered:
                # A request pipelined behind these began arriving with this data.
                request_deadline = (
                    received + limits.request_timeout_seconds if parser.in_progress else None
                )
                idle_deadline = trio.current_time() + limits.idle_timeout_seconds

    async def _refuse_http(self, conn: _Connection, exc: HttpProtocolError) -> None:
        """Answer what completed before the breach, then the refusal; linger; the caller closes."""
        for request in exc.completed:
            await self._answer(conn, request)
        self._metrics.http_errors.labels(str(exc.status)).inc()
        log_event(
            log,
            logging.INFO,
            "HTTP refusal",
            "HTTP refusal %(status)d from %(peer)s: %(reason)s",
            status=exc.status,
            peer=conn.peer.address,
            reason=exc.reason,
        )
        await self._send_quietly(conn, exc.status, exc.reason.encode() + b"\n")
        await _linger(conn.stream)

    async def _receive(
        self,
        conn: _Connection,
        slot: Slot,
        request_deadline: float | None,
        idle_deadline: float,
        *,
        may_park: bool = False,
    ) -> bytes | _Park | None:
        """The next bytes; None when the connection must close (timeout, EOF, reclaimed);
        `_PARK` when it has been idle for PARK_AFTER_SECONDS and may be parked."""
        idle = request_deadline is None
        deadline = idle_deadline if request_deadline is None else request_deadline
        park_at = math.inf
        if idle and may_park and self._parking is not None and conn.fd is not None:
            park_at = trio.current_time() + PARK_AFTER_SECONDS
        with trio.move_on_at(min(deadline, park_at)) as wait:
            if idle:
                conn.idle_wait = wait
                self._slots.idle(slot)
            try:
                data = await conn.stream.receive_some(RECEIVE_CHUNK_BYTES)
            except _DROPPED as exc:
                raise _PeerGone(repr(exc)) from exc
            finally:
                conn.idle_wait = None
            self._slots.busy(slot)
            return bytes(data) if data else None  # b"": the peer closed
        if not slot.reclaimed and park_at < deadline and trio.current_time() >= park_at:
            return _PARK  # still idle, in its place in the reclaim order
        self._slots.busy(slot)
        if slot.reclaimed:
            self._metrics.connections_reclaimed.labels(self._listener).inc()
            log_event(
                log,
                logging.DEBUG,
                "connection reclaimed",
                "idle connection from %(peer)s reclaimed for a newcomer",
                peer=conn.peer.address,
            )
        elif idle:
            self._metrics.timeouts.labels("idle").inc()
        else:
            self._metrics.timeouts.labels("request").inc()
            log_event(
                log,
                logging.INFO,
                "request timeout",
                "request from %(peer)s not complete within %(timeout_seconds).1f s: 408",
                peer=conn.peer.address,
                timeout_seconds=self._limits.request_timeout_seconds,
                status=408,
            )
            await self._send_quietly(conn, 408, b"request not completed in time\n")
            await _linger(conn.stream)
        return None

    async def _handshake(
        self, conn: _Connection, stream: trio.SSLStream[Any], deadline: float
    ) -> bool:
        """Complete the TLS handshake by `deadline`; a failure is logged at info and counted."""
        failure: HandshakeFailure | None = None
        detail = ""
        with trio.move_on_at(deadline) as scope:
            try:
                await stream.do_handshake()
            except _DROPPED as exc:
                failure = handshake_failure(exc)
                cause = exc.__cause__ or exc
                detail = getattr(cause, "verify_message", None) or str(cause)
        if scope.cancelled_caught:
            failure = HandshakeFailure.TIMEOUT
            detail = f"not complete within {self._limits.request_timeout_seconds:.1f} s"
            self._metrics.timeouts.labels("tls_handshake").inc()
        if failure is not None:
            self._metrics.tls_handshake_failures.labels(failure.value).inc()
            log_event(
                log,
                logging.INFO,
                "TLS handshake refused",
                "TLS handshake from %(peer)s refused: %(reason)s (%(detail)s)",
                peer=conn.peer.address,
                reason=failure.value,
                detail=detail,
            )
            return False
        conn.peer = PeerInfo(
            conn.peer.address, stream.getpeercert(binary_form=True), conn.peer.host
        )
        return True

    async def _answer(self, conn: _Connection, request: HttpRequest) -> bool:
        """Handle one request; False when the connection must close afterwards."""
        self._draining.begin()
        try:
            answer = await self._handler(request, conn.peer)
        finally:
            self._draining.end()
        status, body, content_type = answer[:3]
        headers = answer[3] if len(answer) == 4 else ()
        keep_alive = request.keep_alive and not self._draining.closing
        response = render_response(
            status,
            body,
            content_type=content_type,
            keep_alive=keep_alive,
            http_1_0=request.http_version == "1.0",
            extra_headers=headers,
        )
        conn.responding = True  # from here a 500 could only garble the stream
        await self._send(conn, response)
        conn.responding = False
        return keep_alive

    async def _send(self, conn: _Connection, data: bytes) -> None:
        """Write under the send timeout; a peer that does not read loses the connection."""
        if conn.fd is not None:
            # Plain TCP: an answer almost always fits the socket buffer, so write it now,
            # without trio's send path (a scheduler round and a cancel scope per answer).
            # The loop's receive is the connection's checkpoint either way.
            try:
                sent = os.write(conn.fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise _PeerGone(repr(exc)) from exc
            if sent == len(data):
                return
            data = data[sent:]
        with trio.move_on_after(self._limits.send_timeout_seconds) as scope:
            try:
                await conn.stream.send_all(data)
            except _DROPPED as exc:
                raise _PeerGone(repr(exc)) from exc
        if scope.cancelled_caught:
            self._metrics.timeouts.labels("send").inc()
            log_event(
                log,
                logging.INFO,
                "send timeout",
                "%(peer)s did not read a response within %(timeout_seconds).1f s: closed",
                peer=conn.peer.address,
                timeout_seconds=self._limits.send_timeout_seconds,
            )
            raise _PeerGone("send timeout")

    async def _send_quietly(self, conn: _Connection, status: int, text: bytes) -> None:
        """A last word before closing (refusal, 408, 500): best effort, bounded in time."""
        conn.responding = True
        with contextlib.suppress(_PeerGone):
            await self._send(
                conn, render_response(status, text, content_type=b"text/plain", keep_alive=False)
            )


async def _linger(stream: trio.abc.Stream) -> None:
    """Half-close, then drop what the peer still sends, bounded in time and bytes.

    Only plain TCP can half-close; over TLS the answer's `connection: close` must do.
    """
    if not isinstance(stream, trio.SocketStream):
        return
    drained = 0
    with trio.move_on_after(LINGER_SECONDS), contextlib.suppress(*_DROPPED):
        await stream.send_eof()
        while drained < LINGER_MAX_BYTES:
            data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
            if not data:
                return
            drained += len(data)


async def _close(stream: trio.abc.Stream) -> None:
    with contextlib.suppress(*_DROPPED):
        await stream.aclose()


def _peer_address(stream: trio.abc.Stream) -> PeerInfo:
    """The peer's address (before any TLS handshake: no certificate yet)."""
    inner: Any = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(inner, trio.SocketStream):
        try:
            name = inner.socket.getpeername()
        except OSError:  # the peer left before we asked
            return PeerInfo("?", None, "?")
        if isinstance(name, tuple) and len(name) >= 2:  # AF_INET, AF_INET6
            host, port = name[0], name[1]
            return PeerInfo(f"{host}:{port}", None, str(host))
        # AF_UNIX: a path, or '' for an unnamed peer; all such peers share one host slot.
        path = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        return PeerInfo(f"unix:{path or '?'}", None, "unix")
    return PeerInfo("?", None, "?")
