"""Build the gateway's state from its config, and rebuild it on reload.

Everything that can fail on the operator's files (trust, signing key, registry,
catalogues, XSDs, threshold rules) is loaded here, before any port is bound,
so a bad config never half-starts; a reload builds complete new snapshots and
swaps them in only when all of them loaded.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.certstore import CertStore
from gateway.core.clock import Clock
from gateway.core.config import DEV_INBOX_URL, Config
from gateway.core.registry import IdPolicy, Inventory, RegistryError, UserRegistry, check_policy
from gateway.core.state import GatewayState, ResponseSigner
from gateway.core.versions import VersionRegistry
from gateway.edge.metrics import Metrics
from gateway.stores.certfiles import load_certstore
from gateway.stores.operator_files import load_inventory, load_schemas, load_users
from mmc.identifiers import parse_eui64
from thresholds.config import ThresholdConfigError, decode_threshold_config

log = logging.getLogger("duisgw")


class StartupError(Exception):
    """The gateway cannot start with this configuration; the message says why."""


def load_trust(config: Config) -> CertStore:
    return load_certstore(
        [Path(p) for p in config.trust.certificate_dirs],
        [Path(p) for p in config.trust.ca_anchors],
        [Path(p) for p in config.trust.crl_files],
    )


def load_signer(config: Config) -> ResponseSigner:
    cert_path = Path(config.trust.dcc_signing_certificate)
    key_path = Path(config.trust.dcc_signing_key)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise StartupError(
            f"trust.dcc_signing_*: cannot load {cert_path} / {key_path}: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StartupError(f"trust.dcc_signing_key: {key_path} is not an EC private key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise StartupError("trust.dcc_signing_key does not match trust.dcc_signing_certificate")
    # RFC 4514 order ('CN=Z1,OU=07') is how the DCC writes X509IssuerName.
    return ResponseSigner(key, cert.issuer.rfc4514_string(), cert.serial_number)


def load_registry(config: Config, today: dt.date) -> tuple[UserRegistry, Inventory]:
    users = load_users(Path(config.registry.users_file))
    inventory = load_inventory(Path(config.registry.inventory_file))
    check_policy(
        users, IdPolicy(one_id_per_role_until=config.registry.one_id_per_role_until), today
    )
    if not config.dev_inbox.enabled:
        inbox_users = [u.user_id for u in users if u.response_url == DEV_INBOX_URL]
        if inbox_users:
            raise RegistryError(
                f"{config.registry.users_file}: response_url = {DEV_INBOX_URL!r} for "
                f"{', '.join(inbox_users[:3])}, but [dev_inbox] enabled is not true"
            )
    return users, inventory


def build_state(config: Config, clock: Clock, metrics: Metrics) -> GatewayState:
    versions = VersionRegistry.build(config.duis.versions, config.duis.retired_from)
    schemas = None
    if config.duis.xsd_dir is not None:
        files = versions.xsd_files()
        schemas = load_schemas(Path(config.duis.xsd_dir), files)
        missing = [v for v in files if not schemas.has(v)]
        if missing:
            raise StartupError(f"duis.xsd_dir: no XSD for versions {', '.join(missing)}")
    users, inventory = load_registry(config, clock.now().date())
    return GatewayState(
        clock=clock,
        versions=versions,
        schemas=schemas,
        certstore=load_trust(config),
        registry=users,
        inventory=inventory,
        dcc_eui64=parse_eui64(config.duis.dcc_eui64),
        signer=load_signer(config),
        metrics=metrics,
        state_dir=Path(config.state_dir),
    )


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


def reload(config: Config, state: GatewayState) -> str:
    """Rebuild trust and registry snapshots and swap them in; keep the old ones on error."""
    try:
        certstore = load_trust(config)
        users, inventory = load_registry(config, state.clock.now().date())
    except Exception as exc:  # the operator's files are wrong: keep serving the old set
        state.metrics.reloads.labels("failed").inc()
        log.error("reload failed, keeping the previous trust and registry: %s", exc)
        return f"reload failed: {exc}"
    state.certstore, state.registry, state.inventory = certstore, users, inventory
    state.metrics.reloads.labels("ok").inc()
    message = (
        f"reloaded: {len(users)} users, {len(inventory)} devices, "
        f"{len(certstore.skipped)} certificate files skipped"
    )
    log.info(message)
    return message
