"""What the operator console stands on, through real sockets: its files (open, GET only,
with a strict policy), the traffic and trust views, and audited release and delete."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio

from gateway.cli import main
from gateway.core.config import Config, DeliveryConfig
from gateway.devkit.estate import DCC_EUI64 as DCC
from gateway.edge.console_files import CONSOLE_FILES
from tests.harness import Gateway, default_config, response_code, running_gateway
from tests.receiver import Receiver
from tests.test_lifecycle_e2e import config_with_receiver
from tests.test_quarantine_e2e import wait_for

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
LOAD_CONTROLLER = "90-B3-D5-1F-30-01-00-08"
HOLD_AFTER_ONE = """
[[rules]]
user_id = "*"
srv = "4.1.1"
window_seconds = 3600
limit = 1
kind = "user_quarantine"
"""
JSON = {"content-type": "application/json"}
DEAD_LETTER_TIMEOUT_SECONDS = 20.0


async def dead_letters_after_a_read(gw: Gateway, shared: Path) -> list[dict[str, Any]]:
    """Send one read whose answer the User's endpoint refuses; the dead letters then."""
    await gw.send((shared / ECS17B).read_bytes())
    with trio.fail_after(DEAD_LETTER_TIMEOUT_SECONDS):
        while not (dead := (await gw.admin.get("/admin/outbox/dead-letters")).json()):
            await trio.sleep(0.02)
    return list(dead)


def with_rules(config: Config, tmp_path: Path) -> Config:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOLD_AFTER_ONE)
    return msgspec.structs.replace(
        config, thresholds=msgspec.structs.replace(config.thresholds, rules_file=str(rules))
    )


async def test_console_files_are_open_to_get_with_a_strict_policy(tmp_path: Path) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        page = await gw.client.get(gw.admin_url + "/console/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-frame-options"] == "DENY"
        assert b'<script type="module" src="console.js">' in page.content
        assert b"<script>" not in page.content  # no inline script for the policy to forbid
        for name, content_type in CONSOLE_FILES.items():
            each = await gw.client.get(gw.admin_url + "/console/" + name)
            assert each.status_code == 200, name
            assert each.headers["content-type"].encode() == content_type
            assert each.headers["content-security-policy"] == policy
        bare = await gw.client.get(gw.admin_url + "/console")
        assert (bare.status_code, bare.headers["location"]) == (308, "/console/")
        # Writing needs the token; with it, the files are still read-only.
        assert (await gw.client.post(gw.admin_url + "/console/")).status_code == 401
        assert (await gw.admin.post("/console/")).status_code == 405
        assert (await gw.client.get(gw.admin_url + "/console/x.js")).status_code == 401
        assert (await gw.admin.get("/console/x.js")).status_code == 404


async def test_traffic_view_counts_what_metrics_count(tmp_path: Path, shared_dir: Path) -> None:
    config = with_rules(default_config(tmp_path), tmp_path)
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        empty = (await gw.admin.get("/admin/traffic")).json()
        assert empty["traffic"]["requests"] == [] and empty["quarantine_held"] == 0
        inventory = (shared_dir / INVENTORY).read_bytes()
        for _ in range(3):
            assert response_code((await gw.send(inventory)).content) == "I0"
        unsigned = await gw.post("/api/v1/serviceD", inventory)  # the template's own signature
        assert unsigned.status_code == 403
        read = (shared_dir / ECS17B).read_bytes()
        for _ in range(2):  # the second is held
            assert response_code((await gw.send(read)).content) == "I99"
        view = (await gw.admin.get("/admin/traffic")).json()
        requests = {
            (c["labels"]["version"], c["labels"]["outcome"]): c["count"]
            for c in view["traffic"]["requests"]
        }
        assert requests == {("5.4", "I0"): 3.0, ("5.4", "I99"): 2.0}
        [refusal] = view["traffic"]["refusals"]
        assert refusal["labels"]["stage"] == "signature" and refusal["count"] == 1.0
        [held] = view["traffic"]["quarantined"]
        assert held == {"labels": {"breach": "ADUserThresholdBreach"}, "count": 1.0}
        assert view["quarantine_held"] == 1
        buckets = view["traffic"]["latency_buckets"]
        assert buckets[-1]["le"] is None  # +Inf, which JSON cannot write as a number
        assert buckets[-1]["count"] == view["traffic"]["latency_count"] == 6.0
        assert view["traffic"]["monotonic_seconds"] >= empty["traffic"]["monotonic_seconds"]
        count = (await gw.admin.get("/admin/quarantine/count")).json()
        assert count == {"state": "held", "count": 1}
        refused = await gw.admin.get("/admin/traffic?window=1")
        assert refused.status_code == 400 and "unknown query parameter" in refused.text


