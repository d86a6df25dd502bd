"""The decoders' error: a payload that is malformed or not what its message code
promises is the device's fault (exit 1 in `duisgw pc parse`, never a crash)."""

from __future__ import annotations

from parse_correlate.gbcs_bytes import GbcsError


class DecodeError(GbcsError):
    """The payload does not decode as its use case defines it."""


class ProtectedDataError(DecodeError):
    """Encrypted content does not authenticate with the keys supplied."""
