"""Assemble the gateway from its config and run it: `serve(config, task_status=...)`.

Start-up loads everything that can fail (trust, registry, catalogues, XSDs,
keys) before binding a port, so a bad config never half-starts. Services:
the DUIS listener, the admin listener, the asynchronous life cycle. SIGHUP
reloads trust and registry atomically; SIGTERM/SIGINT stop accepting, drain
in-flight requests under `drain_timeout_seconds`, flush journals, return.
"""

from __future__ import annotations

import functools
import logging
import signal
import ssl
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import msgspec
import trio

from gateway.admin import AdminApi
from gateway.admin_auth import (
    AdminGuard,
    AdminTokenError,
    GuardedAdmin,
    admin_token_path,
    ensure_admin_token,
    exposure_warning,
)
from gateway.admin_replay import ReplayAdmin
from gateway.admin_thresholds import ThresholdsAdmin
from gateway.assemble import StartupError, reload
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.delivery import run_delivery
from gateway.dispatch import Dispatcher
from gateway.http import HttpRequest
from gateway.inbox import INBOX_FILE, DevInboxAddress, Inbox
from gateway.lifecycle import Lifecycle
from gateway.log_fields import log_event
from gateway.metrics import Metrics
from gateway.outbox import Outbox, open_outbox
from gateway.pipeline import RequestPipeline, VersionMismatchAlert
from gateway.preflight import cannot_listen, load_startup
from gateway.private_files import make_private_dir, prepare_private_sqlite, tighten_state_dir
from gateway.quarantine_ops import QuarantineOps
from gateway.replay import SharedReplayGuard
from gateway.screen import CounterStore, ThresholdScreen
from gateway.sd_notify import ready, reloading, stopping
from gateway.server import ConnectionHandler, Draining, PeerInfo
from gateway.service_notifier import (
    ServiceNotifier,
    StatusReporter,
    monotonic_usec,
    run_heartbeat,
)
from gateway.sqlite_durability import Synchronous
from gateway.state import GatewayState
from gateway.threshold_state import open_thresholds, run_count_snapshots
from gateway.tls import client_identity, user_ids_for
from gateway.transport import DeviceTransport
from gateway.version_mismatch import authenticated_header, mismatch_alert
from gateway.workers import worker_state_dir
from mmc.catalogue import Endpoint
from thresholds.config import ThresholdConfigError
from thresholds.quarantine import QuarantineStore, open_quarantine_store
from thresholds.redis import RedisThresholdStore
from thresholds.state_store import ThresholdStateStore

log = logging.getLogger("duisgw")

ENDPOINTS = {
    "/api/v1/serviceS": Endpoint.SEND,
    "/api/v1/serviceT": Endpoint.TRANSFORM,
    "/api/v1/serviceD": Endpoint.NON_DEVICE,
}
XML_CONTENT_TYPES = (b"application/xml", b"text/xml")
LISTEN_BACKLOG = 1024


class BoundAddresses(msgspec.Struct, frozen=True):
    duis: tuple[str, int]
    admin: tuple[str, int]