async def test_trust_views_name_each_users_signer_per_version(tmp_path: Path) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        certificates = (await gw.admin.get("/admin/trust/certificates")).json()
        status = (await gw.admin.get("/admin/status")).json()
        assert len(certificates) == status["certificates"]
        signing = [
            c for c in certificates if c["subject_eui64"] == SUPPLIER and c["role_code"] == "87"
        ]
        assert len(signing) == 1 and signing[0]["validity"] == "valid"
        assert signing[0]["serial"].isdigit()  # text: 128-bit serials overflow JSON numbers
        signers = {u["user_id"]: u for u in (await gw.admin.get("/admin/trust/signers")).json()}
        versions = [v["version"] for v in signers[SUPPLIER]["versions"]]
        assert versions == status["versions"]
        assert not signers[SUPPLIER]["missing_signer"]
        # The load controller's OU 08 may not sign under 5.0's rule (02, 03, 7F): it
        # signs 5.0 with its OU 7F role certificate, later versions with OU 87.
        controller = {v["version"]: v for v in signers[LOAD_CONTROLLER]["versions"]}
        assert controller["5.0"]["usable"] and controller["5.0"]["role_code"] == "7F"
        assert controller["5.4"]["role_code"] == "87"
        # The DCC originates requests ([duis.dcc_originated]): OU 89, whatever the version.
        dcc = signers[DCC]
        assert dcc["roles"] == [] and [v["version"] for v in dcc["versions"]] == versions
        assert dcc["dcc_originated"]["usable"] and dcc["dcc_originated"]["role_code"] == "89"
        assert not dcc["missing_signer"]
        assert signers[SUPPLIER]["dcc_originated"] is None
        missing = (await gw.admin.get("/admin/trust/signers?missing=true")).json()
        assert missing == [] == status["users_without_signer"]
        bad = await gw.admin.get("/admin/trust/signers?missing=<b>yes</b>")
        assert bad.status_code == 400 and "missing must be true or false" in bad.text


async def test_release_and_delete_reasons_are_audited_and_shown(
    tmp_path: Path, shared_dir: Path
) -> None:
    receiver = Receiver()
    read = (shared_dir / ECS17B).read_bytes()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = with_rules(config_with_receiver(tmp_path, port), tmp_path)
        config = msgspec.structs.replace(
            config, delivery=DeliveryConfig(backoff_base_seconds=0.02, backoff_cap_seconds=0.1)
        )
        key_dirs = [tmp_path / "pki"]
        async with running_gateway(config, key_dirs) as gw:
            for _ in range(4):  # one answered, three held
                await gw.send(read)
            held = [h["event_ref"] for h in (await gw.admin.get("/admin/quarantine")).json()]
            assert len(held) == 3
            first, second, third = held
            release = await gw.admin.post(
                f"/admin/quarantine/{first}/release", json={"reason": "planned campaign"}
            )
            assert release.status_code == 200 and release.json()["answered"] == "I99"
            delete = await gw.admin.post(
                f"/admin/quarantine/{second}/delete", json={"reason": "<img src=x> duplicate"}
            )
            assert delete.status_code == 200
            # Bodies are checked before anything changes.
            for body, headers in (
                (b'{"reason": 5}', JSON),
                (b'{"reason": "x", "by": "someone else"}', JSON),
                (b'["reason"]', JSON),
                (b"{", JSON),
                (msgspec.json.encode({"reason": "x" * 1001}), JSON),
                (b'{"reason": "x"}', {"content-type": "application/xml"}),
            ):
                refused = await gw.admin.post(
                    f"/admin/quarantine/{third}/delete", content=body, headers=headers
                )
                assert refused.status_code == 400, (body, refused.text)
            text_plain = await gw.admin.post(
                f"/admin/quarantine/{third}/delete",
                content=b'{"reason": "x"}',
                headers={"content-type": "text/plain"},
            )
            assert text_plain.status_code == 415  # a browser-simple body never changes state
            # No body at all (as `duisgw quarantine delete` sends) is audited without a reason.
            assert (await gw.admin.post(f"/admin/quarantine/{third}/delete")).status_code == 200
            await wait_for(receiver, 6)  # I0, three AD1, the release's I0, and two E1

        async with running_gateway(config, key_dirs) as gw:  # the audit is durable
            shown = (await gw.admin.get(f"/admin/quarantine/{first}")).json()
            [decision] = shown["decisions"]
            assert (decision["action"], decision["reason"]) == ("release", "planned campaign")
            assert decision["by"].startswith("127.0.0.1:")
            header = shown["header"]
            assert header["command_variant"] == 1
            assert header["service_reference_variant"] == "4.1.1"
            assert header["request_id"] == shown["request_id"]
            assert "<sr:Request" in shown["request_xml"]
            deleted = (await gw.admin.get(f"/admin/quarantine/{second}")).json()
            assert [d["reason"] for d in deleted["decisions"]] == ["<img src=x> duplicate"]
            assert deleted["header"] is None and deleted["request_xml"] == ""  # bytes dropped
            silent = (await gw.admin.get(f"/admin/quarantine/{third}")).json()
            assert [d["reason"] for d in silent["decisions"]] == [""]
        nursery.cancel_scope.cancel()


