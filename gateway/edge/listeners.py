"""Binding the listeners, serving their connections, and the designed shutdown.

SIGTERM/SIGINT: stop accepting DUIS connections, let the requests in flight
finish under `drain_timeout_seconds`, then close what is left; SIGHUP reloads
(the composition root says what a reload is).
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from gateway.core.config import StartupError
from gateway.core.log_fields import log_event
from gateway.edge.server import ConnectionHandler, Draining

log = logging.getLogger("duisgw")

LISTEN_BACKLOG: Final = 1024
PROBE_BACKLOG: Final = 1  # a port probe only needs listen() to succeed
# accept() failures that mean "out of descriptors or memory for now", not a broken listener.
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_SECONDS: Final = 0.1
Listeners = list[trio.abc.Listener[trio.abc.Stream]]


async def open_listeners(
    host: str, port: int, context: ssl.SSLContext | None, reuse_port: bool
) -> Listeners:
    sock = trio.socket.socket(
        trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET, trio.socket.SOCK_STREAM
    )
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise cannot_listen(host, port, exc) from None
    except BaseException:
        sock.close()
        raise
    listener: trio.abc.Listener[trio.abc.Stream] = trio.SocketListener(sock)
    if context is not None:
        listener = trio.SSLListener(listener, context, https_compatible=True)
    return [listener]


def cannot_listen(host: str, port: int, exc: OSError) -> StartupError:
    return StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def probe_listen(host: str, port: int) -> None:
    """Bind and listen as `open_listeners` would, then let go (`duisgw config check`);
    `cannot_listen` if it cannot. Port 0 (any free port) always can."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(PROBE_BACKLOG)
        except OSError as exc:
            raise cannot_listen(host, port, exc) from None


def bound(listeners: Sequence[trio.abc.Listener[trio.abc.Stream]]) -> tuple[str, int]:
    inner = listeners[0]
    if isinstance(inner, trio.SSLListener):
        inner = inner.transport_listener
    assert isinstance(inner, trio.SocketListener)
    host, port, *_ = inner.socket.getsockname()
    return host, port


async def serve_connections(
    handler: ConnectionHandler, listeners: Listeners, nursery: trio.Nursery
) -> None:
    """Accept until cancelled, each connection's task in `nursery`.

    Not `trio.serve_listeners`: it closes a stream when its task returns, and a parked
    connection (gateway/edge/idle_parking.py) outlives its task; the handler closes
    every stream itself. Like it, a full descriptor table or memory is logged and
    retried, not fatal.
    """
    async with trio.open_nursery() as accepting:
        for listener in listeners:
            accepting.start_soon(_accept, handler, listener, nursery)


async def _accept(
    handler: ConnectionHandler, listener: trio.abc.Listener[trio.abc.Stream], nursery: trio.Nursery
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                log_event(
                    log,
                    logging.ERROR,
                    "accept failed",
                    "accept: %(error)s; retrying in %(retry_seconds)s s",
                    error=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                    retry_seconds=ACCEPT_RETRY_SECONDS,
                )
                await trio.sleep(ACCEPT_RETRY_SECONDS)
            else:
                nursery.start_soon(handler, stream)


async def serve_until_stopped(
    duis: tuple[ConnectionHandler, Listeners],
    admin: tuple[ConnectionHandler, Listeners],
    draining: Draining,
    drain_timeout_seconds: float,
    *,
    serving: Callable[[bool], None],
    stopped: Callable[[], Awaitable[None]],
) -> None:
    """Accept on both listeners until `stopped` returns, then drain the DUIS requests.

    `serving(True)` once both accept (readiness, the bound addresses); `serving(False)`
    as the drain begins.
    """
    async with trio.open_nursery() as connections:
        accept_scope = trio.CancelScope()

        async def accept() -> None:
            with accept_scope:
                await serve_connections(duis[0], duis[1], connections)

        connections.start_soon(accept)
        connections.start_soon(serve_connections, admin[0], admin[1], connections)
        for handler in (duis[0], admin[0]):  # idle connections wait there, not in tasks
            connections.start_soon(handler.park_idle_connections, connections)
        serving(True)
        await stopped()
        serving(False)
        accept_scope.cancel()
        draining.closing = True
        with trio.move_on_after(drain_timeout_seconds) as drain:
            await draining.wait_idle()
        if drain.cancelled_caught:
            log_event(
                log,
                logging.WARNING,
                "drain deadline passed",
                "drain deadline passed with %(in_flight)d requests in flight",
                in_flight=draining.in_flight,
            )
        connections.cancel_scope.cancel()


async def wait_for_stop(reload: Callable[[], object]) -> None:
    """Return on SIGTERM/SIGINT; call `reload` on SIGHUP."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                reload()
                continue
            log_event(
                log,
                logging.INFO,
                "draining",
                "signal %(signal)s: draining",
                signal=signal.Signals(signum).name,
            )
            return
