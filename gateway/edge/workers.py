"""`duisgw serve --workers N`: N gateway processes sharing the DUIS port (SO_REUSEPORT).

The kernel spreads connections over the workers. What must be one view is
shared through files or the configured store: the replay counters and the
quarantine live in the state directory's SQLite files (SQLite's lock
serialises the processes), thresholds in Redis. What each worker delivers is
its own: worker i keeps its outbox and jobs journal in `state_dir/worker-i/`,
so no message is sent by two processes. Worker i's admin listener is on
`admin.port + i`.

The parent pins worker i to CPU i mod n where it can, forwards SIGTERM/SIGINT
(each worker drains) and SIGHUP (each serving worker reloads), restarts a worker
that dies, and exits 0 when all workers stopped cleanly. Under a service manager
it is the unit's main process and speaks for the workers (gateway/edge/worker_notify.py):
READY=1 when every worker is ready, and a worker whose watchdog pings stop is
killed and restarted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway.core.config import Config
from gateway.core.log_fields import log_event
from gateway.edge.log_format import LogFormat
from gateway.edge.service_notifier import ServiceNotifier
from gateway.edge.worker_notify import WorkerNotifyRelay
from gateway.stores.threshold_sqlite import peek_rules
from gateway.stores.threshold_state import STATE_FILE, state_path
from thresholds.config import ThresholdConfigError, decode_threshold_config
from thresholds.rules_state import NO_FILE, RulesRecord

log = logging.getLogger("duisgw.workers")

RESTART_DELAY_SECONDS = 1.0
POLL_SECONDS = 0.2  # how often the supervisor looks at its workers
STOP_TIMEOUT_SECONDS = 30.0
MAX_WORKERS = 64


class WorkerConfigError(ValueError):
    """The configuration cannot be served by several processes."""


def check_worker_config(config: Config, workers: int) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise WorkerConfigError(f"--workers must be 1-{MAX_WORKERS}")
    admin_ports = range(config.admin.port, config.admin.port + workers)
    if workers > 1 and config.admin.port and config.listen.port in admin_ports:
        raise WorkerConfigError(
            f"worker admin ports {admin_ports.start}-{admin_ports.stop - 1} (admin.port + i) "
            f"include the DUIS port {config.listen.port}: move admin.port"
        )
    if workers > 1 and config.thresholds.store == "memory" and config.thresholds.rules_file:
        raise WorkerConfigError(
            'thresholds.store = "memory" counts per process: with --workers > 1 and '
            'thresholds.rules_file set, use thresholds.store = "redis" so the workers '
            "share one count per User ID"
        )
    stored = peek_rules(state_path(config))
    if workers > 1 and config.thresholds.store == "memory" and _runtime_rules(stored):
        assert stored is not None
        raise WorkerConfigError(
            f'thresholds.store = "memory" counts per process, and the run-time threshold '
            f"rules set at {stored.set_at.isoformat()} by {stored.set_by} are in force "
            f'({STATE_FILE}): with --workers > 1 use thresholds.store = "redis" and put the '
            "rules in thresholds.rules_file"
        )


def _runtime_rules(stored: RulesRecord | None) -> bool:
    """Run-time rules with counters would be in force (no rules file to supersede them)."""
    if stored is None or stored.source != "admin" or stored.file_sha256 != NO_FILE:
        return False
    try:
        return bool(decode_threshold_config(stored.toml).rules)
    except ThresholdConfigError:
        return False  # unusable: start-up puts the file's (empty) rules in force


def worker_state_dir(config: Config, index: int, count: int) -> Path:
    base = Path(config.state_dir)
    return base if count == 1 else base / f"worker-{index}"


def run_workers(
    config_path: Path,
    config: Config,
    workers: int,
    log_format: LogFormat = "text",
    notifier: ServiceNotifier | None = None,
) -> int:
    check_worker_config(config, workers)
    relay = WorkerNotifyRelay(notifier or ServiceNotifier(None), workers)
    try:
        return _supervise(config_path, workers, log_format, relay)
    finally:
        relay.close()


def _supervise(
    config_path: Path, workers: int, log_format: LogFormat, relay: WorkerNotifyRelay
) -> int:
    stopping = False
    reload_requested = False
    children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(index: int) -> None:
        command = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config_path),
            "--worker-index",
            str(index),
            "--worker-count",
            str(workers),
            "--log-format",
            log_format,
        ]
        child = subprocess.Popen(command, env=relay.worker_environ(index))
        _pin(child.pid, index)
        children[index] = child
        relay.spawned(index)
        log_event(
            log,
            logging.INFO,
            "worker started",
            "worker %(worker)d started (pid %(pid)d)",
            worker=index,
            pid=child.pid,
        )

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            relay.stop()
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    def hup(_signum: int, _frame: object) -> None:
        nonlocal reload_requested
        reload_requested = True  # handled in the loop: the relay's state is not reentrant

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    for index in range(workers):
        spawn(index)
    failed = False
    while children:
        relay.wait(POLL_SECONDS)
        if reload_requested and not stopping:
            reload_requested = False
            for index in relay.reload():
                children[index].send_signal(signal.SIGHUP)
        for index in relay.overdue():
            log_event(
                log,
                logging.ERROR,
                "worker wedged",
                "worker %(worker)d sent no watchdog ping for %(seconds).1f s: killing it",
                worker=index,
                seconds=relay.fleet.watchdog_seconds,
            )
            children[index].kill()
            relay.exited(index)
        for index, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            del children[index]
            relay.exited(index)
            if stopping:
                failed |= code != 0
                continue
            log_event(
                log,
                logging.ERROR,
                "worker exited",
                "worker %(worker)d exited with %(exit_status)d; restarting",
                worker=index,
                exit_status=code,
            )
            relay.wait(RESTART_DELAY_SECONDS)
            spawn(index)
    return 1 if failed else 0


def _pin(pid: int, index: int) -> None:
    """One worker per CPU where the OS allows it: fewer migrations, warmer caches."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(pid, {cpus[index % len(cpus)]})
    except (AttributeError, OSError):
        pass
