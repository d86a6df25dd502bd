"""The dev inbox: responses reach it wherever the admin listener is, only the gateway's own
delivery may post to it, it exists only where the config asks for it, and it is bounded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest
import trio

from gateway.cli import main
from gateway.compose import serve
from gateway.core.config import DEFAULT_MAX_TOTAL_BYTES, DevInboxConfig, StartupError
from gateway.devkit.estate import DEFAULT_USERS_TOML
from gateway.devkit.inbox import InboxBuffer, InboxMessage
from tests.harness import default_config, next_counter, response_code, running_gateway

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
XML = {"content-type": "application/xml"}


async def test_default_users_reach_the_dev_inbox_wherever_admin_listens(
    tmp_path: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The generated users.toml, unchanged, with the admin listener not on 8080."""
    config = default_config(tmp_path)
    assert (tmp_path / "users.toml").read_text() == DEFAULT_USERS_TOML
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        assert gw.addresses.admin[1] != 8080
        counter = next_counter()
        ack = await gw.send((shared_dir / ECS17B).read_bytes(), counter=counter)
        assert response_code(ack.content) == "I99"
        with trio.fail_after(20):
            while not (await gw.admin.get("/inbox")).json():
                await trio.sleep(0.02)
        [message] = (await gw.admin.get("/inbox")).json()
        assert message["user_id"] == SUPPLIER and message["response_code"] == "I0"
        assert message["request_id"].endswith(f":{counter}")
        monkeypatch.setenv("DUISGW_ADMIN_TOKEN", gw.admin_token)
        code = await trio.to_thread.run_sync(main, ["inbox", "--admin", gw.admin_url])
        assert code == 0
        assert f":{counter}" in capsys.readouterr().out


FORGED_I0 = (
    b'<sr:Response xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"><sr:Header>'
    b"<sr:RequestID>90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1</sr:RequestID>"
    b"<sr:ResponseCode>I0</sr:ResponseCode></sr:Header></sr:Response>"
)


async def test_nobody_but_the_gateway_can_post_to_the_inbox(tmp_path: Path) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        url = f"{gw.admin_url}/inbox/{SUPPLIER}"
        forged = await gw.client.post(url, content=FORGED_I0, headers=XML)
        assert forged.status_code == 401
        from_a_browser = await gw.client.post(
            url, content=FORGED_I0, headers={"content-type": "text/plain"}
        )
        assert from_a_browser.status_code == 401
        assert (await gw.admin.get("/inbox")).json() == []
        # With the token (as the gateway's delivery sends it) it is taken, as XML only.
        assert (await gw.admin.post(f"/inbox/{SUPPLIER}", content=b"<x/>")).status_code == 415
        assert (
            await gw.admin.post("/inbox/not-a-user", content=b"<x/>", headers=XML)
        ).status_code == 400
        assert (
            await gw.admin.post(f"/inbox/{SUPPLIER}", content=b"<x/>", headers=XML)
        ).status_code == 200
        assert len((await gw.admin.get("/inbox")).json()) == 1


async def test_the_inbox_is_mounted_only_when_enabled(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    off = msgspec.structs.replace(config, dev_inbox=DevInboxConfig(enabled=False))
    # The default Users name the dev inbox: with it off, the start says why it cannot.
    with pytest.raises(StartupError, match=r"dev-inbox.*\[dev_inbox\] enabled"):
        await serve(off)
    users = tmp_path / "users-elsewhere.toml"
    users.write_text(DEFAULT_USERS_TOML.replace('"dev-inbox"', '"https://user.example/duis"'))
    off = msgspec.structs.replace(
        off, registry=msgspec.structs.replace(config.registry, users_file=str(users))
    )
    async with running_gateway(off, [tmp_path / "pki"]) as gw:
        assert (await gw.admin.get("/inbox")).status_code == 404
        posted = await gw.admin.post(f"/inbox/{SUPPLIER}", content=b"<x/>", headers=XML)
        assert posted.status_code == 404


async def test_megabyte_posts_keep_memory_and_file_within_the_default_caps(
    tmp_path: Path,
) -> None:
    """The issue's 1 MB posts: the default keeps 16 MiB, its file at most about twice that."""
    cap, message_bytes, posts = DEFAULT_MAX_TOTAL_BYTES, 1_000_000, 24
    journal = tmp_path / "inbox.jsonl"
    body = b"<r>" + b"x" * (message_bytes - 7) + b"</r>"
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        for i in range(posts):
            headers = {**XML, "x-duis-message-id": f"m{i}"}
            posted = await gw.admin.post(f"/inbox/{SUPPLIER}", content=body, headers=headers)
            assert posted.status_code == 200
            assert journal.stat().st_size <= 2 * cap + message_bytes + 1024
        kept = [m["message_id"] for m in (await gw.admin.get("/inbox")).json()]
        assert 0 < len(kept) <= cap // message_bytes
        assert kept == [f"m{i}" for i in range(posts - len(kept), posts)]  # oldest dropped first
    # A restart keeps what was kept, no more.
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        again = [m["message_id"] for m in (await gw.admin.get("/inbox")).json()]
        assert again == kept
        assert journal.stat().st_size <= cap + 1024 * len(kept)


async def test_a_message_over_the_cap_is_refused_413(tmp_path: Path) -> None:
    message_cap = 16 * 1024
    config = msgspec.structs.replace(
        default_config(tmp_path),
        dev_inbox=DevInboxConfig(
            enabled=True, max_total_bytes=65536, max_message_bytes=message_cap
        ),
    )
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        too_large = b"<r>" + b"x" * message_cap + b"</r>"
        refused = await gw.admin.post(f"/inbox/{SUPPLIER}", content=too_large, headers=XML)
        assert refused.status_code == 413 and "max_message_bytes" in refused.text
        assert (await gw.admin.get("/inbox")).json() == []


def test_the_buffer_drops_the_oldest_by_age_and_bytes() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    config = DevInboxConfig(max_total_bytes=4096, max_message_bytes=1024, max_age_seconds=60)
    buffer = InboxBuffer(config)

    def message(n: int, at: dt.datetime) -> InboxMessage:
        return InboxMessage(SUPPLIER, f"m{n}", at, "response", "I0", None, "<x/>")

    for n in range(4):
        buffer.add(message(n, start + dt.timedelta(seconds=n)), 1000, start)
    assert [m.message_id for m in buffer.messages()] == ["m0", "m1", "m2", "m3"]
    buffer.add(message(4, start + dt.timedelta(seconds=4)), 1000, start)  # 5000 > 4096
    assert [m.message_id for m in buffer.messages()] == ["m1", "m2", "m3", "m4"]
    buffer.prune(start + dt.timedelta(seconds=62.5))  # m1 and m2 are over a minute old
    assert [m.message_id for m in buffer.messages()] == ["m3", "m4"]
    assert buffer.total_bytes == 2000


def test_a_message_cap_above_the_total_cap_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="max_message_bytes"):
        msgspec.convert({"max_total_bytes": 8192, "max_message_bytes": 16384}, DevInboxConfig)
