"""Configuration: TOML decoded straight into frozen msgspec Structs, every table here.

Every layer reads its own table, so the tables live at the bottom (values only):
the composition root hands each component the table it uses. Reading the file is
gateway/stores/operator_files.py's `load_config`.

Unknown keys and out-of-range values are refused at start-up with msgspec's
message, which names the key path (e.g. "Object contains unknown field `prot`
- at `$.listen`"). Relative paths in a config file are resolved against the
file's folder, so a config can travel with its PKI and estate files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec

from gateway.core.estate_config import EstateConfig, resolve_estate_paths
from gateway.core.replay_rules import DEFAULT_MAX_COUNTER, check_counter
from gateway.core.simulator_config import SimulatorConfig
from gateway.core.techspec.alerts import WanAlertCodes
from gateway.core.techspec.answers import RefusalCodes
from gateway.core.techspec.install_leave import InstallLeavePolicy
from gateway.core.techspec.report import DEFAULT_WARN_WITHIN_DAYS, MAX_WARN_WITHIN_DAYS
from mmc.srv_roles import DEFAULT_EXTRA_SRV_ROLES
from thresholds.config import RedisStoreSettings

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Eui64Text = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){7}$")]
Count = Annotated[int, msgspec.Meta(ge=1, le=100_000)]

DUIS_PORT = 8079  # the DUIS port of the DCC's test environment
ADMIN_PORT = 8080


class Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


# -- delivery of responses and alerts to the Users' Receive Response URLs (edge/delivery.py)

BACKOFF_BASE_SECONDS: Final = 1.0
BACKOFF_CAP_SECONDS: Final = 600.0
# With full jitter the expected wait before a dead letter is about half the sum of
# the ceilings: (1 + 2 + ... + 512 + 14 * 600) / 2, roughly 75 minutes.
MAX_ATTEMPTS: Final = 24
REQUEST_TIMEOUT_SECONDS: Final = 30.0  # per attempt, start to end of the answer
MAX_ACTIVE_USERS: Final = 256  # workers, each holding at most one message in memory
MAX_CONCURRENT_POSTS: Final = 64  # outbound connections in use at once
MAX_MESSAGES_PER_TURN: Final = 100  # then the worker yields its slot to waiting Users
RETENTION_SECONDS: Final = 7 * 86_400.0  # delivered rows (without bodies) kept this long
PURGE_INTERVAL_SECONDS: Final = 3_600.0


class DeliveryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    backoff_base_seconds: PositiveSeconds = BACKOFF_BASE_SECONDS
    backoff_cap_seconds: PositiveSeconds = BACKOFF_CAP_SECONDS
    max_attempts: Count = MAX_ATTEMPTS
    request_timeout_seconds: PositiveSeconds = REQUEST_TIMEOUT_SECONDS
    max_active_users: Count = MAX_ACTIVE_USERS
    max_concurrent_posts: Count = MAX_CONCURRENT_POSTS
    max_messages_per_turn: Count = MAX_MESSAGES_PER_TURN
    retention_seconds: Annotated[float, msgspec.Meta(ge=0)] = RETENTION_SECONDS
    purge_interval_seconds: PositiveSeconds = PURGE_INTERVAL_SECONDS


# -- the dev inbox on the admin listener (devkit/inbox.py); off unless enabled

# A User's response_url meaning "this gateway's dev inbox" (resolved at each delivery).
DEV_INBOX_URL: Final = "dev-inbox"
DEFAULT_MAX_TOTAL_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024
DEFAULT_MAX_AGE_SECONDS: Final = 7 * 86_400.0


class DevInboxConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    max_total_bytes: Annotated[int, msgspec.Meta(ge=4096, le=1024**3)] = DEFAULT_MAX_TOTAL_BYTES
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024**2)] = (
        DEFAULT_MAX_MESSAGE_BYTES
    )
    max_age_seconds: Annotated[float, msgspec.Meta(gt=0, le=366 * 86_400)] = DEFAULT_MAX_AGE_SECONDS

    def __post_init__(self) -> None:
        if self.max_message_bytes > self.max_total_bytes:
            raise ValueError("max_message_bytes must not exceed max_total_bytes")


class ListenConfig(Base, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = DUIS_PORT


class TlsConfig(Base, frozen=True, kw_only=True):
    """Mutual TLS on the DUIS listener (DCCKI-style); absent = plain HTTP for local testing."""

    certificate: str
    private_key: str
    client_ca: str
    require_client_certificate: bool = True
    # client certificate CN -> the User IDs it may send for (default: the CN's own EUI-64)
    identities: dict[str, tuple[Eui64Text, ...]] = {}


HostName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")]


class AdminConfig(Base, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = ADMIN_PORT
    # The bearer token every admin route but /healthz, /readyz, /metrics requires;
    # generated (0600) on first start. Default: admin.token in the state directory.
    token_file: str | None = None
    # Names (besides IP literals and localhost) the admin listener answers to in Host.
    allowed_hosts: tuple[HostName, ...] = ()


class LimitsConfig(Base, frozen=True, kw_only=True):
    """The HTTP edge's limits, per listener (DUIS and admin each have their own slots)."""

    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 1_048_576
    # Counted on the raw bytes as they arrive: request line, header lines, line ends.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024)] = 16_384
    # Between requests on a keep-alive connection (and before a plain connection's first byte).
    idle_timeout_seconds: PositiveSeconds = 60.0
    # One deadline per request from its first byte (for TLS, from the handshake's start).
    request_timeout_seconds: PositiveSeconds = 10.0
    # Writing one response: a client that does not read loses its connection after this.
    send_timeout_seconds: PositiveSeconds = 10.0
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1024
    # Connections one peer IP may hold at once; beyond it 503 and close.
    max_connections_per_peer: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    drain_timeout_seconds: PositiveSeconds = 10.0


