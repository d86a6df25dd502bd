"""One Parse and Correlate handler set per DUIS version (SEC consultation ¶105-106, ¶128:
each DUIS version has its own MMC and P&C version, and a request is interpreted under the
version it was submitted with).

The versions share the GBCS framing and correlation rules; they differ in the MMC output
schema they must satisfy, which mmc_output renders per version.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from parse_correlate import correlate as _correlate
from parse_correlate.gbcs import GbcsMessage
from parse_correlate.integrity import Credentials
from parse_correlate.mmc_output import (
    SUPPORTED_VERSIONS,
    MmcOutput,
    UnsupportedVersionError,
    parse_response,
    render_mmc_output,
)


@dataclass(frozen=True, slots=True)
class HandlerSet:
    """The P&C of one DUIS version. A plain frozen dataclass: it holds behaviour, not
    wire data, so it is no msgspec Struct."""

    version: str

    def parse_response(
        self, gbcs: bytes, credentials: Credentials | None = None, *, srv_hint: str | None = None
    ) -> bytes:
        """GBCS response or alert -> MMC output XML valid under this version's schema.
        With credentials, a MAC or signature that does not verify raises IntegrityError;
        the User's keys also decrypt protected values such as ECS17b registers."""
        return parse_response(gbcs, self.version, credentials, srv_hint=srv_hint)

    def render(
        self,
        message: GbcsMessage,
        raw: bytes,
        credentials: Credentials | None = None,
        *,
        srv_hint: str | None = None,
    ) -> MmcOutput:
        """As parse_response, for a message already framed; says what it could check."""
        return render_mmc_output(message, raw, self.version, credentials, srv_hint=srv_hint)

    def correlate(
        self, pre_command_gbcs: bytes, signed_pre_command_gbcs: bytes
    ) -> _correlate.CorrelationResult:
        return _correlate.correlate(pre_command_gbcs, signed_pre_command_gbcs)

    def verify_pre_command_signature(
        self, signed_gbcs: bytes, public_key: ec.EllipticCurvePublicKey
    ) -> None:
        _correlate.verify_pre_command_signature(signed_gbcs, public_key)


_HANDLERS = {version: HandlerSet(version) for version in SUPPORTED_VERSIONS}


def handlers_for(version: str) -> HandlerSet:
    """The handler set for a DUIS version ("5.0", "5.1", "5.3", "5.4")."""
    try:
        return _HANDLERS[version]
    except KeyError:
        raise UnsupportedVersionError(
            f"no Parse and Correlate for DUIS version {version!r};"
            f" served: {', '.join(SUPPORTED_VERSIONS)}"
        ) from None
