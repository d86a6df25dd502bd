"""`duisgw estate serve`: the simulated estate as its own service on the estate link.

Any DeviceTransport can stand behind it; `duisgw estate serve` puts the Simulator
(hub variants, latencies, failures, future-dated execution, alerts, per-hub priority
queues) there, so the gateway's process does no simulator work.

Several gateway nodes connect at once. Each connection is a crash boundary: a frame that
does not decode, a command without credit or any error in its handler closes that
connection only (logged); the commands it already handed over keep running, because a
device that has a command acts on it whoever is listening. A command's Reply goes back
on the connection it came on; if that is gone, on another live connection of the same
node; if the node has none, it waits `orphan_grace_seconds` for the node to come back,
then goes to any live node (the job is in the shared store, so any node can finish it).

Unsolicited device alerts: `send_alert` sends one as an `alert` frame to a live node
(the simulated estate raises alerts alongside replies; tests and tools call it).

Credit is per node: a node's connections together never have more than `credit_window`
commands inside the estate or granted. A connection gets, after Hello, the window less
what its node still has here (commands from a connection that dropped keep running),
and one more each time one of its node's commands is answered, on that connection if it
is still live, else on the node's newest one; a Command beyond the credit is a protocol
error (docs/estate-link.md).
"""

from __future__ import annotations

import functools
import hmac
import logging
import signal
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import trio

from gateway.core.clock import Clock, SystemClock
from gateway.core.config import Config, StartupError
from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply
from gateway.core.estate_config import EstateConfig, EstateTls
from gateway.core.estate_link import (
    PROTOCOL_VERSION,
    Alert,
    Command,
    Credit,
    Error,
    ErrorCode,
    FrameError,
    Heartbeat,
    Hello,
    Reply,
    device_command,
    encode,
    reply_from_device,
)
from gateway.core.log_fields import log_event
from gateway.core.registry import Inventory
from gateway.devkit.simulator import Simulator
from gateway.edge.estate_link import read_token_file
from gateway.edge.estate_stream import FramedStream, LinkClosed, LinkSilent, sole_error
from gateway.edge.metrics import Metrics
from gateway.edge.transport import DeviceTransport, QueueFull
from gateway.stores.operator_files import load_inventory
from mmc.identifiers import IdentifierError

log = logging.getLogger("duisgw.estate")

MAX_PARKED_REPLIES = 100_000  # replies waiting for a node to come back; oldest dropped


@dataclass(eq=False)
class _Connection:
    link: FramedStream
    node_id: str = ""
    credit: int = 0  # commands it may still send


