"""The composition root: `serve(config)` builds every collaborator and hands each what it uses.

    load            (gateway/stores/operator_files.py) everything that can fail on the
                    operator's files, before any port is bound; `load_for_start` adds
                    the TLS material and is what `duisgw config check` runs too
    reload          a new snapshot from the files, swapped in whole, or the old one kept
    open_stores     the durable stores, opened here and closed here
    Components      the request path and the services, wired: pipeline, dispatch,
                    life cycle, thresholds screen, quarantine, admin API
    serve           binds, starts the services, serves until SIGTERM/SIGINT, drains

Only the snapshot (trust, Users, inventory) changes after start: `reload` builds a
complete new one and swaps it in (gateway/core/snapshot.py). This is the one module
that knows the dev kit: the embedded simulator is the default device transport and
the dev inbox is mounted on the admin listener when `[dev_inbox]` enables it.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import trio

from gateway.core.access import DccOriginated
from gateway.core.answers import Answers
from gateway.core.clock import Clock, SystemClock
from gateway.core.config import Config, StartupError
from gateway.core.log_fields import log_event
from gateway.core.snapshot import Reloaded, ReloadFailed, ReloadResult, SnapshotHolder
from gateway.core.stages import RequestChecks
from gateway.core.trust_report import missing_signer_lines, signing_readiness
from gateway.core.version_mismatch import authenticated_header, mismatch_alert
from gateway.devkit.inbox import INBOX_FILE, Inbox, InboxRoutes
from gateway.devkit.simulator import Simulator
from gateway.edge.admin import AdminApi, Mount
from gateway.edge.admin_auth import (
    AdminGuard,
    AdminTokenError,
    GuardedAdmin,
    admin_token_path,
    ensure_admin_token,
    exposure_warning,
)
from gateway.edge.admin_replay import ReplayAdmin
from gateway.edge.admin_thresholds import ThresholdsAdmin
from gateway.edge.delivery import DevInboxAddress, run_delivery
from gateway.edge.device_alerts import DeviceAlerts
from gateway.edge.dispatch import Dispatcher
from gateway.edge.duis_handler import DuisHandler
from gateway.edge.estate_link import NetworkTransport, check_estate_link, network_transport
from gateway.edge.gc_tuning import GcTuning
from gateway.edge.lifecycle import Lifecycle
from gateway.edge.listeners import bound, open_listeners, serve_until_stopped, wait_for_stop
from gateway.edge.local_delivery import LocalDelivery
from gateway.edge.metrics import Metrics
from gateway.edge.pipeline import RequestPipeline, VersionMismatchAlert
from gateway.edge.quarantine_ops import QuarantineOps
from gateway.edge.screen import ThresholdScreen
from gateway.edge.server import ConnectionHandler, Draining
from gateway.edge.service_notifier import ServiceLink, ServiceNotifier, StatusReporter
from gateway.edge.techspec_admin import TechspecAdmin
from gateway.edge.techspec_alerts import WanAlertSender, check_alert_codes
from gateway.edge.techspec_dispatch import TechspecDispatch
from gateway.edge.techspec_service import StoredTableUnreadable, TechspecService
from gateway.edge.tls import load_server_context
from gateway.edge.transport import DeviceTransport
from gateway.edge.workers import worker_state_dir
from gateway.stores.jobs import JobStore, open_sqlite_jobs
from gateway.stores.jobs_redis import RedisJobs
from gateway.stores.local_commands import FILE_NAME as LOCAL_COMMANDS_FILE
from gateway.stores.local_commands import LocalCommandStore
from gateway.stores.local_commands_redis import open_redis_local_command_store
from gateway.stores.local_commands_sqlite import open_local_command_store
from gateway.stores.node_identity import release_owner
from gateway.stores.operator_files import Loaded, load, load_snapshot
from gateway.stores.outbox import open_outbox
from gateway.stores.outbox_redis import RedisOutbox
from gateway.stores.outbox_store import OutboxStore
from gateway.stores.private_files import make_private_dir, tighten_state_dir
from gateway.stores.quarantine import QuarantineStore, open_quarantine_store
from gateway.stores.quarantine_redis import open_redis_quarantine_store
from gateway.stores.redis_shared import (
    RedisDurabilityError,
    SharedRedis,
    SharedStoreUnavailable,
    open_shared_redis,
)
from gateway.stores.replay import ReplayStore, SharedReplayGuard
from gateway.stores.replay_redis import open_redis_replay_store
from gateway.stores.sqlite import Synchronous
from gateway.stores.techspec import open_techspec
from gateway.stores.techspec_redis import open_redis_techspec_store
from gateway.stores.techspec_store import TechspecStore
from gateway.stores.threshold_redis import RedisThresholdStore
from gateway.stores.threshold_sqlite import ThresholdStateStore
from gateway.stores.threshold_state import CounterStore, open_thresholds, run_count_snapshots
from thresholds.config import ThresholdConfigError

log = logging.getLogger("duisgw")
signers_log = logging.getLogger("duisgw.signers")


class BoundAddresses(msgspec.Struct, frozen=True):
    duis: tuple[str, int]
    admin: tuple[str, int]


# -- load and reload -------------------------------------------------------------------


def load_for_start(config: Config, clock: Clock) -> tuple[Loaded, ssl.SSLContext | None]:
    """Everything start-up reads from the operator's files, or a StartupError naming
    the file or key; nothing is bound, opened or written."""
    try:
        loaded = load(config, clock)
        check_alert_codes(loaded.versions, config.techspec.wan_available_alert)
    except (OSError, ValueError, ThresholdConfigError) as exc:  # AlertCodeError is a ValueError
        raise StartupError(str(exc)) from None
    if config.estate.transport == "network":  # its TLS files and token, before any bind
        check_estate_link(config.estate)
    return loaded, load_server_context(config.tls)


def reload(
    config: Config, snapshots: SnapshotHolder, clock: Clock, metrics: Metrics
) -> ReloadResult:
    """Rebuild trust and registry and swap them in; keep the old ones on error."""
    try:
        snapshot = load_snapshot(config, clock.now().date())
    except Exception as exc:  # the operator's files are wrong: keep serving the old set
        metrics.reloads.labels("failed").inc()
        log_event(
            log,
            logging.ERROR,
            "reload failed",
            "reload failed, keeping the previous trust and registry: %(reason)s",
            reason=str(exc),
        )
        return ReloadFailed(str(exc))
    snapshots.swap(snapshot)
    metrics.reloads.labels("ok").inc()
    result = Reloaded(
        users=len(snapshot.users),
        devices=len(snapshot.inventory),
        certificates_skipped=len(snapshot.certstore.skipped),
    )
    log.info(result.message)
    return result


# -- the durable stores ----------------------------------------------------------------


@dataclass(frozen=True)
class Stores:
    """Everything durable the services share, opened (and closed) by `open_stores`."""

    replay: ReplayStore
    outbox: OutboxStore
    jobs: JobStore
    quarantine: QuarantineStore
    counters: CounterStore
    threshold_state: ThresholdStateStore
    local_commands: LocalCommandStore
    techspec: TechspecStore


@asynccontextmanager
async def open_stores(
    config: Config, own_dir: Path, rules_raw: bytes | None, clock: Clock, metrics: Metrics
) -> AsyncIterator[Stores]:
    """The shared files in the state directory, this worker's own in `own_dir`; with
    `[state] backend = "redis"`, replay, quarantine, the threshold rules, the local
    commands and the techspec store on the one shared Redis instead."""
    state_dir = Path(config.state_dir)
    sync: Synchronous = "FULL" if config.storage.synchronous == "full" else "NORMAL"
    async with AsyncExitStack() as stack:
        shared = await _open_shared_redis(stack, config)
        # First in, last out: requests still draining from the other stores get verdicts.
        replay = await stack.enter_async_context(_open_replay(config, shared, sync))
        outbox, jobs = await stack.enter_async_context(
            open_queues(config, shared, own_dir, clock, metrics, sync)
        )
        quarantine: QuarantineStore = await stack.enter_async_context(
            open_redis_quarantine_store(shared, clock)
            if shared is not None
            else open_quarantine_store(state_dir / "quarantine.sqlite", clock, synchronous=sync)
        )
        counters, threshold_state = await stack.enter_async_context(
            open_thresholds(config, rules_raw, clock, synchronous=sync, shared=shared)
        )
        # Shared by every worker (and node), as replay is: an 8.13 may reach any of them.
        cap = config.local_delivery.max_open_commands_per_originator
        local_commands: LocalCommandStore = await stack.enter_async_context(
            open_redis_local_command_store(shared, max_per_originator=cap)
            if shared is not None
            else open_local_command_store(
                state_dir / LOCAL_COMMANDS_FILE, synchronous=sync, max_per_originator=cap
            )
        )
        techspec: TechspecStore = await stack.enter_async_context(
            open_redis_techspec_store(shared)
            if shared is not None
            else open_techspec(state_dir, synchronous=sync)
        )
        metrics.outbox_dead_letters.set_function(outbox.dead_letter_count)
        metrics.jobs_pending.set_function(jobs.pending_count)
        metrics.quarantine_queue.set_function(lambda: quarantine.queue_depth)
        metrics.replay_waiting.set_function(lambda: replay.waiting)
        yield Stores(
            replay,
            outbox,
            jobs,
            quarantine,
            counters,
            threshold_state,
            local_commands,
            techspec,
        )


async def _open_shared_redis(stack: AsyncExitStack, config: Config) -> SharedRedis | None:
    """The one connection to the shared Redis (None on the SQLite backend); a node does
    not start on a server that would not keep what it acknowledges."""
    if config.state.backend != "redis":
        return None
    try:
        return await stack.enter_async_context(open_shared_redis(config.state.redis))
    except (RedisDurabilityError, SharedStoreUnavailable) as exc:
        raise StartupError(f"[state.redis]: {exc}") from None


@asynccontextmanager
async def open_queues(
    config: Config,
    shared: SharedRedis | None,
    own_dir: Path,
    clock: Clock,
    metrics: Metrics,
    sync: Synchronous,
) -> AsyncIterator[tuple[OutboxStore, JobStore]]:
    """The outbox and the jobs journal: this worker's SQLite files, or Redis Streams shared
    by every node (`[state] backend = "redis"`), their leases and readers running."""
    if shared is None:
        async with (
            open_outbox(
                own_dir / "outbox.sqlite", clock=clock, metrics=metrics, synchronous=sync
            ) as outbox,
            open_sqlite_jobs(
                own_dir / "jobs.sqlite", clock=clock, metrics=metrics, synchronous=sync
            ) as jobs,
        ):
            yield outbox, jobs
        return
    streams = config.state.streams
    redis_outbox = RedisOutbox(
        shared,
        partitions=streams.partitions,
        lease_seconds=streams.lease_seconds,
        clock=clock,
        metrics=metrics,
        stream_metrics=metrics,
    )
    redis_jobs = RedisJobs(shared, lease_seconds=streams.lease_seconds, metrics=metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(redis_outbox.run)
        await nursery.start(redis_jobs.run)
        try:
            yield redis_outbox, redis_jobs
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def _open_replay(
    config: Config, shared: SharedRedis | None, sync: Synchronous
) -> AsyncIterator[ReplayStore]:
    max_counter = config.replay.max_counter
    if shared is not None:
        async with open_redis_replay_store(shared, max_counter=max_counter) as store:
            yield store
        return
    path = Path(config.state_dir) / "replay.sqlite"
    guard = await SharedReplayGuard.open(path, synchronous=sync, max_counter=max_counter)
    try:
        yield guard
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(config.limits.drain_timeout_seconds):
            await guard.aclose()


# -- the components ----------------------------------------------------------------------


class Components:
    """The request path and its services, each built with the collaborators it uses."""

    def __init__(
        self,
        config: Config,
        loaded: Loaded,
        stores: Stores,
        transport: DeviceTransport,
        clock: Clock,
        metrics: Metrics,
        *,
        worker: tuple[int, int],
        quarantine_owner: int,
    ) -> None:
        snapshots = loaded.snapshots
        self.worker_count = worker[1]
        answers = Answers(clock, loaded.signer)
        dcc_originated = DccOriginated.configured(config.duis.dcc_originated)
        checks = RequestChecks(
            loaded.versions, loaded.schemas, clock, dcc_originator=loaded.dcc_signer
        )
        self.lifecycle = Lifecycle(
            checks,
            snapshots,
            answers,
            transport,
            stores.jobs,
            stores.outbox,
            device_keys=loaded.device_signing_keys,
        )
        self.device_alerts = DeviceAlerts(
            snapshots,
            loaded.versions,
            answers,
            self.lifecycle.store_alert,
            metrics=metrics,
            device_signing_keys=loaded.device_signing_keys,
        )
        self.lifecycle.on_reply_alerts(self.device_alerts.from_reply)
        local = LocalDelivery(
            answers,
            stores.local_commands,
            loaded.versions,
            self.lifecycle.deliver,
            loaded.device_signing_keys,
            config.local_delivery.command_ttl_seconds,
        )
        alerts = WanAlertSender(
            loaded.versions,
            loaded.signer,
            clock,
            self.lifecycle.deliver_alert,
            config.techspec.wan_available_alert,
        )
        self.techspec = TechspecService(stores.techspec, config.techspec, clock, alert_sink=alerts)
        dispatcher = Dispatcher(
            answers,
            stores.replay.record_pre_command,
            self.lifecycle.submit,
            local,
            TechspecDispatch(self.techspec),
        )
        screen = ThresholdScreen(
            answers,
            metrics,
            stores.counters,
            stores.quarantine,
            self.lifecycle.deliver_alert,
            fail_open=config.thresholds.when_store_unavailable == "open",
        )
        self.quarantine = QuarantineOps(
            checks,
            snapshots,
            loaded.versions,
            answers,
            screen,
            dispatcher,
            self.lifecycle,
            config.thresholds.quarantine_retention_seconds,
            config.thresholds.quarantine_expiry_check_seconds,
            owner=quarantine_owner,
        )
        self.pipeline = RequestPipeline(
            checks,
            snapshots,
            answers,
            clock,
            metrics,
            loaded.dcc_eui64,
            stores.replay,
            dispatcher,
            screen,
            version_mismatch_alert=self._version_mismatch_sender(config, loaded, answers),
            dcc_originated=dcc_originated,
        )

    def _version_mismatch_sender(
        self, config: Config, loaded: Loaded, answers: Answers
    ) -> VersionMismatchAlert | None:
        code = config.duis.version_mismatch_alert_code
        if code is None:
            return None

        async def send(raw: bytes) -> None:
            snapshot = loaded.snapshots.current
            header = authenticated_header(raw, snapshot, answers.now())
            if header is None:
                return
            alert = mismatch_alert(header, code, loaded.versions, answers)
            if alert is not None:
                await self.lifecycle.deliver_alert(
                    header.request_id.originator, f"{header.request_id}:version-mismatch", alert
                )

        return send


async def start_services(
    services: trio.Nursery,
    config: Config,
    components: Components,
    stores: Stores,
    clock: Clock,
    metrics: Metrics,
    dev_inbox: DevInboxAddress | None,
) -> None:
    await services.start(
        functools.partial(
            run_delivery, stores.outbox, config.delivery, metrics=metrics, dev_inbox=dev_inbox
        )
    )
    await services.start(components.lifecycle.run)
    await services.start(components.quarantine.run_expiry)
    # After the life cycle is running: a resumed release may journal a job.
    await services.start(components.quarantine.resume_releases)
    if components.worker_count > 1 or config.state.backend == "redis":  # others store tables too
        await services.start(components.techspec.run_refresh)
    counters = stores.counters
    if isinstance(counters, RedisThresholdStore):
        await services.start(counters.run)
    else:  # cancelled last (after the drain): its final snapshot has every count
        interval = config.thresholds.counts_snapshot_seconds
        await services.start(run_count_snapshots, counters, stores.threshold_state, clock, interval)


def default_transport(
    config: Config, loaded: Loaded, clock: Clock, metrics: Metrics, worker: tuple[int, int]
) -> Simulator | NetworkTransport:
    """`[estate] transport`: the embedded simulator over the live inventory (default), or
    an estate service over the estate link (gateway/edge/estate_link.py)."""
    if config.estate.transport == "network":
        return network_transport(config.estate, clock, worker, metrics)
    snapshots = loaded.snapshots
    return Simulator.for_inventory(
        lambda: snapshots.current.inventory, config.simulator, clock, metrics=metrics
    )


# -- serve -------------------------------------------------------------------------------


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

    `worker` is (index, count) under `duisgw serve --workers` (gateway/edge/workers.py).
    `notifier` tells a service manager (systemd) when it is ready, reloading, stopping.
    """
    clock = clock or SystemClock()
    metrics = metrics or Metrics()
    notifier = notifier or ServiceNotifier(None)
    own_dir = worker_state_dir(config, *worker)
    loaded, tls = load_for_start(config, clock)
    try:
        make_private_dir(own_dir)
        # Journals are created 0600 as they open (gateway/stores/sqlite.py).
        tighten_state_dir({Path(config.state_dir), own_dir})
        token = ensure_admin_token(admin_token_path(config))
        # Shared quarantine: the owner of a release names this process's directory.
        owner = release_owner(own_dir) if config.state.backend == "redis" else worker[0]
    except (OSError, ValueError, AdminTokenError) as exc:
        raise StartupError(str(exc)) from None
    first = loaded.snapshots.current
    readiness = signing_readiness(
        first.certstore, first.users, loaded.versions, clock.now(), loaded.dcc_signer
    )
    for line in missing_signer_lines(readiness):  # every request from them gets 403
        signers_log.warning(line)
    if worker[1] > 1:
        admin_port = config.admin.port + worker[0] if config.admin.port else 0
        config = msgspec.structs.replace(
            config, admin=msgspec.structs.replace(config.admin, port=admin_port)
        )
        reuse_port = True
    async with open_stores(config, own_dir, loaded.threshold_rules, clock, metrics) as stores:
        # Bound first: the dev inbox's address (the admin listener's) is known before delivery.
        duis_listeners = await open_listeners(
            config.listen.host, config.listen.port, tls, reuse_port
        )
        admin_listeners = await open_listeners(
            config.admin.host, config.admin.port, None, reuse_port=False
        )
        addresses = BoundAddresses(bound(duis_listeners), bound(admin_listeners))
        device_transport = transport or default_transport(config, loaded, clock, metrics, worker)
        components = Components(
            config,
            loaded,
            stores,
            device_transport,
            clock,
            metrics,
            worker=worker,
            quarantine_owner=owner,
        )
        if isinstance(device_transport, NetworkTransport):
            device_transport.on_orphan_reply(components.lifecycle.finish_reply)
            device_transport.on_alert(components.device_alerts.from_frame)
        try:
            await components.techspec.start(loaded.techspec_files)
        except StoredTableUnreadable as exc:
            raise StartupError(str(exc)) from None
        dev_inbox = (
            DevInboxAddress.for_listener(addresses.admin, token)
            if config.dev_inbox.enabled
            else None
        )
        async with trio.open_nursery() as services:
            if isinstance(device_transport, NetworkTransport):  # before jobs are recovered
                await services.start(device_transport.run)
            await start_services(services, config, components, stores, clock, metrics, dev_inbox)
            draining = Draining()
            gc_tuning = GcTuning(metrics)
            link = ServiceLink(
                notifier,
                StatusReporter(
                    loaded.versions,
                    clock,
                    metrics,
                    addresses.duis,
                    stores.outbox.pending_count,
                    draining,
                ),
                services,
            )
            reload_now = link.around_reload(
                functools.partial(reload, config, loaded.snapshots, clock, metrics)
            )
            duis = ConnectionHandler(
                DuisHandler(
                    components.pipeline,
                    metrics,
                    config.tls.identities if config.tls is not None else None,
                ),
                config.limits,
                metrics,
                draining,
                listener="duis",
            )
            admin = _admin_api(
                config, loaded, stores, components, clock, metrics, own_dir, worker, reload_now
            )
            if (exposed := exposure_warning(config.admin.host)) is not None:
                log.warning(exposed)
            guarded = ConnectionHandler(
                GuardedAdmin(
                    AdminGuard(token, addresses.admin[1], config.admin.allowed_hosts),
                    admin,
                    metrics,
                ),
                config.limits,
                metrics,
                Draining(),
                listener="admin",
            )

            def serving(ready: bool) -> None:
                admin.ready = ready
                if ready:
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
                link.serving(ready)
                if ready and not gc_tuning.tuned:
                    # Start-up's objects frozen while it serves (gateway/edge/gc_tuning.py).
                    services.start_soon(gc_tuning.hold)

            await serve_until_stopped(
                (duis, duis_listeners),
                (guarded, admin_listeners),
                draining,
                config.limits.drain_timeout_seconds,
                serving=serving,
                stopped=functools.partial(wait_for_stop, reload_now),
            )
            services.cancel_scope.cancel()
    log.info("stopped")


def _admin_api(
    config: Config,
    loaded: Loaded,
    stores: Stores,
    components: Components,
    clock: Clock,
    metrics: Metrics,
    own_dir: Path,
    worker: tuple[int, int],
    reload_now: Callable[[], ReloadResult],
) -> AdminApi:
    mounts: dict[str, Mount] = {}
    if config.dev_inbox.enabled:
        inbox = Inbox(own_dir / INBOX_FILE, config.dev_inbox, clock.now())
        mounts["inbox"] = InboxRoutes(inbox, clock)
    return AdminApi(
        snapshots=loaded.snapshots,
        versions=loaded.versions,
        clock=clock,
        metrics_registry=metrics.registry,
        reload=reload_now,
        quarantine=components.quarantine,
        outbox=stores.outbox,
        replay=ReplayAdmin(stores.replay, clock),
        thresholds=ThresholdsAdmin(
            stores.counters, stores.threshold_state, config, clock, worker_count=worker[1]
        ),
        techspec=TechspecAdmin(components.techspec, lambda: loaded.snapshots.current.inventory),
        state_dir=Path(config.state_dir),
        mounts=mounts,
        dcc_originator=loaded.dcc_signer,
    )
