"""Several nodes of one deployment on one Redis (issue 13): separate `duisgw serve`
processes with their own state directories and ports, behind a round-robin client."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from lxml import etree

from bench.gateway_process import (
    GatewayFailed,
    GatewayNodes,
    GatewayProcess,
    write_node_configs,
)
from bench.redis_process import RedisClusterProcesses, RedisProcess
from gateway.devkit.client import sign_request
from gateway.devkit.default import ensure_default_state
from gateway.stores.certfiles import find_signing_key
from parse_correlate.correlate import sign_pre_command
from tests.harness import next_counter, response_code
from tests.nodes import RoundRobin, redis_state, running_nodes
from tests.test_lifecycle_e2e import signed_pre_command_request

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bench.gateway_process reads /proc")

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
SHARED_STATE_FILES = {
    "replay.sqlite",
    "quarantine.sqlite",
    "local_commands.sqlite",
    "techspec.sqlite",
    "thresholds.sqlite",
    "jobs.sqlite",  # the jobs journal and the outbox are Redis Streams there too
    "outbox.sqlite",
}


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
        for node in nodes.nodes:  # each checked the server's persistence at start
            assert "acknowledgements wait for Redis's fsync" in node.log_tail()
        token = nodes.admin_token
        for index in range(3):
            health = await client.get(
                nodes.admin_url(index) + "/admin/quarantine",
                headers={"authorization": f"Bearer {token}"},
            )
            assert health.status_code == 200, health.text
    assert [node.process.returncode for node in nodes.nodes] == [0, 0, 0], nodes.log_tails()
    for node in nodes.nodes:  # the shared state is on Redis only: none of its files
        opened = {path.name for path in node.config_path.parent.iterdir()}
        assert not opened & SHARED_STATE_FILES, opened


CV4 = "duis/samples/requests/ECS44_7.3_SUCCESS_REQUEST_DUIS.XML"
ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
LIMIT = 2
RULES = f"""
[[rules]]
user_id = "*"
srv = "4.1.1"
window_seconds = 3600
limit = {LIMIT}
kind = "user_quarantine"
"""
# gateway/stores/threshold_redis.py: at most limit + (nodes - 1) * batch_size pass.
BATCH_SIZE = 1


@dataclass(frozen=True)
class Deployment:
    """The shared Redis the nodes are configured with, and the thresholds keys it needs."""

    state: dict[str, object]
    thresholds: dict[str, object]


@pytest.fixture(params=["single", "cluster"])
def deployment(request: pytest.FixtureRequest, redis_server: RedisProcess) -> Deployment:
    """One test-owned redis-server, or a test-owned three-primary Redis Cluster. Under
    Cluster the threshold counts go to the single server: their store takes one url."""
    if request.param == "single":
        return Deployment(redis_state(redis_server.url), {})
    cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster")
    state = {
        "backend": "redis",
        "redis": {"mode": "cluster", "cluster_nodes": cluster.addresses, "key_prefix": "nodes"},
    }
    counts = {"store": "redis", "redis": {"url": redis_server.url, "key_prefix": "nodes:ad:"}}
    return Deployment(state, counts)


async def test_replay_state_is_one_across_nodes(
    tmp_path: Path, shared_dir: Path, deployment: Deployment
) -> None:
    """CV 4 on one node, its CV 5 on another: accepted; a counter replayed on another
    node: E1; a second CV 5 on a third: E1."""
    cv4 = (shared_dir / CV4).read_bytes()
    inventory = (shared_dir / INVENTORY).read_bytes()
    overrides = {"thresholds": deployment.thresholds}
    async with (
        running_nodes(tmp_path, deployment.state, overrides=overrides) as nodes,
        httpx.AsyncClient() as client,
    ):
        redis = deployment.state["redis"]
        mode = redis["mode"] if isinstance(redis, dict) and "mode" in redis else "single"
        for node in nodes.nodes:
            assert f"shared state on Redis ({mode})" in node.log_tail()
        peers = RoundRobin(nodes, tmp_path / "pki", client)
        counter = next_counter()
        signed, endpoint = sign_request(cv4, [tmp_path / "pki"], counter=counter)
        answer = await peers.post(signed, endpoint, node=0)
        assert response_code(answer.content) == "I0", answer.text
        cv5 = signed_cv5(answer.content, cv4, tmp_path / "pki", counter)
        first = await peers.post(cv5, "/api/v1/serviceS", node=1)
        assert response_code(first.content) == "I99", first.text
        again = await peers.post(cv5, "/api/v1/serviceS", node=2)
        assert response_code(again.content) == "E1"

        counter = next_counter()
        signed, endpoint = sign_request(inventory, [tmp_path / "pki"], counter=counter)
        assert response_code((await peers.post(signed, endpoint, node=2)).content) == "I0"
        for node in (0, 1):
            replayed = await peers.post(signed, endpoint, node=node)
            assert response_code(replayed.content) == "E1"
    assert [n.process.returncode for n in nodes.nodes] == [0, 0, 0], nodes.log_tails()


async def test_thresholds_hold_across_nodes_and_any_node_releases(
    tmp_path: Path, shared_dir: Path, deployment: Deployment
) -> None:
    """Round-robin requests of one User: the limit holds across the nodes (within the
    documented bound); what one node held, another lists and a third releases, once."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    counts = dict(deployment.thresholds.get("redis", {}))  # type: ignore[call-overload]
    overrides: dict[str, dict[str, object]] = {
        "thresholds": {
            **deployment.thresholds,
            "rules_file": str(rules),
            "redis": {**counts, "batch_size": BATCH_SIZE},
        }
    }
    xml = (shared_dir / ECS17B).read_bytes()
    sent = 12
    async with (
        running_nodes(tmp_path, deployment.state, overrides=overrides) as nodes,
        httpx.AsyncClient() as client,
    ):
        peers = RoundRobin(nodes, tmp_path / "pki", client)
        for _ in range(sent):
            assert response_code((await peers.send(xml)).content) == "I99"
        headers = {"authorization": f"Bearer {nodes.admin_token}"}
        listings = [
            (await client.get(nodes.admin_url(i) + "/admin/quarantine", headers=headers)).json()
            for i in range(3)
        ]
        assert listings[0] == listings[1] == listings[2]  # one quarantine, seen from each
        admitted = sent - len(listings[0])
        assert LIMIT <= admitted <= LIMIT + (len(nodes.nodes) - 1) * BATCH_SIZE, admitted
        ref = listings[0][0]["event_ref"]
        release = f"/admin/quarantine/{ref}/release"
        released = await client.post(nodes.admin_url(1) + release, headers=headers)
        assert released.status_code == 200 and released.json()["answered"] == "I99"
        again = await client.post(nodes.admin_url(2) + release, headers=headers)
        assert again.status_code == 409
        left = (await client.get(nodes.admin_url(0) + "/admin/quarantine", headers=headers)).json()
        assert [h["event_ref"] for h in left] == [h["event_ref"] for h in listings[0][1:]]
    assert [n.process.returncode for n in nodes.nodes] == [0, 0, 0], nodes.log_tails()