class EstateServer:
    def __init__(
        self,
        devices: DeviceTransport,
        config: EstateConfig,
        *,
        estate_id: str = "duisgw-estate",
        auth_token: str | None = None,
    ) -> None:
        self._devices = devices
        self._config = config
        self.estate_id = estate_id
        self._token = auth_token
        self._nodes: dict[str, list[_Connection]] = {}  # node id -> live connections
        self._running: dict[str, int] = {}  # node id -> its commands inside the estate
        self._parked: deque[tuple[float, str, Reply]] = deque()  # (since, node id, reply)
        self._wake_parked = trio.Event()
        self.commands_received = 0
        self.connections_refused = 0

    async def serve(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        tcp = await trio.open_tcp_listeners(port, host=host)
        bound = tcp[0].socket.getsockname()[:2]
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
        if ssl_context is not None:
            listeners = [trio.SSLListener(listener, ssl_context) for listener in tcp]
        # Commands run in this nursery, not their connection's: they outlive it.
        async with trio.open_nursery() as nursery:
            self._commands = nursery
            nursery.start_soon(self._hand_over_parked)
            await nursery.start(trio.serve_listeners, self._connection, listeners)
            log_event(
                log,
                logging.INFO,
                "estate listening",
                "estate link on %(address)s (%(tls)s)",
                address=f"{bound[0]}:{bound[1]}",
                tls="TLS" if ssl_context is not None else "plain TCP",
            )
            task_status.started((bound[0], bound[1]))

    async def _connection(self, stream: trio.abc.Stream) -> None:
        """One node's connection; nothing it does reaches the listener's nursery."""
        config = self._config
        peer = _peer_name(stream)
        link = FramedStream(
            stream,
            max_frame_bytes=config.max_frame_bytes,
            heartbeat_seconds=config.heartbeat_seconds,
            peer=f"node at {peer}",
        )
        connection = _Connection(link)
        try:
            await self._session(connection)
        except FrameError as exc:
            self.connections_refused += 1
            log_event(
                log,
                logging.WARNING,
                "estate link frame refused",
                "%(peer)s sent a bad frame (%(code)s: %(reason)s); connection closed",
                peer=peer,
                code=str(exc.code),
                reason=exc.reason,
            )
        except (LinkClosed, LinkSilent, trio.TooSlowError, ssl.SSLError, OSError) as exc:
            log.info("connection from %s (node %r) ended: %s", peer, connection.node_id, exc)
        except Exception:  # a bug: this connection only, never the listener
            log.exception("connection from %s failed; closed", peer)
        finally:
            self._forget(connection)
            await link.aclose()

    async def _session(self, connection: _Connection) -> None:
        link = connection.link
        messages = link.messages()
        with trio.fail_after(self._config.connect_timeout_seconds):
            if isinstance(stream := link.stream, trio.SSLStream):
                await stream.do_handshake()
            hello = await anext(messages)
        refusal = self._check_hello(hello)
        if refusal is not None:
            self.connections_refused += 1
            await link.refuse(*refusal)
            log.warning("refused %s: %s", link.peer, refusal[1])
            return
        assert isinstance(hello, Hello)
        connection.node_id = hello.node_id
        await link.send(Hello(node_id=self.estate_id, protocol_version=PROTOCOL_VERSION))
        live = self._nodes.setdefault(hello.node_id, [])
        granted = sum(other.credit for other in live)
        connection.credit = max(
            0, self._config.credit_window - self._running.get(hello.node_id, 0) - granted
        )
        live.append(connection)
        if connection.credit:
            await link.send_frame(_credit(connection.credit))
        log.info("node %r connected from %s", hello.node_id, link.peer)
        self._wake_parked.set()  # its parked replies can go now
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeats, link)
                async for message in messages:
                    if isinstance(message, Command):
                        await self._accept(connection, message)
                    elif isinstance(message, Heartbeat):
                        pass
                    elif isinstance(message, Error):
                        log.warning("node %r closed the link: %s", hello.node_id, message.reason)
                        break
                    else:
                        await self._protocol_error(link, f"unexpected {type(message).__name__}")
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise sole_error(group) from None

    def _check_hello(self, hello: object) -> tuple[ErrorCode, str] | None:
        if not isinstance(hello, Hello):
            return ErrorCode.PROTOCOL, f"expected Hello first, got {type(hello).__name__}"
        if hello.protocol_version != PROTOCOL_VERSION:
            return ErrorCode.VERSION, (
                f"protocol {hello.protocol_version} not spoken; this estate speaks "
                f"{PROTOCOL_VERSION}"
            )
        if self._token is not None and not hmac.compare_digest(
            (hello.auth_token or "").encode(), self._token.encode()
        ):
            return ErrorCode.UNAUTHORISED, "missing or wrong auth_token"
        if not hello.node_id:
            return ErrorCode.PROTOCOL, "empty node_id"
        return None

    async def _accept(self, connection: _Connection, message: Command) -> None:
        if connection.credit <= 0:
            await self._protocol_error(connection.link, "command sent without credit")
        try:
            command = device_command(message)
        except IdentifierError as exc:
            await self._protocol_error(connection.link, f"command_id: {exc}")
        connection.credit -= 1
        self._running[connection.node_id] = self._running.get(connection.node_id, 0) + 1
        self.commands_received += 1
        self._commands.start_soon(self._run, connection, message.command_id, command)

    async def _protocol_error(self, link: FramedStream, reason: str) -> NoReturn:
        await link.refuse(ErrorCode.PROTOCOL, reason)
        raise FrameError(ErrorCode.PROTOCOL, reason)

    async def _run(self, connection: _Connection, command_id: str, command: DeviceCommand) -> None:
        try:
            reply = await self._devices.send(command)
        except QueueFull as exc:
            log.warning("%s: %s; answered no response", command_id, exc)
            reply = DeviceReply(DeviceOutcome.NO_RESPONSE)
        except Exception:  # one command's bug: it is answered, the estate goes on
            log.exception("%s failed in the estate; answered no response", command_id)
            reply = DeviceReply(DeviceOutcome.NO_RESPONSE)
        await self._reply(connection, reply_from_device(command_id, reply))
        node = connection.node_id
        self._running[node] -= 1
        if not self._running[node]:
            del self._running[node]
        # The credit goes back to the node: its connection if still live, else its newest.
        live = self._nodes.get(node, [])
        target = connection if connection in live else (live[-1] if live else None)
        if target is not None:
            target.credit += 1
            await _try_send(target, _credit(1))
        # No live connection: the node's next Hello is granted what is free then.

    async def _reply(self, origin: _Connection, reply: Reply) -> None:
        frame = encode(reply)
        candidates = [origin, *self._nodes.get(origin.node_id, ())]
        for connection in candidates:
            if await _try_send(connection, frame):
                return
        self._park(origin.node_id, reply)

    async def send_alert(self, device_id: str, gbcs: bytes) -> str | None:
        """A device alert not tied to a command, as an `alert` frame to one live node
        (the first that takes it); the node's id, or None when no node is connected
        (the alert is not kept: a device's unsolicited alert has no job to wait for)."""
        frame = encode(Alert(device_id=device_id, gbcs=gbcs))
        for node_id, connections in list(self._nodes.items()):
            for connection in list(connections):
                if await _try_send(connection, frame):
                    return node_id
        log.warning("device alert from %s dropped: no node connected", device_id)
        return None

    def _park(self, node_id: str, reply: Reply) -> None:
        if len(self._parked) >= MAX_PARKED_REPLIES:
            _, lost_node, lost = self._parked.popleft()
            log.error("reply for %s (node %r) dropped: too many parked", lost.command_id, lost_node)
        self._parked.append((trio.current_time(), node_id, reply))
        log.info("reply for %s parked: node %r has no live connection", reply.command_id, node_id)
        self._wake_parked.set()

    async def _hand_over_parked(self) -> None:
        """Parked replies go to their node when it is back, or to any node after the grace."""
        grace = self._config.orphan_grace_seconds
        while True:
            self._wake_parked = trio.Event()
            still: deque[tuple[float, str, Reply]] = deque()
            now = trio.current_time()
            while self._parked:
                since, node_id, reply = self._parked.popleft()
                targets = list(self._nodes.get(node_id, ()))
                if now - since >= grace:
                    targets += [c for node in self._nodes.values() for c in node]
                frame = encode(reply)
                for connection in targets:
                    if await _try_send(connection, frame):
                        if connection.node_id != node_id:
                            log.info(
                                "reply for %s (node %r gone) sent to node %r",
                                reply.command_id,
                                node_id,
                                connection.node_id,
                            )
                        break
                else:
                    still.append((since, node_id, reply))
            self._parked = still + self._parked
            next_due = min((since + grace for since, _, _ in self._parked), default=None)
            with trio.move_on_at(next_due if next_due is not None else float("inf")):
                await self._wake_parked.wait()

    async def _heartbeats(self, link: FramedStream) -> None:
        frame = encode(Heartbeat())
        while True:
            await trio.sleep(self._config.heartbeat_seconds)
            await link.send_frame(frame)

    def _forget(self, connection: _Connection) -> None:
        live = self._nodes.get(connection.node_id)
        if live is not None and connection in live:
            live.remove(connection)
            if not live:
                del self._nodes[connection.node_id]

    @property
    def nodes(self) -> dict[str, int]:
        """Live connections per node id."""
        return {node: len(live) for node, live in self._nodes.items()}

    def running(self, node_id: str) -> int:
        """The node's commands inside the estate now (from any of its connections)."""
        return self._running.get(node_id, 0)


