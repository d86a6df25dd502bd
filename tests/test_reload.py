"""Reload without restart: trust and registry swap atomically; a broken file keeps the old."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gateway.devkit.estate import DEFAULT_USERS_TOML
from tests.harness import default_config, response_code, running_gateway

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"


async def test_reload_swaps_registry_and_keeps_it_on_error(
    tmp_path: Path, shared_dir: Path
) -> None:
    users = tmp_path / "users-live.toml"
    users.write_text(DEFAULT_USERS_TOML)
    config = default_config(tmp_path)
    config = msgspec.structs.replace(
        config, registry=msgspec.structs.replace(config.registry, users_file=str(users))
    )
    xml = (shared_dir / INVENTORY).read_bytes()
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        assert response_code((await gw.send(xml)).content) == "I0"

        suspended = DEFAULT_USERS_TOML.replace(
            f'user_id = "{SUPPLIER}"', f'user_id = "{SUPPLIER}"\n# suspended by the test', 1
        )
        start = suspended.index(f'user_id = "{SUPPLIER}"')
        status_at = suspended.index('status = "active"', start)
        suspended = suspended[:status_at] + 'status = "suspended"' + suspended[status_at + 17 :]
        users.write_text(suspended)
        reloaded = await gw.admin.post("/admin/reload")
        assert reloaded.status_code == 200, reloaded.text
        assert response_code((await gw.send(xml)).content) == "E3"

        users.write_text("[[users]]\nuser_id = 'not an eui'\n")
        broken = await gw.admin.post("/admin/reload")
        assert broken.status_code == 500 and "reload failed" in broken.text
        # The previous snapshot is still in force.
        assert response_code((await gw.send(xml)).content) == "E3"
        metrics = (await gw.client.get(gw.admin_url + "/metrics")).text
        assert 'duisgw_reloads_total{outcome="failed"} 1.0' in metrics
