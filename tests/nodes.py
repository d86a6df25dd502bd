"""Three `duisgw serve` nodes on one test-owned Redis, and a round-robin DUIS client.

Shared by the multi-node tests (issue 13): the processes come from
bench/gateway_process.py (`write_node_configs`, `GatewayNodes`); the Redis from
bench/redis_process.py. Each test gets its own key prefix as well as its own server.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from bench.gateway_process import GatewayNodes, write_node_configs
from gateway.devkit.client import sign_request
from gateway.devkit.default import ensure_default_state
from tests.harness import next_counter

NODE_COUNT = 3
ANSWER_TIMEOUT_SECONDS = 30.0


def redis_state(url: str, key_prefix: str = "nodes") -> dict[str, object]:
    return {"backend": "redis", "redis": {"url": url, "key_prefix": key_prefix}}


@asynccontextmanager
async def running_nodes(
    state_dir: Path,
    state: dict[str, object],
    *,
    count: int = NODE_COUNT,
    overrides: dict[str, dict[str, object]] | None = None,
) -> AsyncIterator[GatewayNodes]:
    """`count` nodes over one default estate in `state_dir`, stopped (SIGTERM) after."""
    default = ensure_default_state(state_dir, dt.datetime.now(dt.UTC))
    configs = write_node_configs(default, count, state=state, overrides=overrides)
    nodes = await trio.to_thread.run_sync(lambda: GatewayNodes.start(configs))
    try:
        yield nodes
    finally:
        await trio.to_thread.run_sync(nodes.stop)


class RoundRobin:
    """Signs each request like `duisgw send` and posts it to the next node in turn
    (or to the node given)."""

    def __init__(self, nodes: GatewayNodes, pki: Path, client: httpx.AsyncClient) -> None:
        self.nodes = nodes
        self.pki = pki
        self.client = client
        self._next = itertools.cycle(range(len(nodes.nodes)))

    async def send(
        self, xml: bytes, *, counter: int | None = None, node: int | None = None
    ) -> httpx.Response:
        signed, endpoint = sign_request(
            xml, [self.pki], counter=next_counter() if counter is None else counter
        )
        return await self.post(signed, endpoint, node=node)

    async def post(
        self, signed: bytes, endpoint: str, *, node: int | None = None
    ) -> httpx.Response:
        index = next(self._next) if node is None else node
        return await self.client.post(
            self.nodes.duis_url(index) + endpoint,
            content=signed,
            headers={"content-type": "application/xml"},
            timeout=ANSWER_TIMEOUT_SECONDS,
        )