SrvVariantText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,2}(\.[0-9]{1,2}){0,2}$")]
CommandVariantNumber = Annotated[int, msgspec.Meta(ge=1, le=8)]


def _default_extra_srv_roles() -> dict[str, tuple[str, ...]]:
    return dict(DEFAULT_EXTRA_SRV_ROLES)


class DccOriginatedConfig(Base, frozen=True, kw_only=True):
    """Requests the DCC itself originates (originator = `duis.dcc_eui64`), signed with
    the DCC's XML-signing certificate (OU 89): gateway/core/access.py has the rule."""

    enabled: bool = True
    # The SRVs the RTDS templates show the DCC originating (CS02fMAC, CS08, GCS59).
    srvs: tuple[SrvVariantText, ...] = ("6.24.1", "11.2", "8.12.2")
    command_variants: tuple[CommandVariantNumber, ...] = (1,)


class DuisConfig(Base, frozen=True, kw_only=True):
    versions: tuple[str, ...] = ("5.0", "5.1", "5.3", "5.4")
    retired_from: dict[str, dt.date] = {}
    xsd_dir: str | None = None
    dcc_eui64: Eui64Text = "90-B3-D5-1F-30-00-00-02"
    # User Roles added to SRVs whose matrix row lists none (mmc/srv_roles.py says why);
    # checked against the catalogues at start-up.
    extra_srv_roles: dict[SrvVariantText, tuple[str, ...]] = msgspec.field(
        default_factory=_default_extra_srv_roles
    )
    dcc_originated: DccOriginatedConfig = DccOriginatedConfig()
    # DCCAlertCode of the DUISVersionMismatch alert; unset: no alert (see README).
    version_mismatch_alert_code: Annotated[str, msgspec.Meta(pattern=r"^N[0-9]{1,3}$")] | None = (
        None
    )


class TrustConfig(Base, frozen=True, kw_only=True):
    certificate_dirs: tuple[str, ...]
    ca_anchors: tuple[str, ...] = ()
    crl_files: tuple[str, ...] = ()
    dcc_signing_certificate: str
    dcc_signing_key: str
    # Device digital-signing certificates, files named <EUI-64>-ds.pem as in the DCC's test
    # keystore: a signed device response an 8.13 returns is verified with its device's
    # (without one, the signature is not checked, and the log says so).
    device_certificate_dirs: tuple[str, ...] = ()


class RegistryConfig(Base, frozen=True, kw_only=True):
    users_file: str
    inventory_file: str
    one_id_per_role_until: dt.date | None = None