async def _try_send(connection: _Connection, frame: bytes) -> bool:
    if connection.link.closed:
        return False
    try:
        await connection.link.send_frame(frame)
    except LinkClosed:
        return False
    return True


def _credit(n: int) -> bytes:
    return encode(Credit(n=n))


def _peer_name(stream: trio.abc.Stream) -> str:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(inner, trio.SocketStream):
        address = inner.socket.getpeername()
        return f"{address[0]}:{address[1]}"
    return "unknown peer"


# -- `duisgw estate serve` ---------------------------------------------------------------


def estate_server_context(tls: EstateTls) -> ssl.SSLContext:
    """The estate's side of TLS: its certificate; the nodes' verified when `ca` is set."""
    if tls.certificate is None or tls.private_key is None:
        raise StartupError("[estate.tls] needs certificate and private_key to serve TLS")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.certificate, tls.private_key)
        if tls.ca is not None:
            context.load_verify_locations(tls.ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except OSError as exc:  # ssl.SSLError is one
        files = ", ".join(p for p in (tls.ca, tls.certificate, tls.private_key) if p)
        raise StartupError(f"[estate.tls] {files}: {exc.strerror or exc}") from None
    return context


async def run_estate(
    config: Config,
    host: str,
    port: int,
    *,
    clock: Clock | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The simulated estate over the config's inventory, until cancelled. SIGHUP reloads
    the inventory file (the old one is kept if the new one does not load)."""
    inventory_path = Path(config.registry.inventory_file)
    try:
        inventory = [load_inventory(inventory_path)]
    except (OSError, ValueError) as exc:
        raise StartupError(f"{inventory_path}: {exc}") from None
    ssl_context = None
    if config.estate.tls is not None:
        ssl_context = estate_server_context(config.estate.tls)
    simulator = Simulator.for_inventory(
        lambda: inventory[0], config.simulator, clock or SystemClock(), metrics=Metrics()
    )
    server = EstateServer(
        simulator,
        config.estate,
        estate_id=f"estate@{socket.gethostname()}",
        auth_token=read_token_file(config.estate.auth_token_file),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_reload_on_hangup, inventory_path, inventory)
        bound = await nursery.start(
            functools.partial(server.serve, host, port, ssl_context=ssl_context)
        )
        task_status.started(bound)


async def run_estate_until_terminated(config: Config, host: str, port: int) -> None:
    """`duisgw estate serve`: the estate until SIGTERM, then a clean exit (as `duisgw
    serve` does), so a service manager's stop is not counted as a crash."""
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            await nursery.start(functools.partial(run_estate, config, host, port))
            async for _ in signals:
                # What the hubs hold is lost: each node answers those at their timeout.
                log.info("estate stopping (SIGTERM)")
                nursery.cancel_scope.cancel()
                break
    log.info("estate stopped")


async def _reload_on_hangup(path: Path, inventory: list[Inventory]) -> None:
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            try:
                inventory[0] = load_inventory(path)
            except (OSError, ValueError) as exc:
                log.error("inventory reload failed, keeping the previous one: %s", exc)
                continue
            log.info("inventory reloaded: %d devices", len(inventory[0]))
