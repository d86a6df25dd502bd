"""Threshold rules set at run time, and the window counts, survive a restart.

Before: `PUT /admin/thresholds`, restart, and the rules were `[]` (anomaly detection
silently off) with every count back at zero. Now the rules in force and their audit
trail live in `thresholds.sqlite`, run-time rules win until the rules file changes,
and the in-process store's counts are saved every `counts_snapshot_seconds` and at
shutdown. The restart tests run a real `duisgw serve`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from bench.ports import free_ports
from bench.redis_process import RedisProcess
from gateway.cli import main
from gateway.core.config import SharedRedisConfig
from gateway.devkit.client import sign_request
from gateway.edge.workers import WorkerConfigError, check_worker_config
from gateway.stores.operator_files import load_config
from gateway.stores.redis_shared import open_shared_redis
from gateway.stores.threshold_memory import MemoryThresholdStore
from gateway.stores.threshold_sqlite import ThresholdStateStore, open_threshold_state
from gateway.stores.threshold_state_redis import open_redis_threshold_state
from tests.harness import default_config, next_counter, response_code, running_gateway
from tests.test_durability import start, write_config
from thresholds.config import ThresholdConfig, ThresholdRule
from thresholds.rules_state import NO_FILE, RulesRecord, choose_rules, file_sha256

USER = "90-B3-D5-1F-30-01-00-00"
INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
FILE_RULES = (
    b'[[rules]]\nuser_id = "*"\nsrv = "8.2"\nwindow_seconds = 3600\nlimit = 9\nkind = "warning"\n'
)
RUNTIME_RULES = (
    b'[[rules]]\nuser_id = "*"\nsrv = "8.2"\nwindow_seconds = 3600\nlimit = 2\n'
    b'kind = "user_quarantine"\n'
)


def runtime(file_raw: bytes | None, toml: bytes = RUNTIME_RULES) -> RulesRecord:
    return RulesRecord(
        source="admin", toml=toml, file_sha256=file_sha256(file_raw), set_at=NOW, set_by="ops"
    )


# ---------------------------------------------------------------- precedence (sans-IO)


def limits(file_raw: bytes | None, stored: RulesRecord | None, **kw: bool) -> list[int]:
    choice = choose_rules(file_raw, "rules.toml", stored, NOW, **kw)
    return [r.limit for r in choice.config.rules]


def test_run_time_rules_win_until_the_rules_file_changes() -> None:
    assert limits(FILE_RULES, None) == [9]
    assert limits(FILE_RULES, runtime(FILE_RULES)) == [2]  # file unchanged since
    assert limits(FILE_RULES + b"\n", runtime(FILE_RULES)) == [9]  # edited after: file wins
    assert limits(None, runtime(None)) == [2]  # no file then, none now
    assert limits(FILE_RULES, runtime(None)) == [9]  # a file added since
    assert limits(FILE_RULES, runtime(FILE_RULES), runtime_allowed=False) == [9]  # Redis
    unusable = runtime(FILE_RULES, b'[[attribute_limits]]\nsrv="1.1.1"\nattribute="prise"\nmax=1')
    assert limits(FILE_RULES, unusable) == [9]


def test_what_is_recorded_and_logged() -> None:
    first = choose_rules(FILE_RULES, "rules.toml", None, NOW)
    assert first.audit is not None and first.audit.note == "rules file loaded"
    assert (first.record.source, first.record.file_sha256) == ("file", file_sha256(FILE_RULES))
    again = choose_rules(FILE_RULES, "rules.toml", first.record, NOW)
    assert again.audit is None and not again.superseded  # nothing changed: nothing recorded
    kept = choose_rules(FILE_RULES, "rules.toml", runtime(FILE_RULES), NOW)
    assert kept.audit is None and kept.record.source == "admin"
    edited = choose_rules(b"# edited\n" + FILE_RULES, "rules.toml", runtime(FILE_RULES), NOW)
    assert edited.superseded and edited.audit is not None
    assert "rules file changed after the run-time rules" in edited.audit.note
    assert choose_rules(None, "-", None, NOW).record.file_sha256 == NO_FILE


# ---------------------------------------------------------------- counts as values


def test_saved_counts_restore_the_limit_in_a_new_store() -> None:
    rules = ThresholdConfig(
        rules=(
            ThresholdRule(
                user_id="*", srv="4.1.1", window_seconds=60, limit=3, kind="user_quarantine"
            ),
            # Above exact_limit_max: a bucketed counter.
            ThresholdRule(user_id="*", srv="*", window_seconds=600, limit=5000, kind="warning"),
        ),
        exact_limit_max=100,
    )
    before = MemoryThresholdStore(rules)
    for t in (0.0, 1.0, 2.0):
        assert before.check_and_count(USER, "4.1.1", t).action.value == "allow"
    live, gone = before.changed_counters(2.0)
    assert set(live) == {(USER, "4.1.1", 60), (USER, "*", 600)} and gone == []
    assert before.changed_counters(2.0) == ({}, [])  # only what changed since

    after = MemoryThresholdStore(rules)
    assert after.restore(live) == 2
    assert after.check_and_count(USER, "4.1.1", 3.0).action.value == "quarantine"
    assert after.check_and_count(USER, "4.1.1", 60.5).action.value == "allow"  # t=0 slid out
    # A window no rule uses any more is dropped: restored as nothing, deleted next.
    other = MemoryThresholdStore(ThresholdConfig(rules=rules.rules[:1], exact_limit_max=100))
    assert other.restore(live) == 1
    live_now, gone_now = other.changed_counters(3.0)
    assert (USER, "*", 600) in gone_now and (USER, "4.1.1", 60) in live_now
    # Counts that expired since are not saved again.
    assert other.changed_counters(500.0) == ({}, [])
    other.check_and_count(USER, "4.1.1", 500.0)
    assert list(other.changed_counters(500.0)[0]) == [(USER, "4.1.1", 60)]


@pytest.fixture(params=["sqlite", "redis"])
def open_state(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], AbstractAsyncContextManager[ThresholdStateStore]]:
    """The state store on one backend; opening it again is a new process (or node)."""
    if request.param == "sqlite":
        return lambda: open_threshold_state(tmp_path / "thresholds.sqlite")
    server: RedisProcess = request.getfixturevalue("redis_server")

    @asynccontextmanager
    async def on_redis() -> AsyncIterator[ThresholdStateStore]:
        settings = SharedRedisConfig(url=server.url, key_prefix="thresholds-test")
        async with (
            open_shared_redis(settings) as shared,
            open_redis_threshold_state(shared) as state,
        ):
            yield state

    return on_redis


async def test_the_state_store_keeps_rules_audit_and_counts(
    open_state: Callable[[], AbstractAsyncContextManager[ThresholdStateStore]],
) -> None:
    store = MemoryThresholdStore(
        ThresholdConfig(
            rules=(
                ThresholdRule(
                    user_id="*", srv="*", window_seconds=60, limit=1, kind="dcc_quarantine"
                ),
            )
        )
    )
    store.check_and_count(USER, "8.2", 10.0)
    async with open_state() as state:
        first = choose_rules(FILE_RULES, "rules.toml", None, NOW)
        assert first.audit is not None
        await state.replace_rules(first.record, first.audit)
        record = runtime(FILE_RULES)
        second = choose_rules(FILE_RULES, "rules.toml", record, NOW)
        assert second.audit is None
        await state.save_counts(*store.changed_counters(10.0))
    async with open_state() as state:  # a new process, same file (or another node)
        assert await state.load_rules() == first.record
        assert [e.note for e in await state.audit()] == ["rules file loaded"]
        restored = MemoryThresholdStore(store.config)
        assert restored.restore(await state.load_counts()) == 1
        assert restored.check_and_count(USER, "8.2", 11.0).action.value == "quarantine"
        await state.save_counts({}, [(USER, "*", 60)])
        assert await state.load_counts() == {}


def test_workers_refuse_run_time_rules_the_memory_store_would_count_per_process(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, 8079, 18080, 9, 0.001))
    check_worker_config(config, 2)  # nothing stored yet

    async def store_runtime_rules() -> None:
        async with open_threshold_state(tmp_path / "thresholds.sqlite") as state:
            record = runtime(None)
            choice = choose_rules(None, "-", record, NOW)
            assert choice.audit is None
            first = choose_rules(None, "-", None, NOW)
            assert first.audit is not None
            await state.replace_rules(record, first.audit)

    trio.run(store_runtime_rules)
    with pytest.raises(WorkerConfigError, match=r"run-time threshold rules set at .* by ops"):
        check_worker_config(config, 2)
    check_worker_config(config, 1)


# ---------------------------------------------------------------- a real `duisgw serve`


TOML = {"content-type": "application/toml"}


class Daemon:
    def __init__(self, tmp_path: Path, shared_dir: Path, extra: str = "") -> None:
        self.tmp_path = tmp_path
        self.duis, self.admin = free_ports(), free_ports()
        self.config = write_config(tmp_path, self.duis, self.admin, 9, 0.001)
        if extra:
            text = self.config.read_text().replace('store = "memory"', f'store = "memory"\n{extra}')
            self.config.write_text(text)
        self.xml = (shared_dir / INVENTORY).read_bytes()
        self.admin_url = f"http://127.0.0.1:{self.admin}"

    def admin_client(self) -> httpx.AsyncClient:
        """A client that sends the admin token the daemon made at its first start."""
        token = (self.tmp_path / "admin.token").read_text().strip()
        return httpx.AsyncClient(headers={"authorization": f"Bearer {token}"})

    async def send(self, client: httpx.AsyncClient) -> str:
        signed, path = sign_request(self.xml, [self.tmp_path / "pki"], counter=next_counter())
        r = await client.post(
            f"http://127.0.0.1:{self.duis}{path}",
            content=signed,
            headers={"content-type": "application/xml"},
        )
        return response_code(r.content)  # I0 answered, I99 held (an AD1 follows)


async def test_run_time_rules_and_counts_survive_a_restart(
    tmp_path: Path, shared_dir: Path
) -> None:
    daemon = Daemon(tmp_path, shared_dir, 'rules_file = "rules.toml"')
    (tmp_path / "rules.toml").write_text(FILE_RULES.decode())
    process = await start(daemon.config, daemon.admin)
    try:
        async with daemon.admin_client() as client:
            put = await client.put(
                daemon.admin_url + "/admin/thresholds", content=RUNTIME_RULES, headers=TOML
            )
            assert put.status_code == 200, put.text
            assert [await daemon.send(client) for _ in range(2)] == ["I0", "I0"]  # at the limit
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    process = await start(daemon.config, daemon.admin)
    try:
        async with daemon.admin_client() as client:
            rules = (await client.get(daemon.admin_url + "/admin/thresholds")).json()["rules"]
            assert [(r["limit"], r["kind"]) for r in rules] == [(2, "user_quarantine")]
            assert await daemon.send(client) == "I99"  # the count held across the restart
            held = (await client.get(daemon.admin_url + "/admin/quarantine")).json()
            assert [h["breach"] for h in held] == ["ADUserThresholdBreach"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    # The operator edits the rules file: from the next start it is in force again.
    (tmp_path / "rules.toml").write_text("# limits for 2027\n" + FILE_RULES.decode())
    process = await start(daemon.config, daemon.admin)
    try:
        async with daemon.admin_client() as client:
            rules = (await client.get(daemon.admin_url + "/admin/thresholds")).json()["rules"]
            assert [(r["limit"], r["kind"]) for r in rules] == [(9, "warning")]
            audit = (await client.get(daemon.admin_url + "/admin/thresholds/audit")).json()
            assert [(e["source"], e["note"]) for e in audit][:2] == [
                ("file", audit[0]["note"]),
                ("admin", "set at run time"),
            ]
            assert "changed after the run-time rules" in audit[0]["note"]
            assert audit[1]["by"].startswith("127.0.0.1") and "user_quarantine" in audit[1]["toml"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


async def test_kill_9_forgets_at_most_the_snapshot_interval_of_counts(
    tmp_path: Path, shared_dir: Path
) -> None:
    daemon = Daemon(tmp_path, shared_dir, "counts_snapshot_seconds = 0.1")
    process = await start(daemon.config, daemon.admin)
    try:
        async with daemon.admin_client() as client:
            put = await client.put(
                daemon.admin_url + "/admin/thresholds", content=RUNTIME_RULES, headers=TOML
            )
            assert put.status_code == 200
            assert [await daemon.send(client) for _ in range(2)] == ["I0", "I0"]
        with trio.fail_after(10):  # a snapshot taken after both were counted
            while saved_count(tmp_path / "thresholds.sqlite") < 2:
                await trio.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    process = await start(daemon.config, daemon.admin)
    try:
        async with daemon.admin_client() as client:
            assert await daemon.send(client) == "I99"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def saved_count(path: Path) -> int:
    """Requests counted in the saved 8.2 window (0 while none is saved)."""
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT state FROM window_count WHERE user_id = ? AND srv = '8.2'", (USER,)
        ).fetchone()
    if row is None:
        return 0
    state = msgspec.msgpack.decode(row[0])
    return len(state["stamps"]) if isinstance(state, dict) else 0


@pytest.mark.usefixtures("redis_available")
async def test_the_redis_store_refuses_run_time_changes_with_the_reason(
    tmp_path: Path, shared_dir: Path
) -> None:
    prefix = f"duisgw:test:{os.urandom(8).hex()}:"
    daemon = Daemon(tmp_path, shared_dir)
    text = daemon.config.read_text().replace(
        'store = "memory"', f'store = "redis"\n[thresholds.redis]\nkey_prefix = "{prefix}"'
    )
    daemon.config.write_text(text)
    process = await start(daemon.config, daemon.admin)
    try:
        async with daemon.admin_client() as client:
            put = await client.put(
                daemon.admin_url + "/admin/thresholds", content=RUNTIME_RULES, headers=TOML
            )
            assert put.status_code == 409
            assert "thresholds.rules_file" in put.json()["error"]
            assert "redis" in put.json()["error"]
            got = await client.get(daemon.admin_url + "/admin/thresholds")
            assert got.status_code == 200 and got.json()["rules"] == []
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


async def test_the_cli_sets_shows_and_audits_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    new, bad = tmp_path / "new.toml", tmp_path / "bad.toml"
    new.write_bytes(RUNTIME_RULES)
    bad.write_text('[[attribute_limits]]\nsrv = "1.1.1"\nattribute = "prise"\nmax = 1\n')
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        monkeypatch.setenv("DUISGW_ADMIN_TOKEN", gw.admin_token)

        def cli(*argv: str) -> tuple[int, object]:
            code = main([*argv, "--admin", gw.admin_url])
            return code, json.loads(capsys.readouterr().out)

        assert (await trio.to_thread.run_sync(cli, "thresholds", "set", str(new)))[0] == 0
        code, refused = await trio.to_thread.run_sync(cli, "thresholds", "set", str(bad))
        assert code == 1 and isinstance(refused, dict)
        assert "unknown attribute 'prise'; known attributes: debt_adjustment" in refused["error"]
        code, shown = await trio.to_thread.run_sync(cli, "thresholds", "show")
        assert isinstance(shown, dict) and [r["limit"] for r in shown["rules"]] == [2]
        code, audit = await trio.to_thread.run_sync(cli, "thresholds", "audit")
        assert code == 0 and isinstance(audit, list)
        assert [(e["source"], e["note"], e["rules"]) for e in audit] == [
            ("admin", "set at run time", 1),
            ("file", "no rules file: no rules", 0),
        ]


def test_an_unreadable_state_file_stops_start_up_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, 0, 0, 9, 0.001)
    (tmp_path / "thresholds.sqlite").write_bytes(b"not sqlite at all" * 100)
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "cannot start" in err and "thresholds.sqlite" in err and "Traceback" not in err