class ThresholdsConfig(Base, frozen=True, kw_only=True):
    # Where the window counts live. Unset: "redis" (the [state.redis] server) when
    # [state] backend = "redis", else "memory"; `Config` resolves it, so it is never
    # None after a Config is built.
    store: Literal["memory", "redis"] | None = None
    redis: RedisStoreSettings = msgspec.field(default_factory=RedisStoreSettings)
    rules_file: str | None = None  # threshold rules and attribute limits (TOML)
    # Redis unreachable: "closed" answers 503 (nothing acknowledged), "open" lets requests by.
    when_store_unavailable: Literal["closed", "open"] = "closed"
    quarantine_retention_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30 * 86_400.0
    quarantine_expiry_check_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 60.0
    # Memory store: changed window counts are saved this often (and at shutdown), so a
    # kill -9 forgets at most this many seconds of counts.
    counts_snapshot_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0


# How often each worker puts in force revisions another worker or node stored.
TECHSPEC_REFRESH_SECONDS: Final = 5.0


class TechspecConfig(Base, frozen=True, kw_only=True):
    """Technical Specification versions and Install and Leave (gateway/core/techspec/)."""

    # Files put in force at start when they differ from what was last loaded from them;
    # the admin API replaces them at run time (README: "Technical Specification versions").
    # Absent: nothing is loaded from a file (the version rules wait for tables).
    tables_file: str | None = None
    coverage_file: str | None = None
    install_leave: InstallLeavePolicy = InstallLeavePolicy()  # remedy_days, proactive cut-off
    refusal_codes: RefusalCodes = RefusalCodes()
    # Unset (DUIS publishes no code we could check): no SM WAN available alert is sent.
    wan_available_alert: WanAlertCodes = WanAlertCodes()
    report_warn_within_days: Annotated[int, msgspec.Meta(ge=0, le=MAX_WARN_WITHIN_DAYS)] = (
        DEFAULT_WARN_WITHIN_DAYS
    )
    refresh_seconds: PositiveSeconds = TECHSPEC_REFRESH_SECONDS


def _default_simulator() -> SimulatorConfig:
    return SimulatorConfig()


class ReplayConfig(Base, frozen=True, kw_only=True):
    # Counters above this are refused (E1) without being recorded, so one absurd
    # counter cannot lock its originator out (gateway/core/replay_rules.py says why 2**63 - 1).
    max_counter: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_MAX_COUNTER

    def __post_init__(self) -> None:
        check_counter(self.max_counter)  # a uint64 (msgspec's bounds stop at int64)


# Commands issued for local delivery (CV 2, 6) wait this long for their 8.13 Return
# Local Command Response: a field visit may take days (gateway/core/local_commands.py).
LOCAL_COMMAND_TTL_SECONDS: Final = 7 * 86_400.0
MAX_OPEN_LOCAL_COMMANDS_PER_ORIGINATOR: Final = 65_536


class LocalDeliveryConfig(Base, frozen=True, kw_only=True):
    command_ttl_seconds: Annotated[float, msgspec.Meta(gt=0, le=366 * 86_400)] = (
        LOCAL_COMMAND_TTL_SECONDS
    )
    max_open_commands_per_originator: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = (
        MAX_OPEN_LOCAL_COMMANDS_PER_ORIGINATOR
    )


class StorageConfig(Base, frozen=True, kw_only=True):
    # "full": fsync every commit (survives power loss); "normal": survives kill -9 only.
    synchronous: Literal["full", "normal"] = "full"


HostPort = Annotated[str, msgspec.Meta(pattern=r"^[^\s:]+:[0-9]{1,5}$")]


