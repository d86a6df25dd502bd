"""The service manager's notify protocol (sd_notify(3)), sans-IO.

systemd (with `Type=notify`) passes `NOTIFY_SOCKET`, a datagram socket address: an
absolute path, or an abstract-namespace name written with a leading `@`. The daemon
sends newline-separated `KEY=VALUE` assignments to it: `READY=1` once it serves,
`RELOADING=1` (with `MONOTONIC_USEC=`, the CLOCK_MONOTONIC time of the start of the
reload) then `READY=1` around a reload, `STOPPING=1` when it begins to stop,
`WATCHDOG=1` at least every `WATCHDOG_USEC` when the unit sets `WatchdogSec=` (the
watchdog is ours only if `WATCHDOG_PID` is unset or names this process), and
`STATUS=` with one line for `systemctl status`.

This module reads the environment and builds and parses the datagrams; the sockets
are gateway/edge/service_notifier.py's (the daemon) and gateway/edge/worker_notify.py's (the
`--workers` supervisor, which listens on the same protocol for its workers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

NOTIFY_SOCKET: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC: Final = "WATCHDOG_USEC"
WATCHDOG_PID: Final = "WATCHDOG_PID"
# The kernel's limit on an AF_UNIX address (sun_path), terminating NUL included.
MAX_SOCKET_PATH_BYTES: Final = 108
# STATUS is shown on one line by `systemctl status`; longer is noise.
MAX_STATUS_CHARS: Final = 200
# The most a datagram from a worker may hold; systemd's own limit is larger, ours
# only needs a few assignments.
MAX_DATAGRAM_BYTES: Final = 4096
PING_FRACTION: Final = 0.5  # ping at half the watchdog interval, as sd_watchdog_enabled(3) advises

Fields = Mapping[str, str]


class NotifyConfigError(ValueError):
    """NOTIFY_SOCKET or WATCHDOG_USEC is set to something this daemon cannot use."""


def notify_address(environ: Mapping[str, str]) -> str | None:
    """Where to send, as `socket.sendto` takes it for AF_UNIX; None when unset.

    A leading `@` names an abstract-namespace socket: the kernel spells it with a
    leading NUL byte.
    """
    value = environ.get(NOTIFY_SOCKET, "")
    if not value:
        return None
    if value.startswith("@"):
        address = "\0" + value[1:]
    elif value.startswith("/"):
        address = value
    else:
        # vsock:CID:PORT (systemd 253+, for VMs) is not supported; say so rather than guess.
        raise NotifyConfigError(
            f"{NOTIFY_SOCKET}={value[:60]!r}: only an absolute path or @abstract name is supported"
        )
    if len(address.encode()) >= MAX_SOCKET_PATH_BYTES:
        raise NotifyConfigError(
            f"{NOTIFY_SOCKET} is longer than {MAX_SOCKET_PATH_BYTES - 1} bytes: {value[:60]!r}"
        )
    return address


def watchdog_seconds(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog interval the manager expects pings within; None when there is none
    (unset, zero, or meant for another process)."""
    text = environ.get(WATCHDOG_USEC, "")
    if not text:
        return None
    owner = environ.get(WATCHDOG_PID, "")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(text)
    except ValueError:
        raise NotifyConfigError(f"{WATCHDOG_USEC}={text[:30]!r} is not a number") from None
    if usec <= 0:
        return None
    return usec / 1_000_000


def ping_period(watchdog: float) -> float:
    """How often to send WATCHDOG=1 for an interval of `watchdog` seconds."""
    return watchdog * PING_FRACTION


def one_line(text: str) -> str:
    """A value safe in an assignment: no line breaks, bounded length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_STATUS_CHARS else flat[: MAX_STATUS_CHARS - 3] + "..."


def encode(fields: Fields) -> bytes:
    """The datagram for these assignments."""
    for key, value in fields.items():
        if not key or not key.isupper() or "=" in key or "\n" in value:
            raise ValueError(f"not a notify assignment: {key[:30]!r}")
    return "\n".join(f"{key}={value}" for key, value in fields.items()).encode()


def parse(datagram: bytes) -> dict[str, str]:
    """Assignments of a datagram; lines that are not `KEY=VALUE` are skipped."""
    fields: dict[str, str] = {}
    for line in datagram[:MAX_DATAGRAM_BYTES].decode("utf-8", "replace").split("\n"):
        key, equals, value = line.partition("=")
        if equals and key.isupper():
            fields[key] = value
    return fields


def ready(status: str | None = None) -> dict[str, str]:
    return _with_status({"READY": "1"}, status)


def reloading(monotonic_usec: int, status: str | None = None) -> dict[str, str]:
    return _with_status({"RELOADING": "1", "MONOTONIC_USEC": str(monotonic_usec)}, status)


def stopping(status: str | None = None) -> dict[str, str]:
    return _with_status({"STOPPING": "1"}, status)


def watchdog() -> dict[str, str]:
    return {"WATCHDOG": "1"}


def status(text: str) -> dict[str, str]:
    return {"STATUS": one_line(text)}


def _with_status(fields: dict[str, str], text: str | None) -> dict[str, str]:
    if text is not None:
        fields["STATUS"] = one_line(text)
    return fields


class StatusFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the one-line STATUS says about a running gateway."""

    phase: str  # "serving", "reloading", "draining"
    versions: tuple[str, ...]
    duis: tuple[str, int]
    requests: int  # answered with a DUIS response code
    refusals: int  # refused before a DUIS response (HTTP 4xx)
    outbox_pending: int
    in_flight: int = 0


def status_line(facts: StatusFacts) -> str:
    host, port = facts.duis
    line = (
        f"{facts.phase}: DUIS {' '.join(facts.versions) or '(no version served)'} "
        f"on {host}:{port}; {facts.requests} requests answered, {facts.refusals} refused; "
        f"outbox {facts.outbox_pending} pending"
    )
    if facts.phase == "draining":
        line += f"; {facts.in_flight} in flight"
    return one_line(line)
