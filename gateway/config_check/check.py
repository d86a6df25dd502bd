"""Everything start-up would load, checked without serving: the report's values.

The config, then what the composition root loads before it binds a port
(`gateway.compose.load_for_start`: trust, anchors and CRLs, the DCC signing key,
the registry, the threshold rules, every served version's catalogue, the XSDs, the
TLS material), the admin token and the state directory, the worker layout and the
ports. Each failure is the line start-up prints for it (after `duisgw: `), so what
change control sees is what the daemon would say. Beside the verdict, what it found:
each User's signer per served version and every certificate with its expiry
(gateway/core/trust_report.py, the same report the console shows), and warnings
(certificates expiring soon, Users who cannot sign, Redis not answering).

Nothing is written: no state directory, token or journal is created.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import coredis
import msgspec
import trio

from gateway.compose import load_for_start
from gateway.core.clock import Clock
from gateway.core.config import Config, ConfigError, StartupError
from gateway.core.trust_report import CertificateRow, UserSigning, certificate_rows
from gateway.core.trust_report import signing_readiness as user_signers
from gateway.edge.admin_auth import AdminTokenError, admin_token_path, read_admin_token
from gateway.edge.listeners import probe_listen
from gateway.edge.workers import WorkerConfigError, check_worker_config
from gateway.stores.operator_files import Loaded, load_config
from gateway.stores.redis_shared import (
    RedisDurabilityError,
    SharedStoreUnavailable,
    open_shared_redis,
)
from thresholds.config import ThresholdConfigError, decode_threshold_config

# A certificate expiring this soon is a warning (the DCC's signing key too).
EXPIRY_WARNING_DAYS = 30
REDIS_PING_TIMEOUT_SECONDS = 3.0


class SkippedFile(msgspec.Struct, frozen=True):
    file: str
    reason: str


class Listener(msgspec.Struct, frozen=True, kw_only=True):
    listener: str
    host: str
    port: int
    free: bool | None  # None: not probed (--no-ports, or port 0)


class CheckReport(msgspec.Struct, kw_only=True):
    config: str
    ok: bool = False
    errors: list[str] = msgspec.field(default_factory=list)  # start-up's lines, in order
    warnings: list[str] = msgspec.field(default_factory=list)
    state_dir: str | None = None
    versions: tuple[str, ...] = ()
    retired_versions: dict[str, dt.date] = msgspec.field(default_factory=dict)
    xsd_validation: bool = False
    devices: int = 0
    users: list[UserSigning] = msgspec.field(default_factory=list)
    certificates: list[CertificateRow] = msgspec.field(default_factory=list)
    certificates_skipped: list[SkippedFile] = msgspec.field(default_factory=list)
    dcc_signing_certificate_serial: str | None = None
    threshold_rules: str | None = None
    # Where shared state lives, and for Redis what an acknowledgement waits for.
    state: str | None = None
    listeners: list[Listener] = msgspec.field(default_factory=list)


def run_check(
    config_path: Path, clock: Clock, *, workers: int = 1, probe_ports: bool = True
) -> CheckReport:
    report = CheckReport(config=str(config_path))
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        report.errors.append(f"config error: {exc}")
        return report
    report.state_dir = config.state_dir
    try:
        check_worker_config(config, workers)
    except WorkerConfigError as exc:
        report.errors.append(str(exc))
    try:
        loaded, _ = load_for_start(config, clock)
    except StartupError as exc:
        report.errors.append(f"cannot start: {exc}")
    else:
        _describe(report, config, loaded, clock.now(), config_path.parent)
    _check_state_dir(report, config)
    _check_listeners(report, config, workers, probe_ports)
    _check_state_backend(report, config)
    if config.thresholds.store == "redis":
        _check_redis(report, config)
    report.ok = not report.errors
    return report


def _describe(
    report: CheckReport, config: Config, loaded: Loaded, now: dt.datetime, base: Path
) -> None:
    snapshot = loaded.snapshots.current
    today = now.date()
    report.versions = loaded.versions.served(today)
    report.retired_versions = loaded.versions.retired(today)
    report.xsd_validation = loaded.schemas is not None
    report.devices = len(snapshot.inventory)
    report.users = user_signers(snapshot.certstore, snapshot.users, loaded.versions, now)
    report.certificates = sorted(
        certificate_rows(snapshot.certstore, now), key=lambda row: row.not_after
    )
    report.certificates_skipped = [
        SkippedFile(_shown(path, base), reason) for path, reason in snapshot.certstore.skipped
    ]
    report.dcc_signing_certificate_serial = str(loaded.signer.serial)
    report.threshold_rules = _rules_summary(config, loaded.threshold_rules)
    soon = now + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    for cert in report.certificates:
        if cert.validity == "valid" and cert.not_after <= soon:
            report.warnings.append(
                f"certificate {cert.file} ({cert.subject_eui64}, OU {cert.role_code}) "
                f"expires {cert.not_after.date().isoformat()}"
            )
    for user in report.users:
        for choice in user.versions:
            if user.roles and user.status != "withdrawn" and not choice.usable:
                report.warnings.append(
                    f"User {user.user_id} ({user.party}) cannot sign DUIS {choice.version} "
                    f"requests: {choice.problem}"
                )


def _rules_summary(config: Config, raw: bytes | None) -> str:
    store = f"{config.thresholds.store} store"
    if raw is None:
        return f"{store}; no thresholds.rules_file (rules set at run time, if any, apply)"
    try:
        rules = decode_threshold_config(raw)
    except ThresholdConfigError:  # load_for_start refused it already
        return store
    return (
        f"{store}; {len(rules.rules)} rules and {len(rules.attribute_limits)} attribute "
        f"limits in {config.thresholds.rules_file}"
    )


def _check_state_dir(report: CheckReport, config: Config) -> None:
    state_dir = Path(config.state_dir)
    if state_dir.exists():
        if not state_dir.is_dir():
            report.errors.append(f"cannot start: state_dir {state_dir} is not a directory")
        elif not os.access(state_dir, os.W_OK | os.X_OK):
            report.errors.append(f"cannot start: state_dir {state_dir}: not writable by this user")
    elif not os.access(_existing_parent(state_dir), os.W_OK | os.X_OK):
        report.errors.append(
            f"cannot start: state_dir {state_dir} does not exist and cannot be created here"
        )
    token = admin_token_path(config)
    if token.exists():
        try:
            read_admin_token(token)
        except AdminTokenError as exc:
            report.errors.append(f"cannot start: {exc}")


def _existing_parent(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path("/")


def _check_listeners(report: CheckReport, config: Config, workers: int, probe: bool) -> None:
    wanted = [("duis", config.listen.host, config.listen.port)]
    if workers > 1 and config.admin.port:
        wanted += [
            (f"admin (worker {i})", config.admin.host, config.admin.port + i)
            for i in range(workers)
        ]
    else:
        wanted.append(("admin", config.admin.host, config.admin.port))
    for listener, host, port in wanted:
        free: bool | None = None
        if probe and port:
            try:
                probe_listen(host, port)
                free = True
            except StartupError as exc:
                report.errors.append(f"cannot start: {exc}")
                free = False
        report.listeners.append(Listener(listener=listener, host=host, port=port, free=free))


def _check_state_backend(report: CheckReport, config: Config) -> None:
    """[state]: SQLite files, or the shared Redis with the persistence start-up demands
    (start-up refuses a server that does not answer or would lose acknowledgements)."""
    if config.state.backend == "sqlite":
        report.state = "sqlite (files in the state directory; one node)"
        return
    settings = config.state.redis
    where = {
        "single": _without_password(settings.url),
        "sentinel": f"{settings.service_name} via {', '.join(settings.sentinels)}",
        "cluster": ", ".join(settings.cluster_nodes),
    }[settings.mode]
    report.state = f"redis ({settings.mode}: {where}, key prefix {settings.key_prefix})"
    if config.thresholds.store == "memory":
        report.warnings.append(
            'thresholds.store = "memory" with [state] backend = "redis": each node counts '
            "on its own, so a limit holds per node, not across them; remove the key to "
            "count on the shared Redis"
        )

    async def check() -> str:
        with trio.fail_after(REDIS_PING_TIMEOUT_SECONDS):
            async with open_shared_redis(settings) as shared:
                return await shared.check_durability()

    try:
        guarantee = trio.run(check)
    except (RedisDurabilityError, SharedStoreUnavailable) as exc:
        report.errors.append(f"cannot start: [state.redis]: {exc}")
    except trio.TooSlowError:
        report.errors.append(
            f"cannot start: [state.redis]: Redis did not answer within "
            f"{REDIS_PING_TIMEOUT_SECONDS:.0f} s"
        )
    else:
        report.state += f"; {guarantee}"


def _check_redis(report: CheckReport, config: Config) -> None:
    settings = config.thresholds.redis

    async def ping() -> None:
        client = coredis.Redis.from_url(
            settings.url, connect_timeout=settings.connect_timeout_seconds
        )
        with trio.fail_after(REDIS_PING_TIMEOUT_SECONDS):
            async with client:
                await client.ping()

    failure = ""
    try:
        trio.run(ping)
    except* (OSError, trio.TooSlowError, coredis.exceptions.RedisError) as group:
        # coredis's pool nursery wraps what it raises in a group.
        failure = type(group.exceptions[0]).__name__
    if failure:
        report.warnings.append(
            f"Redis at {_without_password(settings.url)} does not answer ({failure}): "
            "the gateway starts, and answers 503 (or lets requests by, when_store_unavailable "
            '= "open") until it does'
        )


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at and credentials else url


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
