"""Device digital-signing certificates on disk (`[trust] device_certificate_dirs`).

GBCS device certificates carry no subject name (the device's EUI-64 is in the subject
alternative name), so they are found as the DCC's test keystore names them:
`<EUI-64 as 16 hex digits>-ds.pem`. Each is read with the strict reader every
certificate file goes through (gateway/stores/certfiles.py) and must hold a P-256
key. A file that does not is skipped and logged; the directory still loads.

What they are for: an 8.13 Return Local Command Response carries the device's own
response, and where the device signed it (general-signing), the gateway verifies
that signature before it turns the response into a Service Response
(gateway/core/local_commands.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.certstore import CertificateRefused
from gateway.stores.certfiles import read_certificate_file
from mmc.identifiers import Eui64, eui64_from_bytes

logger = logging.getLogger("gateway.certstore")

_DEVICE_FILE: Final = re.compile(r"([0-9A-Fa-f]{16})-ds\.pem\Z")

DeviceSigningKeys = Mapping[Eui64, ec.EllipticCurvePublicKey]


def load_device_signing_keys(dirs: Sequence[Path]) -> dict[Eui64, ec.EllipticCurvePublicKey]:
    """The P-256 signing key of every device with a certificate file in `dirs`."""
    keys: dict[Eui64, ec.EllipticCurvePublicKey] = {}
    for directory in dirs:
        for path in sorted(directory.iterdir()):
            match = _DEVICE_FILE.match(path.name)
            if match is None or not path.is_file():
                continue
            try:
                key = read_certificate_file(path).public_key()
            except (CertificateRefused, OSError, ValueError) as exc:
                logger.warning("device certificate %s skipped: %s", path, exc)
                continue
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
                key.curve, ec.SECP256R1
            ):
                logger.warning("device certificate %s skipped: not a P-256 key", path)
                continue
            keys[eui64_from_bytes(bytes.fromhex(match.group(1)))] = key
    if dirs:
        logger.info("device certificates: %d signing keys", len(keys))
    return keys
