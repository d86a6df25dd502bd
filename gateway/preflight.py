"""What start-up loads before it binds a port, shared by `duisgw serve` and
`duisgw config check`, so both refuse a bad configuration with the same words.

Everything here reads the operator's files and nothing writes: the state, the
threshold rules file and the TLS context. Failures are `StartupError`s with one
line naming the file or key.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from gateway.assemble import StartupError, build_state, read_threshold_rules
from gateway.clock import Clock
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.state import GatewayState
from gateway.tls import server_context
from thresholds.config import ThresholdConfigError

PROBE_BACKLOG = 1  # a port probe only needs listen() to succeed


@dataclass(frozen=True)
class Loaded:
    state: GatewayState
    rules_raw: bytes | None  # the thresholds.rules_file's bytes, checked to decode
    tls: ssl.SSLContext | None


def load_startup(config: Config, clock: Clock, metrics: Metrics) -> Loaded:
    """Trust, signing key, registry, catalogues, XSDs, threshold rules, TLS: or why not."""
    try:
        state = build_state(config, clock, metrics)
        rules_raw = read_threshold_rules(config)
    except (OSError, ValueError, ThresholdConfigError) as exc:
        raise StartupError(str(exc)) from None
    return Loaded(state, rules_raw, load_tls_context(config))


def load_tls_context(config: Config) -> ssl.SSLContext | None:
    tls = config.tls
    if tls is None:
        return None
    try:
        return server_context(tls)
    except OSError as exc:  # ssl.SSLError is one: a key that does not match, a bad PEM
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"tls: cannot load {tls.certificate} / {tls.private_key} / {tls.client_ca}: {reason}"
        ) from None


def cannot_listen(host: str, port: int, exc: OSError) -> StartupError:
    return StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def probe_listen(host: str, port: int) -> None:
    """Bind and listen as the daemon would, then let go; `cannot_listen` if it cannot.

    Port 0 (any free port) always can.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(PROBE_BACKLOG)
        except OSError as exc:
            raise cannot_listen(host, port, exc) from None
