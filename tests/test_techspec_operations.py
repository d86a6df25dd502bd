"""The operator's side of the techspec rules: the `[techspec]` files and their precedence
across restarts, the admin routes' input checks, the `duisgw techspec` commands, workers
sharing the store, and requests the rules refuse or cannot read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from gateway.cli import main
from gateway.compose import BoundAddresses, serve
from gateway.core.clock import FixedClock
from gateway.core.config import Config, StartupError, TechspecConfig
from gateway.core.techspec.alerts import WanAlertCodes
from gateway.devkit.default import ensure_default_state
from gateway.edge.admin_auth import admin_token_path, read_admin_token
from gateway.edge.metrics import Metrics
from tests.harness import Gateway, default_config, response_code, running_gateway
from tests.techspec_data import CONSULTATION, EXTENDED
from tests.techspec_gateway import (
    PKI_ISSUED,
    SUPPLIER,
    TOML,
    Answers,
    at,
    device,
    load,
    request,
    techspec_gateway,
)
from tests.test_techspec_install_leave_e2e import COVERAGE, no_wan_install

HUB = "00-DB-12-34-56-78-A1-02"
OLD_METER = "00-DB-12-34-56-78-A1-00"
SUPPLIER_2 = "90-B3-D5-1F-30-03-00-00"
# A hub both suppliers may act on (a change of supplier under way), and a SMETS v1.1
# meter whose Maintenance Validity Period the report follows.
INVENTORY = device(HUB, "CHF", "installed_not_commissioned", uprn=200000000001).replace(
    "}]",
    f'}}, {{ role = "IS", user_id = "{SUPPLIER_2}", effective_from = 2015-01-01T00:00:00Z }}]',
) + device(OLD_METER, "ESME", technical_specification="SMETS 1.1")
TABLES = "/admin/techspec/tables"
# SMETS v1.1 with an MVP that ends: the report lists the meter.
ENDING = CONSULTATION.replace(
    b"maintenance = { start = 2012-12-18 }",
    b"maintenance = { start = 2012-12-18, end = 2018-04-30 }",
)


async def revisions(gateway: Gateway) -> list[tuple[int, str]]:
    """(revision, who): the config key for a file, "admin" for the admin API."""
    audit = (await gateway.admin.get(f"{TABLES}/audit")).json()
    return [
        (row["revision"], row["actor"] if row["actor"].startswith("techspec.") else "admin")
        for row in audit
    ]


async def test_the_tables_file_is_put_in_force_when_it_changes_and_only_then(
    tmp_path: Path, shared_dir: Path
) -> None:
    """As for the threshold rules: a revision set through the admin API stays in force
    across restarts until the operator changes the file."""
    tables = tmp_path / "sec-a3.toml"
    tables.write_bytes(CONSULTATION)
    clock = FixedClock(at("01/03/18"))
    changes = {"techspec": TechspecConfig(tables_file=str(tables))}
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock, **changes) as gateway:
        assert await revisions(gateway) == [(1, "techspec.tables_file")]
        await load(gateway, "tables", ENDING, "MP999")
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock, **changes) as gateway:
        assert await revisions(gateway) == [(2, "admin"), (1, "techspec.tables_file")]
        shown = (await gateway.admin.get("/admin/techspec/report")).json()
        assert [row["device_id"] for row in shown] == [OLD_METER]  # revision 2 in force
    tables.write_bytes(EXTENDED)
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock, **changes) as gateway:
        assert (await revisions(gateway))[0] == (3, "techspec.tables_file")
        assert (await gateway.admin.get("/admin/techspec/report")).json() == []


async def test_a_tables_file_the_rules_cannot_read_stops_the_start(tmp_path: Path) -> None:
    tables = tmp_path / "sec-a3.toml"
    tables.write_bytes(CONSULTATION.replace(b'version = "2.0"', b'version = "two"'))
    config = default_config(tmp_path)
    config = msgspec.structs.replace(config, techspec=TechspecConfig(tables_file=str(tables)))
    with pytest.raises(StartupError, match=r"techspec.tables_file: .*sec-a3.toml"):
        await serve(config)
    codes = TechspecConfig(wan_available_alert=WanAlertCodes(dcc_alert_code="N0"))
    with pytest.raises(StartupError, match=r"DCCAlertCode 'N0' is not defined in DUIS 5\.0"):
        await serve(msgspec.structs.replace(config, techspec=codes))


async def test_the_admin_routes_check_their_input(tmp_path: Path, shared_dir: Path) -> None:
    clock = FixedClock(at("01/03/18"))
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock) as gateway:
        admin = gateway.admin
        assert (await admin.get("/admin/techspec/report?warn_within_days=soon")).status_code == 400
        assert (await admin.get("/admin/techspec/report?warn_within_days=99999")).status_code == 400
        assert (await admin.get("/admin/techspec/install-leave?x=1")).status_code == 400
        assert (await admin.get("/admin/techspec/install-leave/not-a-hub")).status_code == 400
        assert (await admin.get(f"/admin/techspec/install-leave/{HUB}")).status_code == 404
        close = f"/admin/techspec/install-leave/{HUB}/close"
        assert (await admin.post(close, params={"reason": "bored"})).status_code == 400
        assert (await admin.post(close)).status_code == 404
        # A PUT names its format; a file the rules cannot read changes nothing.
        no_type = await admin.put(TABLES, content=CONSULTATION)
        assert no_type.status_code == 415
        broken = await admin.put(TABLES, content=b"[[technical_specifications", headers=TOML)
        assert broken.status_code == 400 and "not valid TOML" in broken.json()["error"]
        assert (await admin.get(TABLES)).status_code == 404
        as_json = msgspec.json.encode(msgspec.toml.decode(COVERAGE))
        loaded = await admin.put(
            "/admin/techspec/coverage",
            content=as_json,
            headers={"content-type": "application/json"},
            params={"by": "alice", "reason": "weekly"},
        )
        assert loaded.status_code == 200, loaded.text
        shown = (await admin.get("/admin/techspec/coverage", params={"document": 1})).json()
        assert shown["format"] == "json" and shown["actor"].startswith("alice (127.0.0.1:")
        assert shown["document"] == as_json.decode()
        # Behind the token like every admin route.
        unauthenticated = await gateway.client.get(gateway.admin_url + TABLES)
        assert unauthenticated.status_code == 401


async def test_a_hub_another_supplier_left_without_wan_is_refused_not_a_crash(
    tmp_path: Path, shared_dir: Path
) -> None:
    clock = FixedClock(at("01/03/18"))
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock) as gateway:
        answers = Answers(shared_dir, tmp_path)
        code, _ = answers.response(await gateway.send(no_wan_install(HUB)))
        assert code == "I0"
        again, _ = answers.response(await gateway.send(no_wan_install(HUB)))
        assert again == "I0"  # the same supplier again: the clock runs on
        other, _ = answers.response(await gateway.send(no_wan_install(HUB), as_user=SUPPLIER_2))
        assert other == "E11"
        (row,) = (await gateway.admin.get("/admin/techspec/install-leave")).json()
        assert (row["user_id"], row["day"]) == (SUPPLIER, 1)


async def test_a_body_the_rules_cannot_read_is_acknowledged_with_e11(tmp_path: Path) -> None:
    """Without duis.xsd_dir nothing checks a 12.1 body before the rules read it."""
    ensure_default_state(tmp_path, PKI_ISSUED)
    config = default_config(tmp_path)
    clock = FixedClock(at("01/03/18"))
    bad = request("12.1", "<sr:RequestWANMatrix><sr:UPRN>12x4</sr:UPRN></sr:RequestWANMatrix>")
    async with running_gateway(config, [tmp_path / "pki"], clock=clock) as gateway:
        answered = await gateway.send(bad)
        assert answered.status_code == 200
        assert response_code(answered.content) == "E11"
        assert b"Signature" not in answered.content  # an acknowledgement


async def test_the_duisgw_techspec_commands(
    tmp_path: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables, coverage = tmp_path / "tables.toml", tmp_path / "coverage.toml"
    tables.write_bytes(ENDING)
    coverage.write_bytes(COVERAGE)
    clock = FixedClock(at("01/03/18"))
    async with techspec_gateway(tmp_path, shared_dir, INVENTORY, clock) as gateway:
        monkeypatch.setenv("DUISGW_ADMIN_TOKEN", gateway.admin_token)

        def cli(*argv: str) -> tuple[int, object]:
            code = main(["techspec", *argv, "--admin", gateway.admin_url])
            out = capsys.readouterr().out
            return code, json.loads(out) if out.startswith(("{", "[")) else out

        set_tables = ("tables", "set", str(tables), "--reason", "MP999", "--by", "bob")
        code, loaded = await trio.to_thread.run_sync(cli, *set_tables)
        assert code == 0 and loaded == {
            "revision": 1,
            "summary": "3 versions",
            "warnings": [],
            "hubs_reached": 0,
            "alerts_sent": 0,
        }
        code, shown = await trio.to_thread.run_sync(cli, "tables", "show")
        assert code == 0 and isinstance(shown, dict) and shown["reason"] == "MP999"
        assert shown["actor"].startswith("bob (")
        code, audit = await trio.to_thread.run_sync(cli, "tables", "audit")
        assert code == 0 and [r["revision"] for r in audit] == [1]  # type: ignore[union-attr]
        code, rows = await trio.to_thread.run_sync(cli, "report", "--warn-within-days", "90")
        assert code == 0 and rows == [
            {
                "device_id": OLD_METER,
                "device_type": "ESME",
                "version": "SMETS v1.1",
                "standing": "deadline_near",
                "maintenance_end": "2018-04-30",
                "days_left": 60,
                "superseded_by": None,
            }
        ]
        code, _ = await trio.to_thread.run_sync(cli, "coverage", "set", str(coverage))
        assert code == 0
        await gateway.send(no_wan_install(HUB))
        code, cases = await trio.to_thread.run_sync(cli, "install-leave", "list")
        assert code == 0 and [c["hub_id"] for c in cases] == [HUB]  # type: ignore[union-attr]
        code, case = await trio.to_thread.run_sync(cli, "install-leave", "show", HUB)
        assert code == 0 and case["case"]["kind"] == "reactive"  # type: ignore[index]
        code, closed = await trio.to_thread.run_sync(
            cli, "install-leave", "close", HUB, "--reason", "hub_returned"
        )
        assert code == 0 and closed == {"hub_id": HUB, "state": "closed"}
        code, _ = await trio.to_thread.run_sync(cli, "install-leave", "close", HUB)
        assert code == 1  # closed already: 409
        code, _ = await trio.to_thread.run_sync(cli, "tables", "set", str(tmp_path / "none"))
        assert code == 2
    assert main(["techspec", "tables", "example"]) == 0  # offline: the shipped fixture
    assert capsys.readouterr().out == CONSULTATION.decode()


@asynccontextmanager
async def worker(config: Config, index: int, clock: FixedClock) -> AsyncIterator[str]:
    """One of two workers of `duisgw serve --workers 2`, in this process: its admin URL."""
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[BoundAddresses]) -> None:
            await serve(
                config, clock=clock, metrics=Metrics(), worker=(index, 2), task_status=task_status
            )

        addresses = await nursery.start(run)
        yield f"http://127.0.0.1:{addresses.admin[1]}"
        nursery.cancel_scope.cancel()


async def test_workers_put_in_force_what_another_worker_loaded(tmp_path: Path) -> None:
    ensure_default_state(tmp_path, PKI_ISSUED)
    (tmp_path / "inventory.toml").write_text(INVENTORY)
    config = default_config(tmp_path)
    config = msgspec.structs.replace(config, techspec=TechspecConfig(refresh_seconds=0.05))
    clock = FixedClock(at("01/03/18"))
    async with worker(config, 0, clock) as first, worker(config, 1, clock) as second:
        token = read_admin_token(admin_token_path(config))  # written by the first to start
        client = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"})
        put = await client.put(first + TABLES, content=ENDING, headers=TOML)
        assert put.status_code == 200
        # The report reads the tables a worker has in force: the second picks them up.
        with trio.fail_after(10):
            while not (await client.get(second + "/admin/techspec/report")).json():
                await trio.sleep(0.02)
        await client.aclose()
