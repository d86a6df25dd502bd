"""The gateway's live state: immutable snapshots behind attributes that reload swaps.

Request handling reads `state.certstore`, `state.registry`, `state.inventory`
once per stage; a reload builds complete new snapshots first and then assigns
them, so a request sees either the old set or the new one, never a mixture
within one lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.certstore import CertStore
from gateway.core.clock import Clock
from gateway.core.ingest import SchemaSet
from gateway.core.registry import Inventory, UserRegistry
from gateway.core.signing import sign_canonical_document
from gateway.core.versions import VersionRegistry
from gateway.edge.metrics import Metrics
from mmc.identifiers import Eui64


@dataclass(frozen=True)
class ResponseSigner:
    """The DCC XML-signing key (OU 89), loaded once at start-up."""

    private_key: ec.EllipticCurvePrivateKey
    issuer_name: str
    serial: int

    def sign(self, document: bytes) -> bytes:
        """Sign a document from mmc.responses (already canonical and compact)."""
        return sign_canonical_document(document, self.private_key, self.issuer_name, self.serial)


@dataclass
class GatewayState:
    clock: Clock
    versions: VersionRegistry
    schemas: SchemaSet | None
    certstore: CertStore
    registry: UserRegistry
    inventory: Inventory
    dcc_eui64: Eui64
    signer: ResponseSigner
    metrics: Metrics
    state_dir: Path
