"""The admin credential and the Host check on their own (sans-IO), and the token file."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from gateway.edge.admin_auth import (
    MIN_TOKEN_CHARS,
    AdminGuard,
    AdminTokenError,
    ensure_admin_token,
    read_admin_token,
)
from gateway.edge.http import HttpRequest

TOKEN = "t" * 43
PORT = 8080


def request(
    target: str = "/admin/status",
    *,
    method: str = "GET",
    host: str | None = f"127.0.0.1:{PORT}",
    authorization: str | None = f"Bearer {TOKEN}",
    content_type: str | None = None,
) -> HttpRequest:
    headers = []
    if host is not None:
        headers.append((b"host", host.encode()))
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    return HttpRequest(method, target, tuple(headers), b"", True)


GUARD = AdminGuard(TOKEN, PORT, allowed_hosts=["gw1.mgmt.example"])


@pytest.mark.parametrize(
    "host",
    [
        f"127.0.0.1:{PORT}",
        f"localhost:{PORT}",
        f"LOCALHOST:{PORT}",
        f"[::1]:{PORT}",
        f"10.1.2.3:{PORT}",
        f"gw1.mgmt.example:{PORT}",
    ],
)
def test_hosts_naming_this_listener_pass(host: str) -> None:
    assert GUARD.check(request(host=host)) is None


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (f"evil.example:{PORT}", 421),  # DNS rebinding: the attacker's name
        ("127.0.0.1:8081", 421),  # another port
        ("127.0.0.1", 421),  # no port means 80
        (f"127.0.0.1:{PORT}x", 421),
        (None, 400),
    ],
)
def test_other_hosts_are_refused(host: str | None, status: int) -> None:
    refusal = GUARD.check(request(host=host))
    assert refusal is not None and refusal.status == status and refusal.reason == "host"


def test_http_1_0_may_omit_host_as_a_health_check_does() -> None:
    bare = HttpRequest("GET", "/healthz", (), b"", False, http_version="1.0")
    assert GUARD.check(bare) is None
    # ...but still needs the token anywhere else
    refusal = GUARD.check(HttpRequest("GET", "/admin/status", (), b"", False, http_version="1.0"))
    assert refusal is not None and refusal.status == 401


def test_two_host_headers_are_refused() -> None:
    twice = HttpRequest(
        "GET", "/healthz", ((b"host", b"127.0.0.1:8080"), (b"host", b"evil.example")), b"", True
    )
    refusal = GUARD.check(twice)
    assert refusal is not None and refusal.status == 400


def test_token_is_required_except_on_health_and_metrics() -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/metrics?x=1"):
        assert GUARD.check(request(path, authorization=None)) is None
    for path in ("/admin/status", "/inbox", "/admin/quarantine", "/healthz/../admin/status"):
        missing = GUARD.check(request(path, authorization=None))
        assert missing is not None and (missing.status, missing.reason) == (401, "missing_token")
    wrong = GUARD.check(request(authorization="Bearer " + "x" * 43))
    assert wrong is not None and (wrong.status, wrong.reason) == (401, "wrong_token")
    basic = GUARD.check(request(authorization=f"Basic {TOKEN}"))
    assert basic is not None and basic.status == 401
    assert GUARD.check(request(authorization=f"bearer {TOKEN}")) is None


def test_only_gets_of_the_console_files_are_open() -> None:
    for path in ("/console", "/console/", "/console/index.html", "/console/console.js"):
        assert GUARD.check(request(path, authorization=None)) is None
    # Other methods, files the console does not have, and paths that only start like
    # the console's all need the token.
    refused = [
        request("/console/", method="POST", authorization=None),
        request("/console/", method="HEAD", authorization=None),
        request("/console/secrets.txt", authorization=None),
        request("/console/../admin/status", authorization=None),
        request("/console/index.html/../../admin/status", authorization=None),
        request("/consolex", authorization=None),
    ]
    for each in refused:
        refusal = GUARD.check(each)
        assert refusal is not None and refusal.status == 401, each.target
    # The Host check comes first, for the console too (DNS rebinding).
    rebound = GUARD.check(request("/console/", host=f"evil.example:{PORT}", authorization=None))
    assert rebound is not None and rebound.status == 421


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_browser_simple_bodies_cannot_change_state(content_type: str) -> None:
    refusal = GUARD.check(
        request("/admin/quarantine/1/delete", method="POST", content_type=content_type)
    )
    assert refusal is not None and (refusal.status, refusal.reason) == (415, "content_type")
    # Reading is not changing state.
    assert GUARD.check(request(content_type=content_type)) is None


def test_token_file_is_generated_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    token = ensure_admin_token(path)
    assert len(token) >= MIN_TOKEN_CHARS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_token(path) == token == read_admin_token(path)
    assert [p.name for p in tmp_path.iterdir()] == ["admin.token"]  # no temporary left


def test_concurrent_first_starts_agree_on_one_token(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda: tokens.append(ensure_admin_token(path))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 8 and len(set(tokens)) == 1


def test_unusable_token_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(AdminTokenError, match="at least 32 characters"):
        read_admin_token(path)
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with pytest.raises(AdminTokenError, match="open to other users"):
        read_admin_token(path)
    with pytest.raises(AdminTokenError, match="cannot read"):
        read_admin_token(tmp_path / "missing.token")