def signed_cv5(answer: bytes, cv4: bytes, pki: Path, counter: int) -> bytes:
    """The User's CV 5 for the Pre-Command in a CV 4's I0, signed as the User would."""
    payload = etree.fromstring(answer).find(".//{*}PreCommand/{*}GBCSPayload")
    assert payload is not None and payload.text
    _, role_key = find_signing_key([pki], SUPPLIER, "02")
    signed_gbcs = sign_pre_command(base64.b64decode(payload.text), role_key)
    cv5, _ = sign_request(signed_pre_command_request(cv4, signed_gbcs), [pki], counter=counter)
    return cv5


async def test_a_node_refuses_to_start_on_a_redis_that_would_lose_acknowledgements(
    tmp_path: Path,
) -> None:
    """appendfsync everysec without WAIT: an acknowledged request could be lost with the
    server, so `duisgw serve` exits with the reason instead of serving."""
    lax = RedisProcess(tmp_path / "lax-redis", extra=("--appendfsync", "everysec"))
    lax.start()
    try:
        default = ensure_default_state(tmp_path / "estate", dt.datetime.now(dt.UTC))
        [config] = write_node_configs(default, 1, state=redis_state(lax.url))
        node = GatewayProcess.start(config, workers=1, cores=None, profile=None)
        with pytest.raises(GatewayFailed, match="exited") as refused:
            await trio.to_thread.run_sync(node.wait_ready)
        assert node.process.returncode not in (0, None)
        assert "appendfsync always" in str(refused.value)
    finally:
        lax.stop()


