"""The operator console's static files, served by the admin listener at /console/.

The files (gateway/console/: HTML, CSS, ES modules) hold no data: the page asks
the operator for the admin token and calls the admin API with it as a header, so
these GETs are the only admin paths open without the token (gateway/admin_auth.py
opens exactly `CONSOLE_PATHS`, GET only). Every answer carries a strict
Content-Security-Policy (no inline script or style, nothing from another origin,
no framing), nosniff and no-referrer.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from gateway.edge.server import Answer, Headers

CONSOLE_PREFIX: Final = "/console/"
# File name -> content type. Only these are served: nothing else in the folder is reachable.
CONSOLE_FILES: Final = {
    "index.html": b"text/html; charset=utf-8",
    "console.css": b"text/css; charset=utf-8",
    "console.js": b"text/javascript; charset=utf-8",
    "api.js": b"text/javascript; charset=utf-8",
    "dom.js": b"text/javascript; charset=utf-8",
    "overview.js": b"text/javascript; charset=utf-8",
    "quarantine.js": b"text/javascript; charset=utf-8",
    "thresholds.js": b"text/javascript; charset=utf-8",
    "deliveries.js": b"text/javascript; charset=utf-8",
    "trust.js": b"text/javascript; charset=utf-8",
    "favicon.svg": b"image/svg+xml",
}
INDEX: Final = "index.html"
# The paths the admin guard lets through without the token (GET only).
CONSOLE_PATHS: Final = frozenset(
    {CONSOLE_PREFIX.rstrip("/"), CONSOLE_PREFIX} | {CONSOLE_PREFIX + name for name in CONSOLE_FILES}
)
CONTENT_SECURITY_POLICY: Final = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)
SECURITY_HEADERS: Final[Headers] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # The files change with the gateway's version; a stale script against a newer API
    # would be worse than a reload's few kilobytes.
    (b"cache-control", b"no-cache"),
)
TEXT: Final = b"text/plain; charset=utf-8"


class ConsoleFiles:
    """The console's files, read once from the package at start-up."""

    def __init__(self) -> None:
        folder = resources.files("gateway.edge") / "console"
        self._files = {name: (folder / name).read_bytes() for name in CONSOLE_FILES}

    def answer(self, method: str, path: str) -> Answer:
        """The answer to a request for `path` (its query already removed)."""
        if method != "GET":
            return 405, b"the console's files are read with GET\n", TEXT, SECURITY_HEADERS
        if path == CONSOLE_PREFIX.rstrip("/"):
            # Relative module paths in the page resolve against /console/.
            headers = (*SECURITY_HEADERS, (b"location", CONSOLE_PREFIX.encode()))
            return 308, b"", TEXT, headers
        name = path[len(CONSOLE_PREFIX) :] if path.startswith(CONSOLE_PREFIX) else ""
        name = name or INDEX
        if name not in self._files:
            return 404, b"no such console file\n", TEXT, SECURITY_HEADERS
        return 200, self._files[name], CONSOLE_FILES[name], SECURITY_HEADERS
