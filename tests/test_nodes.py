"""Several nodes of one deployment on one Redis (issue 13): separate `duisgw serve`
processes with their own state directories and ports, behind a round-robin client."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.harness import response_code
from tests.nodes import RoundRobin, redis_state, running_nodes
from tests.redis_process import RedisProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bench.gateway_process reads /proc")

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"


async def test_three_nodes_answer_and_one_comes_back_after_kill9(
    tmp_path: Path, shared_dir: Path, redis_server: RedisProcess
) -> None:
    xml = (shared_dir / INVENTORY).read_bytes()
    async with (
        running_nodes(tmp_path, redis_state(redis_server.url)) as nodes,
        httpx.AsyncClient() as client,
    ):
        peers = RoundRobin(nodes, tmp_path / "pki", client)
        for _ in range(3):
            answer = await peers.send(xml)
            assert answer.status_code == 200 and response_code(answer.content) == "I0"
        assert await trio.to_thread.run_sync(nodes.kill9, 1) == -9
        await trio.to_thread.run_sync(nodes.restart, 1)
        answer = await peers.send(xml, node=1)
        assert response_code(answer.content) == "I0", nodes.log_tails()
        token = nodes.admin_token
        for index in range(3):
            health = await client.get(
                nodes.admin_url(index) + "/admin/quarantine",
                headers={"authorization": f"Bearer {token}"},
            )
            assert health.status_code == 200, health.text
    assert [node.process.returncode for node in nodes.nodes] == [0, 0, 0], nodes.log_tails()
