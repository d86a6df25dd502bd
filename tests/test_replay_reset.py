"""An operator recovers a locked-out originator: `duisgw replay show|reset`, audited.

A counter of 2**64 - 1, once accepted, refuses every later counter from that
originator (E1). The ceiling (`[replay] max_counter`, 2**63 - 1 by default) refuses
such counters up front; for what got through, or a User that jumped ahead, the
audited reset is the way back, through the admin API and the CLI.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest
import trio

from gateway.cli import main
from gateway.core.config import ReplayConfig
from gateway.core.replay_rules import DEFAULT_MAX_COUNTER, Admission, ReplayGuard, ReplayVerdict
from gateway.stores.replay import FLOOR_TRUST_SECONDS, SharedReplayGuard
from mmc.identifiers import MAX_COUNTER, RequestId
from tests.harness import default_config, next_counter, response_code, running_gateway

SUP = "90-B3-D5-1F-30-01-00-00"
NET = "90-B3-D5-1F-30-02-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
AT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def rid(counter: int, originator: str = SUP) -> RequestId:
    return RequestId(originator, ESME, counter)


def test_counters_above_the_ceiling_are_refused_and_not_recorded() -> None:
    book = ReplayGuard()
    assert book.admit(rid(DEFAULT_MAX_COUNTER + 1), 1).verdict is ReplayVerdict.ABOVE_CEILING
    assert book.admit(rid(MAX_COUNTER), 4).verdict is ReplayVerdict.ABOVE_CEILING
    assert ReplayVerdict.ABOVE_CEILING.code == "E1"
    assert book.last_counter(SUP) is None and book.open_pre_commands(SUP) == {}
    assert book.admit(rid(5), 1).verdict is ReplayVerdict.FRESH  # not locked out
    assert book.admit(rid(DEFAULT_MAX_COUNTER), 1).verdict is ReplayVerdict.FRESH


async def test_reset_forgets_or_sets_the_counter_and_keeps_an_audit_trail(
    tmp_path: Path,
) -> None:
    guard = await SharedReplayGuard.open(tmp_path / "replay.sqlite", max_counter=MAX_COUNTER)
    assert (await guard.admit(rid(10), 4)).verdict is ReplayVerdict.FRESH
    assert (await guard.admit(rid(MAX_COUNTER), 1)).verdict is ReplayVerdict.FRESH
    assert (await guard.admit(rid(11), 1)).verdict is ReplayVerdict.REPLAYED  # locked out
    status = await guard.status(SUP)
    assert (status.last_counter, status.open_pre_commands, status.resets) == (MAX_COUNTER, 1, ())

    first = await guard.reset_counter(SUP, 100, at=AT, operator="alice", peer="10.0.0.1:5")
    assert (first.old_counter, first.new_counter, first.open_pre_commands_dropped) == (
        MAX_COUNTER,
        100,
        0,
    )
    assert (await guard.admit(rid(100), 1)).verdict is ReplayVerdict.REPLAYED
    assert (await guard.admit(rid(101), 1)).verdict is ReplayVerdict.FRESH
    assert (await guard.admit(rid(10), 5)).verdict is ReplayVerdict.FRESH  # allowance kept

    assert (await guard.admit(rid(102), 4)).verdict is ReplayVerdict.FRESH
    second = await guard.reset_counter(
        SUP, None, at=AT, operator="bob", peer="10.0.0.2:6", reason="new signing system"
    )
    assert (second.old_counter, second.new_counter, second.open_pre_commands_dropped) == (
        102,
        None,
        1,
    )
    assert (await guard.admit(rid(0), 1)).verdict is ReplayVerdict.FRESH  # anything is fresh
    assert (await guard.admit(rid(102), 5)).verdict is ReplayVerdict.NO_PRE_COMMAND
    await guard.aclose()

    reopened = await SharedReplayGuard.open(tmp_path / "replay.sqlite")
    status = await reopened.status(SUP)
    assert status.last_counter == 0  # the CV 5's counter (E12) was not spent
    assert [(r.operator, r.peer, r.old_counter, r.new_counter) for r in status.resets] == [
        ("bob", "10.0.0.2:6", 102, None),
        ("alice", "10.0.0.1:5", MAX_COUNTER, 100),
    ]
    assert status.resets[0].reason == "new signing system" and status.resets[0].at == AT
    assert (await reopened.status(NET)).last_counter is None
    await reopened.aclose()


async def test_other_workers_follow_a_reset_within_the_floor_trust_time(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "replay.sqlite"
    here = await SharedReplayGuard.open(path)
    there = await SharedReplayGuard.open(path)
    assert (await there.admit(rid(50), 1)).verdict is ReplayVerdict.FRESH
    assert (await there.admit(rid(50), 1)).verdict is ReplayVerdict.REPLAYED
    refused_in_memory = there.statistics().refused_in_memory_total
    await here.reset_counter(SUP, 10, at=AT, operator="alice", peer="-")
    # `there` still trusts what it learnt a moment ago...
    assert (await there.admit(rid(20), 1)).verdict is ReplayVerdict.REPLAYED
    assert there.statistics().refused_in_memory_total == refused_in_memory + 1
    # ... and asks the file again once that knowledge is older than the trust time.
    await trio.sleep(FLOOR_TRUST_SECONDS + 0.01)
    assert await there.admit(rid(20), 1) == Admission(ReplayVerdict.FRESH)
    # The worker that reset follows at once.
    assert (await here.admit(rid(21), 1)).verdict is ReplayVerdict.FRESH
    await here.aclose()
    await there.aclose()


def test_config_takes_the_whole_uint64_range_and_no_more() -> None:
    top = msgspec.toml.decode(f"max_counter = {MAX_COUNTER}", type=ReplayConfig)
    assert top.max_counter == MAX_COUNTER
    with pytest.raises(msgspec.ValidationError, match="RequestID counter"):
        msgspec.toml.decode(f"max_counter = {MAX_COUNTER + 1}", type=ReplayConfig)


# ---------------------------------------------------------------- through a real gateway


async def test_a_locked_out_originator_is_recovered_with_the_cli(
    tmp_path: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    xml = (shared_dir / INVENTORY).read_bytes()
    # The whole uint64 range allowed, as before the ceiling: the lock-out of finding 10.
    config = default_config(tmp_path, replay=ReplayConfig(max_counter=MAX_COUNTER))
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        monkeypatch.setenv("DUISGW_ADMIN_TOKEN", gw.admin_token)
        assert response_code((await gw.send(xml, counter=MAX_COUNTER)).content) == "I0"
        assert response_code((await gw.send(xml)).content) == "E1"

        def cli(*argv: str) -> tuple[int, object]:
            code = main([*argv, "--admin", gw.admin_url])
            return code, json.loads(capsys.readouterr().out)

        code, shown = await trio.to_thread.run_sync(cli, "replay", "show", SUP)
        assert code == 0 and shown == {
            "originator": SUP,
            "last_counter": MAX_COUNTER,
            "open_pre_commands": 0,
            "resets": [],
        }
        counter = next_counter()
        code, done = await trio.to_thread.run_sync(
            cli, "replay", "reset", SUP, "--to", str(counter), "--by", "alice", "--reason", "x"
        )
        assert code == 0
        assert isinstance(done, dict)
        assert {k: done["reset"][k] for k in ("operator", "old_counter", "new_counter")} == {
            "operator": "alice",
            "old_counter": MAX_COUNTER,
            "new_counter": counter,
        }
        assert response_code((await gw.send(xml, counter=counter)).content) == "E1"
        assert response_code((await gw.send(xml, counter=counter + 1)).content) == "I0"

    # The audit trail is in the state directory: a restarted gateway shows it.
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        shown = (await gw.admin.get(f"/admin/replay/{SUP.lower()}")).json()
        assert shown["last_counter"] == counter + 1
        [reset] = shown["resets"]
        assert reset["operator"] == "alice" and reset["reason"] == "x"
        assert reset["peer"].startswith("127.0.0.1")


async def test_the_default_ceiling_refuses_an_absurd_counter_up_front(
    tmp_path: Path, shared_dir: Path
) -> None:
    xml = (shared_dir / INVENTORY).read_bytes()
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        assert response_code((await gw.send(xml, counter=MAX_COUNTER)).content) == "E1"
        assert response_code((await gw.send(xml)).content) == "I0"  # not locked out


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "fragment"),
    [
        ("/admin/replay/not-an-eui", b"", "", 400, "not an EUI-64"),
        (f"/admin/replay/{SUP}/reset", b'{"to": 1}', "application/json", 400, "operator"),
        (f"/admin/replay/{SUP}/reset", b"{", "application/json", 400, "reset body: "),
        (
            f"/admin/replay/{SUP}/reset",
            b'{"operator": "a", "too": 1}',
            "application/json",
            400,
            "unknown field `too`",
        ),
        (
            f"/admin/replay/{SUP}/reset",
            b'{"operator": "a", "to": 18446744073709551616}',
            "application/json",
            400,
            "",
        ),
        (f"/admin/replay/{SUP}/reset", b'{"operator": "a"}', "text/plain", 415, "application/json"),
        (f"/admin/replay/{SUP}/forget", b"", "", 404, "unknown"),
    ],
)
async def test_bad_replay_admin_requests_are_refused_with_the_reason(
    tmp_path: Path, path: str, body: bytes, content_type: str, status: int, fragment: str
) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        method = "POST" if path.endswith(("reset", "forget")) else "GET"
        answer = await gw.admin.request(
            method, path, content=body, headers={"content-type": content_type}
        )
        assert answer.status_code == status, answer.text
        assert fragment in answer.json()["error"]
        shown = (await gw.admin.get(f"/admin/replay/{SUP}")).json()
        assert shown["resets"] == []  # nothing was reset