async def test_dead_letters_filter_by_user_and_retry_takes_an_encoded_id(
    tmp_path: Path, shared_dir: Path
) -> None:
    gone = Receiver(status_for=lambda seen: 410)  # a 4xx: a dead letter at once
    async with trio.open_nursery() as nursery:
        port = await nursery.start(gone.serve)
        async with running_gateway(config_with_receiver(tmp_path, port), [tmp_path / "pki"]) as gw:
            dead = await dead_letters_after_a_read(gw, shared_dir)
            mine = await gw.admin.get(f"/admin/outbox/dead-letters?user_id={SUPPLIER}")
            assert [m["message_id"] for m in mine.json()] == [dead[0]["message_id"]]
            other = await gw.admin.get(f"/admin/outbox/dead-letters?user_id={LOAD_CONTROLLER}")
            assert other.json() == []
            encoded = httpx.URL(gw.admin_url).copy_with(
                raw_path=(
                    "/admin/outbox/dead-letters/"
                    + dead[0]["message_id"].replace(":", "%3A")
                    + "/retry"
                ).encode()
            )
            retried = await gw.admin.post(encoded)
            assert retried.status_code == 200
            assert retried.json() == {"retrying": dead[0]["message_id"]}
        nursery.cancel_scope.cancel()


async def test_a_dead_letter_discarded_is_gone_for_good(
    tmp_path: Path,
    shared_dir: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = Receiver(status_for=lambda seen: 410)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(gone.serve)
        async with running_gateway(config_with_receiver(tmp_path, port), [tmp_path / "pki"]) as gw:
            message_id = (await dead_letters_after_a_read(gw, shared_dir))[0]["message_id"]
            path = f"/admin/outbox/dead-letters/{message_id}/discard"
            not_json = await gw.admin.post(
                path, content=b"reason", headers={"content-type": "text/plain"}
            )
            assert not_json.status_code in (400, 415)  # never a browser-simple body
            assert len((await gw.admin.get("/admin/outbox/dead-letters")).json()) == 1
            monkeypatch.setenv("DUISGW_ADMIN_TOKEN", gw.admin_token)
            argv = ["outbox", "discard", message_id, "--reason", "endpoint retired"]
            with caplog.at_level(logging.INFO, logger="duisgw.admin"):
                assert await trio.to_thread.run_sync(main, [*argv, "--admin", gw.admin_url]) == 0
            assert json.loads(capsys.readouterr().out) == {"discarded": message_id}
            logged = [r.getMessage() for r in caplog.records if "discarded" in r.getMessage()]
            assert len(logged) == 1
            assert logged[0].startswith(f"dead letter {message_id} discarded by 127.0.0.1:")
            assert logged[0].endswith(": endpoint retired")
            assert (await gw.admin.get("/admin/outbox/dead-letters")).json() == []
            assert (await gw.admin.post(path)).status_code == 404
            retry = f"/admin/outbox/dead-letters/{message_id}/retry"
            assert (await gw.admin.post(retry)).status_code == 404
        nursery.cancel_scope.cancel()


async def test_the_cli_sends_a_reason_and_reads_the_trust_views(
    tmp_path: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = with_rules(default_config(tmp_path), tmp_path)
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        read = (shared_dir / ECS17B).read_bytes()
        for _ in range(2):
            await gw.send(read)
        [held] = (await gw.admin.get("/admin/quarantine")).json()
        monkeypatch.setenv("DUISGW_ADMIN_TOKEN", gw.admin_token)
        ref = str(held["event_ref"])
        argv = ["quarantine", "delete", ref, "--reason", "by hand", "--admin", gw.admin_url]
        assert await trio.to_thread.run_sync(main, argv) == 0
        capsys.readouterr()
        shown = (await gw.admin.get(f"/admin/quarantine/{ref}")).json()
        assert [d["reason"] for d in shown["decisions"]] == ["by hand"]
        # The embedded default's Users can all sign: --missing filters every one out.
        argv = ["trust", "signers", "--admin", gw.admin_url]
        assert await trio.to_thread.run_sync(main, argv) == 0
        every = json.loads(capsys.readouterr().out)
        assert LOAD_CONTROLLER in [u["user_id"] for u in every]
        assert await trio.to_thread.run_sync(main, [*argv[:2], "--missing", *argv[2:]]) == 0
        assert json.loads(capsys.readouterr().out) == []
        argv = ["trust", "certificates", "--admin", gw.admin_url]
        assert await trio.to_thread.run_sync(main, argv) == 0
        status = (await gw.admin.get("/admin/status")).json()
        assert len(json.loads(capsys.readouterr().out)) == status["certificates"]
