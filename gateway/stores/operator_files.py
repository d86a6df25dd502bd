"""The operator's files, read at start-up and on reload: config, registry, XSDs, rules.

`load` reads everything that can fail on them (trust, signing key, registry,
catalogues, XSDs, threshold rules, techspec tables and coverage) before any port is
bound, so a bad config never half-starts; `load_snapshot` is the part a reload reads again.

Reading is here; what the bytes mean is decided in the core (`gateway.core.config`,
`gateway.core.registry`, `gateway.core.ingest`, `thresholds.config`), so a file's
fault and a value's fault are reported the same way wherever the bytes came from.
Certificates and keys are gateway/stores/certfiles.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from gateway.core.clock import Clock
from gateway.core.config import DEV_INBOX_URL, Config, ConfigError, StartupError, decode_config
from gateway.core.ingest import SchemaSet
from gateway.core.registry import (
    Format,
    IdPolicy,
    Inventory,
    RegistryError,
    UserRegistry,
    check_policy,
    decode_inventory,
    decode_users,
)
from gateway.core.signing import ResponseSigner
from gateway.core.snapshot import Snapshot, SnapshotHolder
from gateway.core.techspec.coverage import decode_coverage
from gateway.core.techspec.tables import decode_tables
from gateway.core.versions import VersionRegistry
from gateway.stores.certfiles import load_certstore, load_response_signer
from gateway.stores.techspec_store import DocumentFormat, TableKind
from mmc.identifiers import Eui64, parse_eui64
from thresholds.config import ThresholdConfigError, decode_threshold_config


def load_config(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    return decode_config(raw, path)


def load_users(path: Path) -> UserRegistry:
    data, fmt = _registry_file(path)
    return decode_users(data, fmt=fmt, source=str(path))


def load_inventory(path: Path) -> Inventory:
    data, fmt = _registry_file(path)
    return decode_inventory(data, fmt=fmt, source=str(path))


def _registry_file(path: Path) -> tuple[bytes, Format]:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise RegistryError(f"{path}: expected a .toml or .json file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return data, "toml" if suffix == ".toml" else "json"


def load_schemas(xsd_dir: Path, files_by_version: dict[str, str]) -> SchemaSet:
    """The XSDs of the versions whose file is in `xsd_dir` (the others are not checked)."""
    schemas: dict[str, etree.XMLSchema] = {}
    for version, name in files_by_version.items():
        path = xsd_dir / name
        if path.exists():
            # Parsed from the file, so the XSD's includes resolve beside it.
            schemas[version] = etree.XMLSchema(etree.parse(str(path)))
    return SchemaSet(schemas)


def read_threshold_rules(config: Config) -> bytes | None:
    """The rules file's bytes (None: no file configured), checked to decode.

    Which rules are in force is decided later, against the stored run-time rules
    (gateway/stores/threshold_state.py); a bad file stops start-up either way.
    """
    path = config.thresholds.rules_file
    if path is None:
        return None
    raw = Path(path).read_bytes()
    try:
        decode_threshold_config(raw)
    except ThresholdConfigError as exc:
        raise ThresholdConfigError(f"thresholds.rules_file {path}: {exc}") from None
    return raw


@dataclass(frozen=True)
class TechspecFile:
    """`techspec.tables_file` or `techspec.coverage_file`, read and checked to decode."""

    kind: TableKind
    key: str  # the config key, for the audit trail and messages
    path: str
    document: bytes
    format: DocumentFormat


def read_techspec_files(config: Config) -> tuple[TechspecFile, ...]:
    """The configured techspec files. Whether each goes in force is decided against the
    store (gateway.edge.techspec_service); a file the core cannot read stops start-up."""
    files = []
    techspec = config.techspec
    configured: tuple[tuple[TableKind, str, str | None], ...] = (
        ("techspec", "techspec.tables_file", techspec.tables_file),
        ("coverage", "techspec.coverage_file", techspec.coverage_file),
    )
    for kind, key, path in configured:
        if path is None:
            continue
        suffix = Path(path).suffix.lower()
        if suffix not in (".toml", ".json"):
            raise StartupError(f"{key} {path}: expected a .toml or .json file")
        fmt: DocumentFormat = "json" if suffix == ".json" else "toml"
        try:
            document = Path(path).read_bytes()
        except OSError as exc:
            raise StartupError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
        try:
            if kind == "techspec":
                decode_tables(document, fmt=fmt, source=path)
            else:
                decode_coverage(document, fmt=fmt, source=path)
        except ValueError as exc:  # TablesError, CoverageError: they name the entry
            raise StartupError(f"{key}: {exc}") from None
        files.append(TechspecFile(kind, key, path, document, fmt))
    return tuple(files)


@dataclass(frozen=True)
class Loaded:
    """What start-up read from the operator's files. Only the snapshot is ever reloaded."""

    versions: VersionRegistry
    schemas: SchemaSet | None
    snapshots: SnapshotHolder
    signer: ResponseSigner
    dcc_eui64: Eui64
    threshold_rules: bytes | None
    techspec_files: tuple[TechspecFile, ...] = ()


def load(config: Config, clock: Clock) -> Loaded:
    versions = VersionRegistry.build(config.duis.versions, config.duis.retired_from)
    schemas = None
    if config.duis.xsd_dir is not None:
        files = versions.xsd_files()
        schemas = load_schemas(Path(config.duis.xsd_dir), files)
        missing = [v for v in files if not schemas.has(v)]
        if missing:
            raise StartupError(f"duis.xsd_dir: no XSD for versions {', '.join(missing)}")
    snapshot = load_snapshot(config, clock.now().date())
    trust = config.trust
    return Loaded(
        versions=versions,
        schemas=schemas,
        snapshots=SnapshotHolder(snapshot),
        signer=load_response_signer(
            Path(trust.dcc_signing_certificate), Path(trust.dcc_signing_key)
        ),
        dcc_eui64=parse_eui64(config.duis.dcc_eui64),
        threshold_rules=read_threshold_rules(config),
        techspec_files=read_techspec_files(config),
    )


def load_snapshot(config: Config, today: dt.date) -> Snapshot:
    """Trust and registry as the files say now; raises on anything the operator must fix."""
    registry = config.registry
    users = load_users(Path(registry.users_file))
    inventory = load_inventory(Path(registry.inventory_file))
    check_policy(users, IdPolicy(one_id_per_role_until=registry.one_id_per_role_until), today)
    if not config.dev_inbox.enabled:
        inbox_users = [u.user_id for u in users if u.response_url == DEV_INBOX_URL]
        if inbox_users:
            raise RegistryError(
                f"{registry.users_file}: response_url = {DEV_INBOX_URL!r} for "
                f"{', '.join(inbox_users[:3])}, but [dev_inbox] enabled is not true"
            )
    certstore = load_certstore(
        [Path(p) for p in config.trust.certificate_dirs],
        [Path(p) for p in config.trust.ca_anchors],
        [Path(p) for p in config.trust.crl_files],
    )
    return Snapshot(certstore=certstore, users=users, inventory=inventory)
