"""`NetworkTransport`: the DeviceTransport that reaches an estate service over the estate
link (docs/estate-link.md), e.g. `duisgw estate serve` or a CSP adapter.

`run` keeps one connection up: it connects (TLS when configured), says Hello, and
reconnects with exponential backoff and full jitter when the link drops or goes silent.
`send` waits for a credit the estate granted, in priority order (a waiting top-up goes
before a waiting read), writes the Command and waits for its Reply. Never more commands
are written than the estate granted on this connection; a command without credit waits
in its caller (the life cycle, whose backlog is the durable jobs journal).

Who retries what: a command written to the estate is never written again by this node
(the device may already have acted on it). If no Reply comes within its timeout, the
caller gets NO_RESPONSE (E21), or FUTURE_DATED_TIMEOUT (E30) for a future-dated command
whose timeout counts from its execution time. A command not yet written waits for the
link to come back. A Reply for a command this node is not waiting for (sent by another
node that is gone, or that timed out here) goes to the `orphans` handler, which finishes
the job from the shared store if it is still pending there.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from gateway.core.clock import Clock
from gateway.core.config import StartupError
from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply, Priority
from gateway.core.estate_config import EstateConfig, EstateTls
from gateway.core.estate_link import (
    PROTOCOL_VERSION,
    Alert,
    Credit,
    Error,
    ErrorCode,
    FrameError,
    Heartbeat,
    Hello,
    Message,
    Reply,
    command_from_device,
    device_reply,
    encode,
)
from gateway.core.log_fields import log_event
from gateway.edge.delivery import backoff_delay
from gateway.edge.estate_stream import FramedStream, LinkClosed, LinkSilent, sole_error
from gateway.edge.metrics import Metrics

log = logging.getLogger("duisgw.estate_link")

# Replies for commands this node is not waiting for, queued for the orphans handler.
ORPHAN_QUEUE = 1000

OrphanReplies = Callable[[str, DeviceReply], Awaitable[None]]
DeviceAlerts = Callable[[Alert], Awaitable[None]]


class LinkRefused(Exception):
    """The estate refused the session (version, token) or broke the protocol."""


@dataclass(eq=False, slots=True)
class _Waiter:
    """A command waiting for a credit; `link` is set when granted."""

    granted: trio.Event = field(default_factory=trio.Event)
    link: FramedStream | None = None
    gone: bool = False  # its caller left before the grant


@dataclass(eq=False, slots=True)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    reply: DeviceReply | None = None


class NetworkTransport:
    def __init__(
        self,
        config: EstateConfig,
        *,
        node_id: str,
        clock: Clock,
        ssl_context: ssl.SSLContext | None = None,
        auth_token: str | None = None,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._config = config
        self.node_id = node_id
        self._clock = clock
        self._ssl = ssl_context
        self._token = auth_token
        self._rng = rng or random.Random()
        host, _, port = config.address.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._link: FramedStream | None = None
        self._credit = 0
        self._waiters: list[tuple[Priority, int, _Waiter]] = []
        self._seq = itertools.count()
        self._pending: dict[str, _Pending] = {}
        self._orphans_in, self._orphans_out = trio.open_memory_channel[tuple[str, DeviceReply]](
            ORPHAN_QUEUE
        )
        self._orphan_handler: OrphanReplies | None = None
        self._alert_handler: DeviceAlerts | None = None
        # The queue metrics per class, as the embedded simulator's hub queues keep them:
        # depth is what waits here for credit; wait is credit wait + the estate's hub wait.
        self._depth = self._wait = None
        if metrics is not None:
            self._depth = {p: metrics.queue_depth.labels(p.name.lower()) for p in Priority}
            self._wait = {p: metrics.queue_wait.labels(p.name.lower()) for p in Priority}
        self.connected = trio.Event()  # set once the first session is up (tests, start-up)
        self.sessions = 0  # sessions established so far
        self.in_flight = 0  # commands written and not yet answered or timed out
        self.orphan_replies = 0  # replies for commands this node was not waiting for

    def on_orphan_reply(self, handler: OrphanReplies) -> None:
        self._orphan_handler = handler

    def on_alert(self, handler: DeviceAlerts) -> None:
        self._alert_handler = handler

    @property
    def waiting(self) -> int:
        """Commands waiting for a credit."""
        return sum(1 for _, _, w in self._waiters if not w.gone)

    # -- DeviceTransport ------------------------------------------------------------------

    async def send(self, command: DeviceCommand) -> DeviceReply:
        command_id = str(command.request_id)
        pending = self._pending.get(command_id)
        if pending is not None:  # the same job twice (e.g. recovered): one command, one reply
            await pending.done.wait()
            return pending.reply or _timed_out(command)
        pending = self._pending[command_id] = _Pending()
        written = False
        try:
            asked_at = trio.current_time()
            deadline = await self._write(command)
            written = True
            held = trio.current_time() - asked_at
            with trio.move_on_at(deadline):
                await pending.done.wait()
            reply = pending.reply
            if reply is not None and self._wait is not None:
                self._wait[command.priority].observe(held + (reply.queued_seconds or 0.0))
            if reply is None:
                reply = _timed_out(command)
                log_event(
                    log,
                    logging.WARNING,
                    "estate command timed out",
                    "request_id=%(request_id)s: no reply from the estate in time; answered "
                    "%(outcome)s",
                    request_id=command_id,
                    outcome=str(reply.outcome),
                )
            pending.reply = reply
            return reply
        finally:
            pending.done.set()
            del self._pending[command_id]
            self.in_flight -= written

    async def _write(self, command: DeviceCommand) -> float:
        """Write the command on a link with credit; its reply deadline (trio time)."""
        while True:
            link = await self._acquire(command.priority)
            if link.closed:
                continue  # granted on a link that dropped before we wrote: not sent
            timeout = self._config.command_timeout_seconds
            if command.not_before is not None:
                ahead = (_aware(command.not_before) - self._clock.now()).total_seconds()
                timeout += max(0.0, ahead)
            frame = encode(
                command_from_device(command, node_id=self.node_id, timeout_seconds=timeout)
            )
            deadline = trio.current_time() + timeout
            try:
                await link.send_frame(frame)
            except LinkClosed:
                # It may have left before the link broke: never written twice; the estate
                # may still answer over the next connection.
                log.info("link dropped while writing %s; waiting for its reply", command.request_id)
            self.in_flight += 1
            return deadline

    async def _acquire(self, priority: Priority) -> FramedStream:
        if self._credit > 0 and self._link is not None and not self._waiters:
            self._credit -= 1
            return self._link
        waiter = _Waiter()
        heapq.heappush(self._waiters, (priority, next(self._seq), waiter))
        if self._depth is not None:
            self._depth[priority].inc()
        try:
            await waiter.granted.wait()
        except BaseException:
            waiter.gone = True
            if waiter.granted.is_set() and waiter.link is self._link:
                self._credit += 1  # granted as we were cancelled: pass it on
                self._grant()
            raise
        finally:
            if self._depth is not None:
                self._depth[priority].dec()
        assert waiter.link is not None
        return waiter.link

    def _grant(self) -> None:
        link = self._link
        while self._credit > 0 and link is not None and self._waiters:
            waiter = heapq.heappop(self._waiters)[2]
            if waiter.gone:
                continue
            self._credit -= 1
            waiter.link = link
            waiter.granted.set()

    # -- the connection -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a session with the estate up until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._handle_orphans)
            task_status.started()
            failures = 0
            while True:
                try:
                    await self._session()
                    failures = 0  # it was up: the next attempt starts from the base delay
                except (OSError, trio.TooSlowError, LinkClosed, LinkSilent, FrameError) as exc:
                    log_event(
                        log,
                        logging.WARNING,
                        "estate link down",
                        "estate link to %(address)s down: %(reason)s",
                        address=self._config.address,
                        reason=str(exc) or type(exc).__name__,
                    )
                except LinkRefused as exc:
                    log_event(
                        log,
                        logging.ERROR,
                        "estate link refused",
                        "estate at %(address)s refused this node: %(reason)s",
                        address=self._config.address,
                        reason=str(exc),
                    )
                failures += 1
                await trio.sleep(
                    backoff_delay(
                        failures,
                        base=self._config.reconnect_initial_seconds,
                        cap=self._config.reconnect_max_seconds,
                        rng=self._rng,
                    )
                )

    async def _session(self) -> None:
        link = await self._connect()
        try:
            await link.send(
                Hello(
                    node_id=self.node_id, protocol_version=PROTOCOL_VERSION, auth_token=self._token
                )
            )
            messages = link.messages()
            with trio.fail_after(self._config.connect_timeout_seconds):
                first = await anext(messages)
            if not isinstance(first, Hello):
                raise LinkRefused(f"expected Hello, got {type(first).__name__}")
            if first.protocol_version != PROTOCOL_VERSION:
                await link.refuse(ErrorCode.VERSION, f"this node speaks {PROTOCOL_VERSION}")
                raise LinkRefused(f"estate speaks protocol {first.protocol_version}")
            self._link, self._credit = link, 0
            self.sessions += 1
            self.connected.set()
            log.info("estate link up: %s (estate %s)", self._config.address, first.node_id)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._heartbeats, link)
                    async for message in messages:
                        await self._on_message(link, message)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                raise sole_error(group) from None
        finally:
            if self._link is link:
                self._link, self._credit = None, 0
            await link.aclose()

    async def _connect(self) -> FramedStream:
        config = self._config
        with trio.fail_after(config.connect_timeout_seconds):
            stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
            if self._ssl is not None:
                server_name = config.tls.server_name if config.tls else None
                tls = trio.SSLStream(stream, self._ssl, server_hostname=server_name or self._host)
                await tls.do_handshake()
                stream = tls
        return FramedStream(
            stream,
            max_frame_bytes=config.max_frame_bytes,
            heartbeat_seconds=config.heartbeat_seconds,
            peer=f"estate {config.address}",
        )

    async def _on_message(self, link: FramedStream, message: Message) -> None:
        if isinstance(message, Reply):
            reply = device_reply(message)
            pending = self._pending.get(message.command_id)
            if pending is not None and pending.reply is None and not pending.done.is_set():
                pending.reply = reply
                pending.done.set()
            else:
                self.orphan_replies += 1
                await self._orphans_in.send((message.command_id, reply))
        elif isinstance(message, Credit):
            self._credit += message.n
            self._grant()
        elif isinstance(message, Heartbeat):
            pass  # its arrival is what counts
        elif isinstance(message, Alert):
            if self._alert_handler is not None:
                await self._alert_handler(message)
            else:
                log.warning("device alert from %s dropped: no handler", message.device_id)
        elif isinstance(message, Error):
            raise LinkRefused(f"{message.code}: {message.reason}")
        else:
            await link.refuse(ErrorCode.PROTOCOL, f"unexpected {type(message).__name__}")
            raise LinkRefused(f"estate sent an unexpected {type(message).__name__}")

    async def _heartbeats(self, link: FramedStream) -> None:
        frame = encode(Heartbeat())
        while True:
            await trio.sleep(self._config.heartbeat_seconds)
            await link.send_frame(frame)

    async def _handle_orphans(self) -> None:
        async for command_id, reply in self._orphans_out:
            if self._orphan_handler is None:
                log.warning("reply for %s, which this node is not waiting for; dropped", command_id)
                continue
            try:
                await self._orphan_handler(command_id, reply)
            except Exception:  # one bad reply must not stop the others being finished
                log.exception("reply for %s could not be finished", command_id)


def _timed_out(command: DeviceCommand) -> DeviceReply:
    late = DeviceOutcome.FUTURE_DATED_TIMEOUT if command.not_before else DeviceOutcome.NO_RESPONSE
    return DeviceReply(late)


def _aware(when: dt.datetime) -> dt.datetime:
    # DUIS date-times without an offset are UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def network_transport(
    config: EstateConfig,
    clock: Clock,
    worker: tuple[int, int] = (0, 1),
    metrics: Metrics | None = None,
) -> NetworkTransport:
    """From the `[estate]` table; StartupError for TLS or token files that cannot be used."""
    node_id = config.node_id or socket.gethostname()
    if worker[1] > 1:
        node_id = f"{node_id}/{worker[0]}"
    return NetworkTransport(
        config,
        node_id=node_id,
        clock=clock,
        ssl_context=None if config.tls is None else client_context(config.tls),
        auth_token=read_token_file(config.auth_token_file),
        metrics=metrics,
    )


def check_estate_link(config: EstateConfig) -> None:
    """StartupError naming the `[estate]` file that cannot be used (TLS, token)."""
    if config.tls is not None:
        client_context(config.tls)
    read_token_file(config.auth_token_file)


def client_context(tls: EstateTls) -> ssl.SSLContext:
    """The node's side of TLS: the estate verified against `ca` (else the system's CAs)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if tls.ca is not None:
            context.load_verify_locations(tls.ca)
        if tls.certificate is not None:
            context.load_cert_chain(tls.certificate, tls.private_key)
    except OSError as exc:  # ssl.SSLError is one
        files = ", ".join(p for p in (tls.ca, tls.certificate, tls.private_key) if p)
        raise StartupError(f"[estate.tls] {files}: {exc.strerror or exc}") from None
    return context


def read_token_file(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise StartupError(f"estate.auth_token_file: {exc}") from None
    if not token:
        raise StartupError(f"estate.auth_token_file {path} is empty")
    return token