class SharedRedisConfig(Base, frozen=True, kw_only=True):
    """The Redis every node shares when `[state] backend = "redis"` (README: "Running
    several nodes"). One of three deployments: a single server (`url`), a primary found
    through Sentinel (`sentinels` + `service_name`) or a Redis Cluster (`cluster_nodes`)."""

    mode: Literal["single", "sentinel", "cluster"] = "single"
    url: str = "redis://127.0.0.1:6379/0"  # single: redis:// or rediss:// (TLS)
    sentinels: tuple[HostPort, ...] = ()
    service_name: str = "mymaster"
    cluster_nodes: tuple[HostPort, ...] = ()
    password: str | None = None  # sentinel and cluster modes (single: in the url)
    # Every key starts with it, so several gateways (or tests) can share one Redis.
    key_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "duisgw"
    connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    stream_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    # What an acknowledgement waits for (README: "What an acknowledgement guarantees").
    # "always": the server must run appendonly yes + appendfsync always (checked at start):
    # a write is on the primary's disk before its reply. "everysec": appendfsync everysec
    # and every acknowledged write also waits for `wait_replicas` replicas (WAIT).
    # "unchecked": the server's settings cannot be read (CONFIG disabled): trusted as set.
    durability: Literal["always", "everysec", "unchecked"] = "always"
    wait_replicas: Annotated[int, msgspec.Meta(ge=0, le=16)] = 0
    wait_timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 500

    def __post_init__(self) -> None:
        if self.mode == "sentinel" and not self.sentinels:
            raise ValueError('mode "sentinel" needs sentinels = ["host:port", ...]')
        if self.mode == "cluster" and not self.cluster_nodes:
            raise ValueError('mode "cluster" needs cluster_nodes = ["host:port", ...]')
        if self.durability == "everysec" and self.wait_replicas == 0:
            raise ValueError('durability "everysec" needs wait_replicas >= 1 (WAIT for them)')
        if self.wait_replicas and self.wait_timeout_ms >= self.stream_timeout_seconds * 1000:
            # The client stops reading after stream_timeout_seconds: a longer WAIT would end
            # as a client timeout, never as the replicas' count.
            raise ValueError(
                f"wait_timeout_ms ({self.wait_timeout_ms}) must be below "
                f"stream_timeout_seconds ({self.stream_timeout_seconds:g} s)"
            )


class StreamsConfig(Base, frozen=True, kw_only=True):
    """The jobs and the outbox on Redis Streams (gateway/stores/outbox_redis.py,
    jobs_redis.py). A node that stops renewing its lease (dead, or cut off from Redis for
    longer) has its partitions and its jobs taken over by a live node after `lease_seconds`."""

    # Outbox streams; a User ID maps to one, so one node delivers a User's messages in order.
    # Fixed for a deployment's lifetime: changing it re-homes Users with messages pending.
    partitions: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    lease_seconds: Annotated[float, msgspec.Meta(ge=0.5, le=600)] = 10.0


