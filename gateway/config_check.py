"""`duisgw config check`: everything start-up would load, checked without serving.

The config, trust (certificates, anchors, CRLs), the DCC signing key, the registry,
the threshold rules, the catalogue of every served version, the XSDs, the TLS
material, the state directory and admin token, the worker layout, and the ports.
Each failure is the one line start-up prints for it (after `duisgw: `), so what
change control sees is what the daemon would say. Beside the verdict it reports
what it found: Users and, per served version, the certificate each would sign
with (or why none would pass), every certificate with its expiry, and warnings
(certificates expiring soon, Users who cannot sign, Redis unreachable).

Nothing is written: no state directory, token or journal is created.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import coredis
import msgspec
import trio

from gateway.admin_auth import AdminTokenError, admin_token_path, read_admin_token
from gateway.assemble import StartupError
from gateway.certstore import CertStore
from gateway.clock import Clock
from gateway.config import Config, ConfigError, load_config
from gateway.metrics import Metrics
from gateway.preflight import Loaded, load_startup, probe_listen
from gateway.registry import User, UserRegistry
from gateway.signing_readiness import VersionReadiness, signing_readiness
from gateway.state import GatewayState
from gateway.versions import VersionRegistry
from gateway.workers import WorkerConfigError, check_worker_config
from thresholds.config import ThresholdConfigError, decode_threshold_config

# A certificate (or the DCC's signing certificate) expiring this soon is a warning.
EXPIRY_WARNING_DAYS = 30
REDIS_PING_TIMEOUT_SECONDS = 3.0


class CertificateLine(msgspec.Struct, frozen=True, kw_only=True):
    file: str
    eui64: str
    role_code: str
    key_usage: str
    trust: str
    serial: str  # decimal; SMKI serials exceed what JSON numbers carry exactly
    not_after: dt.datetime
    expired: bool


class SkippedLine(msgspec.Struct, frozen=True):
    file: str
    reason: str


class UserLine(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    party: str
    roles: tuple[str, ...]
    status: str
    signing: tuple[VersionReadiness, ...]  # empty for an ID that may not send requests


class ListenerLine(msgspec.Struct, frozen=True, kw_only=True):
    listener: str
    host: str
    port: int
    free: bool | None  # None: not probed (--no-ports, or port 0)


class CheckReport(msgspec.Struct, kw_only=True):
    config: str
    ok: bool = False
    errors: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    state_dir: str | None = None
    versions: tuple[str, ...] = ()
    retired_versions: dict[str, dt.date] = msgspec.field(default_factory=dict)
    xsd_validation: bool = False
    devices: int = 0
    users: list[UserLine] = msgspec.field(default_factory=list)
    certificates: list[CertificateLine] = msgspec.field(default_factory=list)
    certificates_skipped: list[SkippedLine] = msgspec.field(default_factory=list)
    dcc_signing_certificate_serial: str | None = None
    threshold_rules: str | None = None
    listeners: list[ListenerLine] = msgspec.field(default_factory=list)


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
        loaded: Loaded | None = load_startup(config, clock, Metrics())
    except StartupError as exc:
        report.errors.append(f"cannot start: {exc}")
        loaded = None
    if loaded is not None:
        _describe(report, config, loaded, clock.now(), config_path.parent)
    _check_state_dir(report, config)
    _check_listeners(report, config, workers, probe_ports)
    if config.thresholds.store == "redis":
        _check_redis(report, config)
    report.ok = not report.errors
    return report


def _describe(
    report: CheckReport, config: Config, loaded: Loaded, now: dt.datetime, base: Path
) -> None:
    state = loaded.state
    today = now.date()
    report.versions = state.versions.served(today)
    report.retired_versions = state.versions.retired(today)
    report.xsd_validation = state.schemas is not None
    report.devices = len(state.inventory)
    report.users = _users(state, now)
    report.certificates = _certificates(state.certstore, now, base)
    report.certificates_skipped = [
        SkippedLine(_shown(path, base), reason) for path, reason in state.certstore.skipped
    ]
    report.dcc_signing_certificate_serial = str(state.signer.serial)
    report.threshold_rules = _rules_summary(config, loaded.rules_raw)
    soon = now + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    for cert in report.certificates:
        if not cert.expired and cert.not_after <= soon:
            report.warnings.append(
                f"certificate {cert.file} ({cert.eui64}, OU {cert.role_code}) expires "
                f"{cert.not_after.date().isoformat()}"
            )
    for user in report.users:
        for verdict in user.signing:
            if not verdict.usable:
                report.warnings.append(
                    f"User {user.user_id} ({user.party}) cannot sign DUIS {verdict.version} "
                    f"requests: {verdict.problem}"
                )


def _users(state: GatewayState, now: dt.datetime) -> list[UserLine]:
    rules = _signer_roles(state.versions, now)
    verdicts = {
        r.user_id: r.versions
        for r in signing_readiness(state.certstore, state.registry, rules, now)
    }
    return [
        UserLine(
            user_id=user.user_id,
            party=user.party,
            roles=tuple(sorted(user.roles)),
            status=user.status,
            signing=verdicts.get(user.user_id, ()),
        )
        for user in _sorted_users(state.registry)
    ]


def _sorted_users(registry: UserRegistry) -> list[User]:
    return sorted(registry, key=lambda u: (u.party, u.user_id))


def _signer_roles(versions: VersionRegistry, now: dt.datetime) -> dict[str, frozenset[str]]:
    roles = {}
    for version in versions.served(now.date()):
        route = versions.route(version, now)
        if route is not None:
            roles[version] = route.catalogue.signer_role_codes
    return roles


def _certificates(store: CertStore, now: dt.datetime, base: Path) -> list[CertificateLine]:
    return [
        CertificateLine(
            file=_shown(cert.path, base),
            eui64=cert.eui64,
            role_code=cert.role_code,
            key_usage=cert.key_usage,
            trust=cert.trust,
            serial=str(cert.serial),
            not_after=cert.not_after,
            expired=cert.not_after < now,
        )
        for cert in sorted(store, key=lambda c: (c.not_after, c.eui64, c.role_code))
    ]


def _rules_summary(config: Config, raw: bytes | None) -> str:
    store = f"{config.thresholds.store} store"
    if raw is None:
        return f"{store}; no thresholds.rules_file (rules set at run time, if any, apply)"
    try:
        rules = decode_threshold_config(raw)
    except ThresholdConfigError:  # load_startup refused it already
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
        report.listeners.append(ListenerLine(listener=listener, host=host, port=port, free=free))


def _check_redis(report: CheckReport, config: Config) -> None:
    settings = config.thresholds.redis

    async def ping() -> None:
        client = coredis.Redis.from_url(
            settings.url, connect_timeout=settings.connect_timeout_seconds
        )
        with trio.fail_after(REDIS_PING_TIMEOUT_SECONDS):
            async with client:
                await client.ping()

    try:
        trio.run(ping)
    except (OSError, trio.TooSlowError, coredis.exceptions.RedisError) as exc:
        report.warnings.append(
            f"Redis at {_without_password(settings.url)} does not answer ({type(exc).__name__}): "
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
