"""The embedded default's dev inbox receives asynchronous responses; `duisgw inbox` lists them."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import trio

from gateway.cli import main
from gateway.estate import DEFAULT_USERS_TOML
from tests.harness import default_config, next_counter, response_code, running_gateway

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"


async def test_async_response_reaches_the_dev_inbox(
    tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users-inbox.toml"
    users.write_text(DEFAULT_USERS_TOML)
    config = default_config(tmp_path)
    config = msgspec.structs.replace(
        config, registry=msgspec.structs.replace(config.registry, users_file=str(users))
    )
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        # The default points at admin port 8080; this test's admin port is ephemeral.
        users.write_text(DEFAULT_USERS_TOML.replace("127.0.0.1:8080", gw.admin_url[7:]))
        assert (await gw.client.post(gw.admin_url + "/admin/reload")).status_code == 200
        counter = next_counter()
        ack = await gw.send((shared_dir / ECS17B).read_bytes(), counter=counter)
        assert response_code(ack.content) == "I99"
        with trio.fail_after(20):
            while not (await gw.client.get(gw.admin_url + "/inbox")).json():
                await trio.sleep(0.02)
        [message] = (await gw.client.get(gw.admin_url + "/inbox")).json()
        assert message["user_id"] == SUPPLIER and message["response_code"] == "I0"
        assert message["request_id"].endswith(f":{counter}")
        code = await trio.to_thread.run_sync(main, ["inbox", "--admin", gw.admin_url])
        assert code == 0
        assert f":{counter}" in capsys.readouterr().out