class StateConfig(Base, frozen=True, kw_only=True):
    """Where shared state lives: "sqlite" (the embedded default: one node, files in
    state_dir) or "redis" (every node of a deployment on one Redis)."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    redis: SharedRedisConfig = msgspec.field(default_factory=SharedRedisConfig)
    streams: StreamsConfig = msgspec.field(default_factory=StreamsConfig)


class Config(Base, frozen=True, kw_only=True):
    state_dir: str
    listen: ListenConfig = ListenConfig()
    tls: TlsConfig | None = None
    admin: AdminConfig = AdminConfig()
    limits: LimitsConfig = LimitsConfig()
    duis: DuisConfig = DuisConfig()
    trust: TrustConfig
    registry: RegistryConfig
    thresholds: ThresholdsConfig = ThresholdsConfig()
    storage: StorageConfig = StorageConfig()
    state: StateConfig = msgspec.field(default_factory=StateConfig)
    replay: ReplayConfig = ReplayConfig()
    local_delivery: LocalDeliveryConfig = LocalDeliveryConfig()
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    techspec: TechspecConfig = msgspec.field(default_factory=TechspecConfig)
    # The dev inbox on the admin listener (gateway/devkit/inbox.py); off unless enabled.
    dev_inbox: DevInboxConfig = msgspec.field(default_factory=DevInboxConfig)
    # The embedded device simulator (the default device transport).
    simulator: SimulatorConfig = msgspec.field(default_factory=_default_simulator)
    # Which device transport: the embedded simulator or an estate service over the network.
    estate: EstateConfig = EstateConfig()

    def __post_init__(self) -> None:
        if self.thresholds.store is None:
            # Frozen, but still being built: nothing has seen the unresolved value.
            msgspec.structs.force_setattr(
                self, "thresholds", counts_follow_state(self.thresholds, self.state)
            )


def counts_follow_state(thresholds: ThresholdsConfig, state: StateConfig) -> ThresholdsConfig:
    """The unset threshold store resolved: with shared state, counts are shared too, on
    the same single Redis (under their own key prefix); otherwise in memory."""
    if state.backend == "sqlite":
        return msgspec.structs.replace(thresholds, store="memory")
    if state.redis.mode != "single":
        raise ValueError(
            f'[state.redis] mode = "{state.redis.mode}": set [thresholds] store and '
            "[thresholds.redis] url (the counts store takes one server's url)"
        )
    redis = msgspec.structs.replace(
        thresholds.redis, url=state.redis.url, key_prefix=f"{state.redis.key_prefix}:ad:"
    )
    return msgspec.structs.replace(thresholds, store="redis", redis=redis)


class ConfigError(Exception):
    """The configuration is unusable; the message names the key or file."""


class StartupError(Exception):
    """The gateway cannot start with this configuration; the message says why."""


def decode_config(raw: bytes, path: Path) -> Config:
    """The config file's bytes read from `path`: decoded, checked, paths made absolute."""
    try:
        config = msgspec.toml.decode(raw, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_removed_keys_hint(raw) or exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return resolve_paths(config, path.parent)


# Tables the gateway once read and no longer does: a clear word instead of "unknown field".
REMOVED_TABLES = {
    "http": "[http] was removed: httptools is the only HTTP parser (the h11 path is gone); "
    "delete the [http] table",
}


def _removed_keys_hint(raw: bytes) -> str | None:
    try:
        table = msgspec.toml.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(table, dict):
        return None
    found = [hint for key, hint in REMOVED_TABLES.items() if key in table]
    return "; ".join(found) or None


def resolve_paths(config: Config, base: Path) -> Config:
    """Make every relative path in the config relative to `base`."""

    def rel(p: str) -> str:
        return str((base / p).resolve()) if not Path(p).is_absolute() else p

    trust = msgspec.structs.replace(
        config.trust,
        certificate_dirs=tuple(rel(p) for p in config.trust.certificate_dirs),
        ca_anchors=tuple(rel(p) for p in config.trust.ca_anchors),
        crl_files=tuple(rel(p) for p in config.trust.crl_files),
        dcc_signing_certificate=rel(config.trust.dcc_signing_certificate),
        dcc_signing_key=rel(config.trust.dcc_signing_key),
        device_certificate_dirs=tuple(rel(p) for p in config.trust.device_certificate_dirs),
    )
    registry = msgspec.structs.replace(
        config.registry,
        users_file=rel(config.registry.users_file),
        inventory_file=rel(config.registry.inventory_file),
    )
    duis = config.duis
    if duis.xsd_dir is not None:
        duis = msgspec.structs.replace(duis, xsd_dir=rel(duis.xsd_dir))
    thresholds = config.thresholds
    if thresholds.rules_file is not None:
        thresholds = msgspec.structs.replace(thresholds, rules_file=rel(thresholds.rules_file))
    techspec = config.techspec
    if techspec.tables_file is not None:
        techspec = msgspec.structs.replace(techspec, tables_file=rel(techspec.tables_file))
    if techspec.coverage_file is not None:
        techspec = msgspec.structs.replace(techspec, coverage_file=rel(techspec.coverage_file))
    admin = config.admin
    if admin.token_file is not None:
        admin = msgspec.structs.replace(admin, token_file=rel(admin.token_file))
    tls = config.tls
    if tls is not None:
        tls = msgspec.structs.replace(
            tls,
            certificate=rel(tls.certificate),
            private_key=rel(tls.private_key),
            client_ca=rel(tls.client_ca),
        )
    return msgspec.structs.replace(
        config,
        state_dir=rel(config.state_dir),
        trust=trust,
        registry=registry,
        duis=duis,
        thresholds=thresholds,
        tls=tls,
        admin=admin,
        techspec=techspec,
        estate=resolve_estate_paths(config.estate, rel),
    )
