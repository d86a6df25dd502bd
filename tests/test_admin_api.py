"""The admin listener through real sockets: the token, the Host check, body types, and
hostile input answered 400 with the reason while the gateway goes on serving."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import msgspec
import pytest

from gateway.edge.admin_auth import exposure_warning
from tests.harness import Gateway, default_config, response_code, running_gateway

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
RULES = """
[[rules]]
user_id = "*"
srv = "8.2"
window_seconds = 3600
limit = 1000
kind = "user_quarantine"
"""
TOML = {"content-type": "application/toml"}

# Every route that reads or changes operator state: (method, path).
PROTECTED = [
    ("GET", "/admin/status"),
    ("GET", "/admin/quarantine"),
    ("GET", "/admin/quarantine/1"),
    ("GET", "/admin/quarantine/count"),
    ("POST", "/admin/quarantine/1/release"),
    ("POST", "/admin/quarantine/1/delete"),
    ("POST", "/admin/reload"),
    ("GET", "/admin/thresholds"),
    ("PUT", "/admin/thresholds"),
    ("GET", "/admin/outbox/pending"),
    ("GET", "/admin/outbox/dead-letters"),
    ("POST", "/admin/outbox/dead-letters/x/retry"),
    ("POST", "/admin/outbox/dead-letters/x/discard"),
    ("GET", "/admin/traffic"),
    ("GET", "/admin/trust/certificates"),
    ("GET", "/admin/trust/signers"),
    ("GET", "/inbox"),
    ("POST", "/inbox/90-B3-D5-1F-30-01-00-00"),
]


def with_rules(tmp_path: Path) -> msgspec.Struct:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    config = default_config(tmp_path)
    return msgspec.structs.replace(
        config, thresholds=msgspec.structs.replace(config.thresholds, rules_file=str(rules))
    )


async def test_every_state_route_needs_the_token(tmp_path: Path) -> None:
    async with running_gateway(with_rules(tmp_path), [tmp_path / "pki"]) as gw:
        for method, path in PROTECTED:
            for headers in ({}, {"authorization": "Bearer " + "A" * 43}):
                # An empty TOML body once removed every rule; now it is refused first.
                answer = await gw.client.request(
                    method, gw.admin_url + path, content=b"", headers={**TOML, **headers}
                )
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert "error" in answer.json()
        rules = (await gw.admin.get("/admin/thresholds")).json()["rules"]
        assert len(rules) == 1  # still in force
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await gw.client.get(gw.admin_url + path)).status_code == 200
        metrics = (await gw.client.get(gw.admin_url + "/metrics")).text
        assert f'duisgw_admin_refusals_total{{reason="missing_token"}} {len(PROTECTED)}.0' in (
            metrics
        )
        assert f'duisgw_admin_refusals_total{{reason="wrong_token"}} {len(PROTECTED)}.0' in (
            metrics
        )


async def test_state_changes_take_json_or_toml_never_browser_simple_bodies(
    tmp_path: Path,
) -> None:
    async with running_gateway(with_rules(tmp_path), [tmp_path / "pki"]) as gw:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            delete = await gw.admin.post(
                "/admin/quarantine/1/delete", content=b"x", headers={"content-type": content_type}
            )
            assert delete.status_code == 415, delete.text
            put = await gw.admin.put(
                "/admin/thresholds", content=b"", headers={"content-type": content_type}
            )
            assert put.status_code == 415
        untyped = await gw.admin.put("/admin/thresholds", content=b"")
        assert untyped.status_code == 415 and "application/toml" in untyped.json()["error"]
        assert len((await gw.admin.get("/admin/thresholds")).json()["rules"]) == 1
        emptied = await gw.admin.put("/admin/thresholds", content=b"", headers=TOML)
        assert emptied.status_code == 200 and emptied.json()["rules"] == 0


async def test_host_must_name_this_listener(tmp_path: Path) -> None:
    """A page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) is refused."""
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        port = gw.addresses.admin[1]
        for host in ("rebound.attacker.example", f"rebound.attacker.example:{port}", "127.0.0.1"):
            answer = await gw.admin.get("/admin/status", headers={"host": host})
            assert answer.status_code == 421, (host, answer.text)
            health = await gw.client.get(gw.admin_url + "/healthz", headers={"host": host})
            assert health.status_code == 421
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            answer = await gw.admin.get("/admin/status", headers={"host": host})
            assert answer.status_code == 200, (host, answer.text)


async def test_allowed_hosts_name_the_listener_too(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    config = msgspec.structs.replace(
        config, admin=msgspec.structs.replace(config.admin, allowed_hosts=("gw1.mgmt.example",))
    )
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        port = gw.addresses.admin[1]
        named = await gw.admin.get("/admin/status", headers={"host": f"gw1.mgmt.example:{port}"})
        assert named.status_code == 200
        other = await gw.admin.get("/admin/status", headers={"host": f"gw2.mgmt.example:{port}"})
        assert other.status_code == 421


# The requests that ended the process, and their relatives.
HOSTILE = [
    ("GET", "/admin/quarantine/99999999999999999999999", "QuarantineEventRef"),
    ("GET", "/admin/quarantine?min_age_seconds=1e999", "min_age_seconds"),
    ("GET", "/admin/quarantine?min_age_seconds=1e300", "min_age_seconds"),
    ("GET", "/admin/quarantine?min_age_seconds=nan", "min_age_seconds"),
    ("GET", "/admin/quarantine?min_age_seconds=-1", "min_age_seconds"),
    ("POST", "/admin/quarantine/99999999999999999999999/release", "QuarantineEventRef"),
    ("POST", "/admin/quarantine/-99999999999999999999999/delete", "QuarantineEventRef"),
    ("GET", "/admin/quarantine/abc", "QuarantineEventRef"),
    ("GET", "/admin/quarantine?state=gone", "state"),
    ("GET", "/admin/quarantine?bogus=1", "bogus"),
    ("GET", "/admin/quarantine?state=held&state=deleted", "state"),
    ("GET", "/admin/quarantine?user_id=someone", "user_id"),
    ("GET", "/admin/quarantine?after_ref=99999999999999999999", "after_ref"),
    ("GET", "/admin/quarantine?limit=0", "limit"),
    ("GET", "/admin/outbox/pending?user_id=x", "user_id"),
    ("GET", "/admin/status?verbose=1", "verbose"),
    ("GET", "/inbox?user=x", "user"),
]


async def test_hostile_admin_input_is_answered_400_and_serving_goes_on(
    tmp_path: Path, shared_dir: Path
) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        for method, path, named in HOSTILE:
            answer = await gw.admin.request(method, path)
            assert answer.status_code == 400, (path, answer.text)
            assert named in answer.json()["error"], (path, answer.text)
        assert (await gw.admin.get("/admin/quarantine?min_age_seconds=0&limit=5")).json() == []
        missing = await gw.admin.get("/admin/quarantine/9223372036854775807")
        assert missing.status_code == 404
        await assert_serving(gw, shared_dir)


async def assert_serving(gw: Gateway, shared_dir: Path) -> None:
    assert (await gw.client.get(gw.admin_url + "/readyz")).status_code == 200
    ack = await gw.send((shared_dir / INVENTORY).read_bytes())
    assert response_code(ack.content) == "I0"


async def test_status_names_files_without_absolute_paths(tmp_path: Path) -> None:
    config = default_config(tmp_path)  # makes the PKI
    (tmp_path / "pki" / "broken.cert.pem").write_text("not a certificate\n")
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        status = await gw.admin.get("/admin/status")
        assert status.status_code == 200
        skipped = status.json()["certificates_skipped"]
        assert {"pki/broken.cert.pem"} <= {s["file"] for s in skipped}
        assert str(tmp_path) not in status.text
        assert not any(s["file"].startswith("/") for s in skipped)


async def test_token_file_can_live_elsewhere(tmp_path: Path) -> None:
    token_file = tmp_path / "ops.token"
    config = default_config(tmp_path / "state")
    config = msgspec.structs.replace(
        config, admin=msgspec.structs.replace(config.admin, token_file=str(token_file))
    )
    async with running_gateway(config, [tmp_path / "state" / "pki"]) as gw:
        assert token_file.read_text().strip() == gw.admin_token
        assert not (tmp_path / "state" / "admin.token").exists()
        assert (await gw.admin.get("/admin/status")).status_code == 200
        async with httpx.AsyncClient() as other:
            assert (await other.get(gw.admin_url + "/admin/status")).status_code == 401


async def test_admin_on_every_address_still_needs_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = default_config(tmp_path)
    config = msgspec.structs.replace(
        config, admin=msgspec.structs.replace(config.admin, host="0.0.0.0")
    )
    with caplog.at_level(logging.WARNING, logger="duisgw"):
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            assert (await gw.client.get(gw.admin_url + "/admin/status")).status_code == 401
            assert (await gw.admin.get("/admin/status")).status_code == 200
    assert "admin listener on 0.0.0.0" in caplog.text
    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("localhost") is None
    assert exposure_warning("10.0.0.5") is not None
