"""Who may use the admin listener: a bearer token the operator controls, and a Host check.

The token is generated into the state directory on first start (`admin.token`,
0600; `admin.token_file` points elsewhere) and is required as
`Authorization: Bearer <token>` on every route but /healthz, /readyz, /metrics and
GETs of the operator console's static files (gateway/edge/console_files.py).
It is compared in constant time. Without it: 401 with `WWW-Authenticate: Bearer`.

The Host header must name this listener (an IP literal, `localhost`, or one of
`admin.allowed_hosts`, with the bound port), so a web page whose name an attacker
re-points at 127.0.0.1 (DNS rebinding) is refused with 421 before anything else.
State-changing requests with a body type a browser may send cross-origin without
a preflight (text/plain, forms) are refused with 415: with the token this is
defence in depth, and it keeps a "simple" cross-origin request from ever
changing state.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Literal

import msgspec

from gateway.core.config import Config
from gateway.core.log_fields import log_event
from gateway.edge.console_files import CONSOLE_PATHS
from gateway.edge.http import HttpRequest
from gateway.edge.metrics import Metrics
from gateway.edge.server import Answer, Handler, PeerInfo

log = logging.getLogger("duisgw.admin")

TOKEN_FILE_NAME: Final = "admin.token"
TOKEN_ENV: Final = "DUISGW_ADMIN_TOKEN"  # read by the duisgw CLI, never by the daemon
TOKEN_RANDOM_BYTES: Final = 32  # 256 bits: 43 URL-safe characters
MIN_TOKEN_CHARS: Final = 32
PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
STATE_CHANGING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Body types a browser sends cross-origin without a CORS preflight.
SIMPLE_BODY_TYPES: Final = frozenset(
    {b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"}
)
# RFC 6750 b64token; no whitespace, so a token survives a shell and a header.
_TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
_BEARER: Final = b"bearer "

RefusalReason = Literal["host", "missing_token", "wrong_token", "content_type"]


class AdminTokenError(Exception):
    """The token file is missing, unreadable, open to others or malformed."""


class AdminRefusal(msgspec.Struct, frozen=True):
    status: int
    reason: RefusalReason  # a metric label: a bounded set
    detail: str


def admin_token_path(config: Config) -> Path:
    """`admin.token_file`, else admin.token in the state directory."""
    if config.admin.token_file is not None:
        return Path(config.admin.token_file)
    return Path(config.state_dir) / TOKEN_FILE_NAME


def ensure_admin_token(path: Path) -> str:
    """The token in `path`, generated (0600) if the file does not exist yet."""
    if not path.exists():
        _generate(path)
    return read_admin_token(path)


def read_admin_token(path: Path) -> str:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII"
        raise AdminTokenError(f"cannot read the admin token {path}: {reason}") from None
    if mode & 0o007:
        raise AdminTokenError(
            f"the admin token {path} is open to other users (mode {mode:04o}): chmod 600 it"
        )
    if len(text) < MIN_TOKEN_CHARS or not _TOKEN.match(text):
        raise AdminTokenError(
            f"the admin token in {path} must be at least {MIN_TOKEN_CHARS} characters "
            "of A-Z a-z 0-9 - . _ ~ + / (delete the file to have a new one generated)"
        )
    return text


def _generate(path: Path) -> None:
    # Written whole under a private name, then linked into place: a worker starting
    # at the same moment sees no file or the complete one, and one token wins.
    token = secrets.token_urlsafe(TOKEN_RANDOM_BYTES)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
            log.info("generated the admin token in %s", path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)


class AdminGuard:
    """Sans-IO: is this request allowed on the admin listener? None, or why not."""

    def __init__(self, token: str, port: int, allowed_hosts: Iterable[str] = ()) -> None:
        self._token = token.encode("ascii")
        self._port = port
        self._names = frozenset({"localhost", *(h.lower() for h in allowed_hosts)})

    def check(self, request: HttpRequest) -> AdminRefusal | None:
        refusal = self._check_host(request)
        if refusal is not None:
            return refusal
        path = request.target.partition("?")[0]
        if path in PUBLIC_PATHS or (request.method == "GET" and path in CONSOLE_PATHS):
            return None  # the console's files hold no data: its script asks for the token
        refusal = self._check_token(request)
        if refusal is not None:
            return refusal
        return self._check_body_type(request)

    def _check_host(self, request: HttpRequest) -> AdminRefusal | None:
        values = [v for n, v in request.headers if n == b"host"]
        if not values and request.http_version == "1.0":
            # HTTP/1.0 has no Host (load balancers' health checks send none); browsers,
            # the DNS-rebinding threat, always send one.
            return None
        if len(values) != 1:
            return AdminRefusal(400, "host", "exactly one Host header is required")
        host, port = _split_host(values[0].decode("ascii", "replace").strip().lower())
        if port != (None if self._port == 80 else self._port) and port != self._port:
            return AdminRefusal(421, "host", f"Host port is not this listener's ({self._port})")
        if host not in self._names and not _is_ip_literal(host):
            return AdminRefusal(
                421, "host", f"Host {host[:60]!r} is not this listener (see admin.allowed_hosts)"
            )
        return None

    def _check_token(self, request: HttpRequest) -> AdminRefusal | None:
        value = request.header(b"authorization")
        if value is None or value[: len(_BEARER)].lower() != _BEARER:
            return AdminRefusal(
                401,
                "missing_token",
                "send Authorization: Bearer <token>; the token is admin.token in the "
                "gateway's state directory (duisgw commands read it)",
            )
        if not hmac.compare_digest(value[len(_BEARER) :].strip(), self._token):
            return AdminRefusal(401, "wrong_token", "the bearer token is not this gateway's")
        return None

    def _check_body_type(self, request: HttpRequest) -> AdminRefusal | None:
        if request.method not in STATE_CHANGING_METHODS:
            return None
        content_type = media_type(request)
        if content_type in SIMPLE_BODY_TYPES:
            return AdminRefusal(
                415,
                "content_type",
                f"{content_type.decode('ascii', 'replace')} is not accepted: admin bodies "
                "are application/json (application/toml for threshold rules)",
            )
        return None


def exposure_warning(host: str) -> str | None:
    """What to tell the operator when the admin listener is reachable off this host."""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        if host == "localhost":
            return None
    return (
        f"admin listener on {host}: the token is required on every route but /healthz, "
        "/readyz and /metrics, and it crosses the network in clear (plain HTTP): keep the "
        "admin port on a management network"
    )


class GuardedAdmin:
    """The admin listener's handler: the guard first, then the routes."""

    def __init__(self, guard: AdminGuard, routes: Handler, metrics: Metrics) -> None:
        self._guard = guard
        self._routes = routes
        self._metrics = metrics

    async def __call__(self, request: HttpRequest, peer: PeerInfo) -> Answer:
        refusal = self._guard.check(request)
        if refusal is None:
            return await self._routes(request, peer)
        self._metrics.admin_refusals.labels(refusal.reason).inc()
        log_event(
            log,
            logging.INFO,
            "admin refusal",
            "admin refusal %(status)d from %(peer)s: %(method)s %(path)s: %(detail)s",
            status=refusal.status,
            peer=peer.address,
            method=request.method,
            path=request.target[:100],
            reason=refusal.reason,
            detail=refusal.detail,
        )
        body = msgspec.json.encode({"error": refusal.detail})
        if refusal.status == 401:
            challenge = b'Bearer realm="duisgw-admin"'
            return refusal.status, body, b"application/json", ((b"www-authenticate", challenge),)
        return refusal.status, body, b"application/json"


def media_type(request: HttpRequest) -> bytes:
    """The Content-Type without parameters, lower-cased; b"" when absent."""
    return (request.header(b"content-type") or b"").split(b";", 1)[0].strip().lower()


def _split_host(value: str) -> tuple[str, int | None]:
    if value.startswith("["):  # [IPv6]:port
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
    else:
        host, colon, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if colon else None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or len(port_text) > 5:
        return host, -1  # never a bound port
    return host, int(port_text)


def _is_ip_literal(host: str) -> bool:
    # A rebinding page cannot make the browser send an IP literal as its Host.
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