async def test_redis_killed_and_restarted_loses_nothing_acknowledged(
    tmp_path: Path, shared_dir: Path, redis_server: RedisProcess
) -> None:
    """While Redis is down no request is acknowledged (503 with the reason, never an I0);
    once it is back every counter acknowledged before is still spent, on every node."""
    xml = (shared_dir / INVENTORY).read_bytes()
    pki = tmp_path / "pki"
    async with (
        running_nodes(tmp_path, redis_state(redis_server.url), count=2) as nodes,
        httpx.AsyncClient() as client,
    ):
        peers = RoundRobin(nodes, pki, client)
        acknowledged = []
        for _ in range(10):
            counter = next_counter()
            signed, endpoint = sign_request(xml, [pki], counter=counter)
            answer = await peers.post(signed, endpoint)
            assert response_code(answer.content) == "I0"
            acknowledged.append((signed, endpoint))
        redis_server.kill9()
        down = await peers.send(xml)
        assert down.status_code == 503, down.text
        assert "store_unavailable" in down.text, down.text
        redis_server.start()
        for signed, endpoint in acknowledged:
            replayed = await peers.post(signed, endpoint)
            assert response_code(replayed.content) == "E1", replayed.text
        answer = await peers.send(xml)  # served again once Redis is back
        assert response_code(answer.content) == "I0", answer.text


async def test_workers_of_a_node_all_use_redis(
    tmp_path: Path, shared_dir: Path, redis_server: RedisProcess
) -> None:
    """`duisgw serve --workers 2` on the Redis backend: every worker decides on Redis (a
    counter one worker accepted is E1 on the other), and no state file is opened."""
    xml = (shared_dir / INVENTORY).read_bytes()
    pki = tmp_path / "pki"
    default = ensure_default_state(tmp_path, dt.datetime.now(dt.UTC))
    [config] = write_node_configs(default, 1, state=redis_state(redis_server.url), workers=2)
    nodes = await trio.to_thread.run_sync(lambda: GatewayNodes.start([config], workers=2))
    try:
        url = nodes.duis_url(0)
        for _ in range(6):
            signed, endpoint = sign_request(xml, [pki], counter=next_counter())
            # A connection per request: the kernel spreads them over both workers.
            async with httpx.AsyncClient() as client:
                post = functools.partial(
                    client.post, url + endpoint, headers={"content-type": "application/xml"}
                )
                assert response_code((await post(content=signed)).content) == "I0"
            async with httpx.AsyncClient() as client:
                post = functools.partial(
                    client.post, url + endpoint, headers={"content-type": "application/xml"}
                )
                assert response_code((await post(content=signed)).content) == "E1"
        served = nodes.nodes[0].counters(("duisgw_requests_total{",))
        assert sum(served.values()) == 12
        logs = nodes.nodes[0].log_path.read_text()  # the start-up lines, not just the tail
    finally:
        await trio.to_thread.run_sync(nodes.stop)
    assert logs.count("acknowledgements wait for Redis's fsync") >= 2  # each worker checked
    state_dir = config.parent
    opened = {path.name for path in state_dir.rglob("*")}
    assert not opened & SHARED_STATE_FILES, opened
