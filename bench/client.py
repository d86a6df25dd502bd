"""The load client: keep-alive HTTP/1.1 connections sending pre-signed requests.

Closed loop: every connection sends its next request as soon as the last answer is
in (the maximum rate). Open loop: request j is due at start + j/rate; connection
j mod K sends it when due (or when it is free, if later) and its latency counts from
the due time, so a stalled server cannot hide its queue (no coordinated omission).
One thing is taken out: when the connection was free at the due time, how late the
client itself woke to send. Its timer wakes 0.3-1.2 ms late on an idle core (the
epoll wait is in whole milliseconds, rounded up), and the client shares its core with
the estate and the receiver; none of that is the gateway's. The latency from the due
time, that lateness included, is kept beside it (`Tally.latencies_from_due`).
Connection j mod K keeps the corpus's per-originator order (see bench/corpus.py).
What the connections saw is gathered in a `Tally`; bench/load.py turns it into a report.
"""

from __future__ import annotations

import math
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from bench.corpus import Prepared
from gateway.devkit.devpki import TLS_CA_NAME, TLS_SUBDIRECTORY

RESPONSE_TIMEOUT_SECONDS = 30.0
RECEIVE_BYTES = 65_536
OPEN_LOOP_LEAD_SECONDS = 0.2  # connections open before the first request is due


class Tally:
    """What one run saw, shared by its connection tasks (trio runs one at a time)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.latencies_from_due: list[float] = []  # the client's own lateness included
        self.send_lags: list[float] = []
        self.wake_lateness: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.codes: Counter[str] = Counter()
        self.unexpected = 0
        self.failures: Counter[str] = Counter()  # requests never answered, by exception
        self.retried = 0  # sent again after their connection closed unanswered
        self.last_answer = 0.0
        self.elapsed = 0.0


class Connection:
    """One keep-alive HTTP/1.1 connection: the request is pre-rendered bytes, and the
    answer is read with two `find`s, because a client costing as much CPU as the server
    would measure itself."""

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext | None) -> None:
        self._address = address
        self._context = context
        self._stream: trio.abc.Stream | None = None
        self._buffer = bytearray()

    async def exchange(self, wire: bytes) -> tuple[int, bytes]:
        if self._stream is None:
            self._stream = await self._connect()
        stream, buffer = self._stream, self._buffer
        await stream.send_all(wire)
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += await self._receive(stream)
        head = bytes(buffer[:end]).lower()
        status = int(head[9:12])
        start = head.find(b"\r\ncontent-length:") + 17
        stop = head.find(b"\r\n", start)
        total = end + 4 + int(head[start : stop if stop >= 0 else len(head)])
        while len(buffer) < total:
            buffer += await self._receive(stream)
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        if b"\r\nconnection: close" in head:
            await self.close()
        return status, body

    async def _connect(self) -> trio.abc.Stream:
        stream: trio.abc.Stream = await trio.open_tcp_stream(*self._address)
        if self._context is not None:
            stream = trio.SSLStream(stream, self._context, server_hostname="localhost")
            await stream.do_handshake()
        return stream

    @staticmethod
    async def _receive(stream: trio.abc.Stream) -> bytes | bytearray:
        chunk = await stream.receive_some(RECEIVE_BYTES)
        if not chunk:
            raise trio.BrokenResourceError("the gateway closed the connection")
        return chunk

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        self._buffer.clear()
        if stream is not None:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await trio.aclose_forcefully(stream)


def duis_code(body: bytes) -> str:
    """The ResponseCode by byte search: an XML parse here would cost more than the server's."""
    start = body.find(b"ResponseCode>")
    if start < 0:
        return "none"
    return body[start + 13 : body.find(b"<", start)].decode("ascii", "replace")


# One request on a connection, its outcome written to the tally: (connection, request,
# due time, how late the client itself sent it, tally).
OneRequest = Callable[["Connection", Prepared, float, float, Tally], Awaitable[None]]


async def _one(
    conn: Connection, request: Prepared, due: float, client_late: float, tally: Tally
) -> None:
    wire, expected = request
    try:
        with trio.fail_after(RESPONSE_TIMEOUT_SECONDS):
            status, body = await conn.exchange(wire)
    except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError, ValueError) as exc:
        tally.failures[type(exc).__name__] += 1
        await conn.close()
        return
    record_answer(tally, status, body, expected, due, client_late)


def record_answer(
    tally: Tally,
    status: int,
    body: bytes,
    expected: frozenset[str],
    due: float,
    client_late: float = 0.0,
) -> None:
    """`client_late`: how late the client sent it while its connection was free."""
    now = trio.current_time()
    tally.latencies.append(now - due - client_late)
    tally.latencies_from_due.append(now - due)
    tally.last_answer = now
    tally.statuses[status] += 1
    code = duis_code(body) if status == 200 else f"HTTP {status}"
    tally.codes[code] += 1
    if code not in expected:
        tally.unexpected += 1


async def closed_loop(
    address: tuple[str, int],
    slots: list[list[Prepared]],
    contexts: list[ssl.SSLContext] | None,
    seconds: float | None,
) -> Tally:
    tally = Tally()
    start = trio.current_time()
    stop_at = start + seconds if seconds else math.inf

    async def connection(k: int) -> None:
        conn = Connection(address, contexts[k] if contexts else None)
        try:
            for request in slots[k]:
                if trio.current_time() >= stop_at:
                    break
                await _one(conn, request, trio.current_time(), 0.0, tally)
        finally:
            await conn.close()

    async with trio.open_nursery() as nursery:
        for k in range(len(slots)):
            nursery.start_soon(connection, k)
    tally.elapsed = max(tally.last_answer - start, 1e-9)
    return tally


async def open_loop(
    address: tuple[str, int],
    slots: list[list[Prepared]],
    contexts: list[ssl.SSLContext] | None,
    rate: float,
    one: OneRequest = _one,
) -> Tally:
    tally = Tally()
    start = trio.current_time() + OPEN_LOOP_LEAD_SECONDS
    width = len(slots)

    async def connection(k: int) -> None:
        conn = Connection(address, contexts[k] if contexts else None)
        try:
            for m, request in enumerate(slots[k]):
                due = start + (m * width + k) / rate
                client_late = 0.0
                if trio.current_time() < due:
                    await trio.sleep_until(due)
                    # How late the client itself woke: its own health, not the server's.
                    client_late = trio.current_time() - due
                    tally.wake_lateness.append(client_late)
                # Otherwise the connection was still waiting on the gateway at the due
                # time: all of that delay counts.
                tally.send_lags.append(trio.current_time() - due)
                await one(conn, request, due, client_late, tally)
        finally:
            await conn.close()

    async with trio.open_nursery() as nursery:
        for k in range(width):
            nursery.start_soon(connection, k)
    tally.elapsed = max(tally.last_answer - start, 1e-9)
    return tally


def tls_contexts(pki: Path, slot_ids: list[list[str]]) -> list[ssl.SSLContext]:
    """One client context per slot, with the TLS certificate of the slot's first User ID."""
    tls_dir = pki / TLS_SUBDIRECTORY
    contexts = []
    for ids in slot_ids:
        eui = ids[0].replace("-", "")
        context = ssl.create_default_context(cafile=str(tls_dir / f"{TLS_CA_NAME}.cert.pem"))
        context.load_cert_chain(
            tls_dir / f"tls-client-{eui}.cert.pem", tls_dir / f"tls-client-{eui}.key.pem"
        )
        contexts.append(context)
    return contexts