class DuisHandler:
    """HTTP request -> endpoint -> pipeline -> HTTP answer."""

    def __init__(self, pipeline: RequestPipeline, metrics: Metrics, config: Config) -> None:
        self._pipeline = pipeline
        self._metrics = metrics
        self._identities = config.tls.identities if config.tls is not None else None

    async def __call__(self, request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
        endpoint = ENDPOINTS.get(request.target.split("?", 1)[0])
        if endpoint is None:
            return self._http_error(404, f"no DUIS endpoint at {request.target[:100]}")
        if request.method != "POST":
            return self._http_error(405, "DUIS endpoints accept POST only")
        content_type = (request.header(b"content-type") or b"").split(b";", 1)[0].strip().lower()
        if content_type not in XML_CONTENT_TYPES:
            return self._http_error(415, "Content-Type must be application/xml")
        speaks_for = None
        if self._identities is not None:
            identity = client_identity(peer.client_certificate_der)
            speaks_for = user_ids_for(identity, self._identities) if identity else frozenset()
        started = trio.current_time()
        # An unexpected exception goes to the connection's crash boundary (gateway/server.py).
        outcome = await self._pipeline.handle(endpoint, request.body, speaks_for)
        self._metrics.latency.labels(endpoint.value).observe(trio.current_time() - started)
        return outcome.status, outcome.body, outcome.content_type

    def _http_error(self, status: int, reason: str) -> tuple[int, bytes, bytes]:
        self._metrics.http_errors.labels(str(status)).inc()
        log_event(
            log,
            logging.INFO,
            "HTTP refusal",
            "HTTP %(status)d: %(reason)s",
            status=status,
            reason=reason,
        )
        return status, reason.encode() + b"\n", b"text/plain; charset=utf-8"


async def open_listeners(
    host: str, port: int, context: ssl.SSLContext | None, reuse_port: bool
) -> list[trio.abc.Listener[trio.abc.Stream]]:
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


def bound(listeners: Sequence[trio.abc.Listener[trio.abc.Stream]]) -> tuple[str, int]:
    inner = listeners[0]
    if isinstance(inner, trio.SSLListener):
        inner = inner.transport_listener
    assert isinstance(inner, trio.SocketListener)
    host, port, *_ = inner.socket.getsockname()
    return host, port


async def serve(
    config: Config,
    *,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    reuse_port: bool = False,
    transport: DeviceTransport | None = None,
    worker: tuple[int, int] = (0, 1),
    notifier: ServiceNotifier | None = None,
    task_status: trio.TaskStatus[BoundAddresses] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until cancelled or signalled; `task_status` gets the bound ports.

    `worker` is (index, count) under `duisgw serve --workers` (gateway/workers.py).
    `notifier` tells a service manager (systemd) when it is ready, reloading, stopping.
    """
    clock = clock or SystemClock()
    notifier = notifier or ServiceNotifier(None)
    metrics = metrics or Metrics()
    state_dir = Path(config.state_dir)
    own_dir = worker_state_dir(config, *worker)
    try:
        loaded = load_startup(config, clock, metrics)
        state, rules_raw = loaded.state, loaded.rules_raw
        make_private_dir(own_dir)
        tighten_state_dir({state_dir, own_dir})
        shared = ("replay.sqlite", "quarantine.sqlite", "thresholds.sqlite")
        own = ("outbox.sqlite", "jobs.sqlite")
        for path in [state_dir / n for n in shared] + [own_dir / n for n in own]:
            prepare_private_sqlite(path)  # created 0600, so SQLite's -wal/-shm are too
        token = ensure_admin_token(admin_token_path(config))
    except (OSError, ValueError, ThresholdConfigError, AdminTokenError) as exc:
        raise StartupError(str(exc)) from None
    if worker[1] > 1:
        admin_port = config.admin.port + worker[0] if config.admin.port else 0
        config = msgspec.structs.replace(
            config, admin=msgspec.structs.replace(config.admin, port=admin_port)
        )
        reuse_port = True
    sync: Synchronous = "FULL" if config.storage.synchronous == "full" else "NORMAL"
    replay = await SharedReplayGuard.open(
        state_dir / "replay.sqlite", synchronous=sync, max_counter=config.replay.max_counter
    )
    try:
        async with AsyncExitStack() as stack:
            outbox = await stack.enter_async_context(
                open_outbox(
                    own_dir / "outbox.sqlite", clock=clock, metrics=metrics, synchronous=sync
                )
            )
            jobs = await stack.enter_async_context(
                open_outbox(own_dir / "jobs.sqlite", clock=clock, synchronous=sync)
            )
            quarantine = await stack.enter_async_context(
                open_quarantine_store(state_dir / "quarantine.sqlite", clock, synchronous=sync)
            )
            counters, threshold_state = await stack.enter_async_context(
                open_thresholds(config, rules_raw, clock, synchronous=sync)
            )
            metrics.outbox_dead_letters.set_function(outbox.dead_letter_count)
            metrics.jobs_pending.set_function(jobs.pending_count)
            metrics.quarantine_queue.set_function(lambda: quarantine.queue_depth)
            metrics.replay_waiting.set_function(
                lambda: replay.statistics().queued + replay.statistics().committing
            )
            stores = Stores(replay, outbox, jobs, quarantine, counters, threshold_state)
            await _run_services(
                config,
                worker,
                state,
                stores,
                transport,
                reuse_port,
                task_status,
                admin_token=token,
                own_dir=own_dir,
                notifier=notifier,
                tls=loaded.tls,
            )
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(config.limits.drain_timeout_seconds):
            await replay.aclose()
    log.info("stopped")


@dataclass(frozen=True)
class Stores:
    """Everything durable the services share, opened (and closed) by `serve`."""

    replay: SharedReplayGuard
    outbox: Outbox
    jobs: Outbox
    quarantine: QuarantineStore
    counters: CounterStore
    threshold_state: ThresholdStateStore


async def _run_services(
    config: Config,
    worker: tuple[int, int],
    state: GatewayState,
    stores: Stores,
    transport: DeviceTransport | None,
    reuse_port: bool,
    task_status: trio.TaskStatus[BoundAddresses],
    *,
    admin_token: str,
    own_dir: Path,
    notifier: ServiceNotifier,
    tls: ssl.SSLContext | None,
) -> None:
    metrics = state.metrics
    draining = Draining()
    replay, outbox, jobs, counters = stores.replay, stores.outbox, stores.jobs, stores.counters
    # Bound first: the dev inbox's address (the admin listener's) is known before delivery.
    duis_listeners = await open_listeners(config.listen.host, config.listen.port, tls, reuse_port)
    admin_listeners = await open_listeners(
        config.admin.host, config.admin.port, None, reuse_port=False
    )
    addresses = BoundAddresses(bound(duis_listeners), bound(admin_listeners))
    inbox_address = DevInboxAddress.for_listener(addresses.admin, admin_token)
    reporter = StatusReporter(state, addresses.duis, outbox.pending_count, draining)

    def reload_notified() -> str:
        """Trust and registry rebuilt and swapped, with RELOADING=1 ... READY=1 around."""
        reporter.phase = "reloading"
        notifier.send(reloading(monotonic_usec(), reporter.line()))
        result = reload(config, state)  # never raises: a bad file keeps the old set
        reporter.phase = "serving"
        notifier.send(ready(result))  # the heartbeat's next STATUS is the usual line
        return result

    async with trio.open_nursery() as services:
        if transport is None:
            transport = default_transport(state, config)
        lifecycle = Lifecycle(state, transport, jobs, outbox)
        dispatcher = Dispatcher(state, transport, replay.record_pre_command, lifecycle.submit)
        lifecycle.attach(dispatcher)
        screen = ThresholdScreen(
            state,
            counters,
            stores.quarantine,
            lifecycle.deliver_alert,
            fail_open=config.thresholds.when_store_unavailable == "open",
        )
        ops = QuarantineOps(
            state,
            screen,
            dispatcher,
            lifecycle,
            config.thresholds.quarantine_retention_seconds,
            config.thresholds.quarantine_expiry_check_seconds,
            owner=worker[0],
        )
        pipeline = RequestPipeline(
            state,
            replay,
            dispatcher,
            screen,
            version_mismatch_alert=version_mismatch_sender(config, state, lifecycle),
        )
        await services.start(
            functools.partial(
                run_delivery,
                outbox,
                config.delivery,
                metrics=metrics,
                dev_inbox=inbox_address if config.dev_inbox.enabled else None,
            )
        )
        await services.start(lifecycle.run)
        await services.start(ops.run_expiry)
        # After the life cycle is running: a resumed release may journal a job.
        await services.start(ops.resume_releases)
        if isinstance(counters, RedisThresholdStore):
            await services.start(counters.run)
        else:  # cancelled last (after the drain): its final snapshot has every count
            interval = config.thresholds.counts_snapshot_seconds
            await services.start(
                run_count_snapshots, counters, stores.threshold_state, state.clock, interval
            )
        duis_handler = ConnectionHandler(
            DuisHandler(pipeline, metrics, config),
            config.limits,
            metrics,
            draining,
            listener="duis",
        )
        inbox = None
        if config.dev_inbox.enabled:
            inbox = Inbox(own_dir / INBOX_FILE, config.dev_inbox, state.clock.now())
        admin = AdminApi(
            state,
            reload_notified,
            ops,
            outbox,
            ReplayAdmin(replay, state.clock),
            ThresholdsAdmin(
                counters, stores.threshold_state, config, state.clock, worker_count=worker[1]
            ),
            state_dir=Path(config.state_dir),
            inbox=inbox,
        )
        guard = AdminGuard(admin_token, addresses.admin[1], config.admin.allowed_hosts)
        if (exposed := exposure_warning(config.admin.host)) is not None:
            log.warning(exposed)
        admin_handler = ConnectionHandler(
            GuardedAdmin(guard, admin, metrics),
            config.limits,
            metrics,
            Draining(),
            listener="admin",
        )
        async with trio.open_nursery() as connections:
            accept_scope = trio.CancelScope()

            async def accept() -> None:
                with accept_scope:
                    await trio.serve_listeners(
                        duis_handler, duis_listeners, handler_nursery=connections
                    )

            connections.start_soon(accept)
            connections.start_soon(trio.serve_listeners, admin_handler, admin_listeners)
            admin.ready = True
            task_status.started(addresses)
            scheme = "https" if config.tls else "http"
            log_event(
                log,
                logging.INFO,
                "listening",
                "DUIS on %(duis)s, admin on %(admin)s",
                duis=f"{scheme}://{addresses.duis[0]}:{addresses.duis[1]}",
                admin=f"http://{addresses.admin[0]}:{addresses.admin[1]}",
            )
            if notifier.enabled:
                # Both listeners are bound and listening, the stores open: connections
                # made from now on are accepted.
                notifier.send(ready(reporter.line()))
                await services.start(run_heartbeat, notifier, reporter.line)
            await _wait_for_stop(reload_notified)
            reporter.phase = "draining"
            notifier.send(stopping(reporter.line()))
            admin.ready = False
            accept_scope.cancel()
            draining.closing = True
            with trio.move_on_after(config.limits.drain_timeout_seconds) as drain:
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
        services.cancel_scope.cancel()


def version_mismatch_sender(
    config: Config, state: GatewayState, lifecycle: Lifecycle
) -> VersionMismatchAlert | None:
    code = config.duis.version_mismatch_alert_code
    if code is None:
        return None

    async def send(raw: bytes) -> None:
        header = authenticated_header(state, raw)
        if header is None:
            return
        alert = mismatch_alert(state, header, code)
        if alert is not None:
            await lifecycle.deliver_alert(
                header.request_id.originator, f"{header.request_id}:version-mismatch", alert
            )

    return send


def default_transport(state: GatewayState, config: Config) -> DeviceTransport:
    """The embedded simulator over the live inventory."""
    from gateway.simulator import Simulator

    return Simulator.for_inventory(
        lambda: state.inventory, config.simulator, state.clock, metrics=state.metrics
    )


async def _wait_for_stop(reload_notified: Callable[[], str]) -> None:
    """Return on SIGTERM/SIGINT; reload on SIGHUP."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                reload_notified()
                continue
            log_event(
                log,
                logging.INFO,
                "draining",
                "signal %(signal)s: draining",
                signal=signal.Signals(signum).name,
            )
            return
